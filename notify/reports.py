"""The header every report carries (audits, checks), apart from the audits themselves: the
flows that show a report's severity (states, events, artifacts) need this, not every audit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from notify.severity import Finding, Severity


class Report(BaseModel):
    """The header every report carries. `to_json()` is the `--json` payload (stable keys)."""

    model_config = ConfigDict(frozen=True)

    as_of: datetime
    window_start: datetime
    window_hours: float
    severity: Severity
    findings: tuple[Finding, ...] = ()
    breaches: tuple[str, ...] = ()
    breached: bool = False
    alerts_unreached: tuple[str, ...] = ()  # with alerts routed: the routes that failed
    alerts_delivered: tuple[str, ...] = ()  # ... and those other than the log that delivered
    metrics_unpublished: str | None = None  # with metrics published: why they were not
    # with alerts or metrics asked of a run unlike its schedule's (another window, a look back):
    # what makes it ad hoc; its alerts left the live ones alone, its metrics the alarms'
    ad_hoc: str | None = None

    def with_alerts_unreached(self, lines: Sequence[str], delivered: Sequence[str] = ()) -> Self:
        """This report with the alert routes that failed (`webhook: route not configured`) and
        those other than the log that delivered (`sns`)."""
        update = {"alerts_unreached": tuple(lines), "alerts_delivered": tuple(delivered)}
        return self.model_copy(update=update)

    def with_metrics_unpublished(self, line: str | None) -> Self:
        """This report with why its CloudWatch metrics could not be published (None: they were,
        or none were asked for)."""
        return self.model_copy(update={"metrics_unpublished": line})

    def with_ad_hoc(self, line: str | None) -> Self:
        """This report from a run whose alerts and metrics stay apart from the live ones (None: a
        run like the schedule's, or one that asked for neither)."""
        return self.model_copy(update={"ad_hoc": line})

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: money as decimal strings, times as ISO 8601 UTC."""
        return self.model_dump(mode="json")
