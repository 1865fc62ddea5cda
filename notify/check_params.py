"""The monitoring checks' parameters: the window to look at and what to do with the result.

The flows take them as their parameters (the Prefect UI renders their descriptions and bounds);
the CLI builds them for `--direct` too, which runs a check without loading Prefect, so they live
here rather than in flows/.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from notify.check_names import Check
from notify.forms import empty_is_none


class CheckParams(BaseModel):
    """What every monitoring check takes: the window to look at and what to do with the result.
    A key it does not know is refused, naming it (a misspelt `windw_hours` ran the default
    window without a word)."""

    model_config = ConfigDict(extra="forbid")

    window_hours: float = Field(24.0, gt=0, le=24 * 31, description="Look back this many hours")
    as_of: datetime | None = Field(
        None,
        description="End of the window (ISO 8601; UTC when it has no zone); empty means now. "
        "Re-runs a past window.",
    )
    publish_metrics: bool = Field(True, description="Publish the CloudWatch metrics")
    alert: bool = Field(True, description="Raise, deduplicate and route alerts (P1 page, P2 chat)")

    @field_validator("as_of", mode="before")
    @classmethod
    def _empty_is_now(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("as_of")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """UTC when it has no zone, as the command line reads `--as-of` (the form refused it)."""
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value is not None and (ahead := future_note(value)):
            raise ValueError(ahead)
        return value


CLOCK_SLACK = timedelta(minutes=5)  # clocks apart by this much still name "now"


def future_note(moment: datetime) -> str | None:
    """Why `moment` cannot end a check's window: it is in the future (nothing measured there yet,
    so the report would be empty rather than wrong), or None."""
    now = datetime.now(UTC)
    if moment <= now + CLOCK_SLACK:
        return None
    return (
        f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC is in the future (now {now:%Y-%m-%d %H:%M} "
        "UTC): give a past time, or leave it empty for now"
    )


class LoopParams(CheckParams):
    mute: bool | None = Field(
        None,
        description="Mute SMS for each SMS loop (default: NOTIFY_LOOP_AUTO_MUTE when as_of is "
        "empty; a look back mutes only when this is on)",
    )


class FailureParams(CheckParams):
    window_hours: float = Field(1.0, gt=0, le=24 * 31, description="Look back this many hours")
    digest: bool = Field(False, description="Daily digest: titled as such in the artifact")


def check_params(check: Check) -> type[CheckParams]:
    """The parameter model of a monitoring check's flow."""
    own: dict[Check, type[CheckParams]] = {Check.loops: LoopParams, Check.failures: FailureParams}
    return own.get(check, CheckParams)
