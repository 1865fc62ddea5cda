"""The monitoring checks' parameters: the window to look at and what to do with the result.

The flows take them as their parameters (the Prefect UI renders their descriptions and bounds);
the CLI builds them for `--direct` too, which runs a check without loading Prefect, so they live
here rather than in flows/.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from notify.check_names import Check
from notify.forms import empty_is_none

# The window each check's scheduled run looks at (prefect.yaml gives its alerting and publishing
# schedules these; tests/test_deployments.py holds them to it). A check's live alerts and the
# metrics the CloudWatch alarms read belong to runs over this window that look at the present.
SCHEDULED_WINDOW_HOURS: Mapping[Check, float] = MappingProxyType(
    {Check.sms_cost: 24.0, Check.loops: 24.0, Check.failures: 1.0, Check.health: 1.0}
)


def ad_hoc_run(check: Check, *, window_hours: float, as_of: datetime | None) -> str | None:
    """What makes a run of `check` ad hoc (another window than its schedule's, a look back), or
    None for one like its schedule's: the present (no `as_of`) over the scheduled window. An ad
    hoc run's alerts are one-off notices that leave the live alerts as they are, and its metrics
    go where the alarms do not read them."""
    scheduled = SCHEDULED_WINDOW_HOURS[check]
    differs = []
    if window_hours != scheduled:
        differs.append(f"window {window_hours:g}h, not the schedule's {scheduled:g}h")
    if as_of is not None:
        differs.append(f"as of {as_of.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    return f"ad hoc run ({', '.join(differs)})" if differs else None


# the CloudWatch dimension an ad hoc run's metrics carry: the alarms read the metrics without
# dimensions (the scheduled runs'), so a day's window or a look back neither dilutes nor
# inflates what they see
AD_HOC_DIMENSION: Mapping[str, str] = MappingProxyType({"Name": "Run", "Value": "ad-hoc"})


def ad_hoc_line(ad_hoc: str) -> str:
    """What an ad hoc run did with its alerts and metrics, for its output and artifact."""
    dimension = f"{AD_HOC_DIMENSION['Name']}={AD_HOC_DIMENSION['Value']}"
    return (
        f"{ad_hoc}: alerts go out as one-off notices and leave the live alerts as they are, "
        f"metrics go under the dimension {dimension}, which the alarms do not read; the live "
        "ones come from runs of the present over the scheduled window"
    )


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


def _scheduled_window(check: Check) -> Any:
    """`window_hours` defaulting to `check`'s scheduled window (a run at the defaults is live)."""
    return Field(
        SCHEDULED_WINDOW_HOURS[check], gt=0, le=24 * 31, description="Look back this many hours"
    )


class FailureParams(CheckParams):
    window_hours: float = _scheduled_window(Check.failures)
    digest: bool = Field(False, description="Daily digest: titled as such in the artifact")


class HealthParams(CheckParams):
    """The health check looks at the last hour by default, as its schedule does (a run at the
    defaults, a UI "Quick run", is then no ad hoc run)."""

    window_hours: float = _scheduled_window(Check.health)


def check_params(check: Check) -> type[CheckParams]:
    """The parameter model of a monitoring check's flow."""
    own: dict[Check, type[CheckParams]] = {
        Check.loops: LoopParams,
        Check.failures: FailureParams,
        Check.health: HealthParams,
    }
    return own.get(check, CheckParams)
