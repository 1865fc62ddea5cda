"""Prefect events for what an on-call engineer may want an automation on: a finding or an alert
at a severity (`notifyops.alert.P1` ... `P4`; an ad hoc run's `notifyops.ad-hoc.P1` ...), an
alert nobody received
(`notifyops.alert.unrouted`), a delivery stopped by a config error (`notifyops.delivery.stopped`)
or partly failed (`notifyops.delivery.failed`). The flow run is attached as a related resource
by Prefect; see docs/RUNBOOK.md for an automation on them."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from notify.delivery import INTERRUPTED
from notify.reports import Report
from notify.summaries import DeliverySummary

PREFIX = "notifyops"


def _emit(event: str, resource: str, payload: dict[str, Any]) -> None:
    emit_event(
        event=f"{PREFIX}.{event}",
        resource={"prefect.resource.id": f"{PREFIX}.{resource}", "prefect.resource.name": resource},
        payload=payload,
    )


def check_events(
    check: str,
    report: Report,
    routed: list[str],
    unrouted: list[str],
    *,
    ad_hoc: str | None = None,
) -> int:
    """One event per finding (by its severity), one more when an alert reached nobody. An ad hoc
    run's (`ad_hoc`: another window than the schedule's, or a look back; with or without
    --alert) are `notifyops.ad-hoc.<severity>` and `notifyops.ad-hoc.unrouted`, the reason in
    the payload: an automation on `notifyops.alert.*` pages for the live checks only, as the
    stored alerts do."""
    kind = "alert" if ad_hoc is None else "ad-hoc"
    extra = {} if ad_hoc is None else {"ad_hoc": ad_hoc}
    for finding in report.findings:
        payload = {"check": check, "code": finding.code, "message": finding.message, **extra}
        _emit(f"{kind}.{finding.severity}", f"check.{check}", {**payload, "routed": routed})
    if unrouted:
        _emit(
            f"{kind}.unrouted",
            f"check.{check}",
            {"severity": str(report.severity), "routes": unrouted, **extra},
        )
    return len(report.findings) + (1 if unrouted else 0)


def delivery_events(delivery: DeliverySummary | None, *, template: str | None = None) -> None:
    found = delivery_event(delivery, template=template)
    if found is not None:
        _emit(found[0], "delivery", found[1])


def delivery_event(
    delivery: DeliverySummary | None, *, template: str | None = None
) -> tuple[str, dict[str, Any]] | None:
    """The event a delivery calls for, if any: `delivery.stopped` when a provider's refusal (a
    config error, a quota, an open circuit) stopped it; `delivery.failed` when messages failed or
    are in doubt. An operator's own Ctrl-C or SIGTERM (INTERRUPTED) is no stop to page about:
    it set off the on-call automation on `delivery.stopped`."""
    if delivery is None:
        return None
    payload: dict[str, Any] = {"template": template, "outcomes": delivery.outcomes}
    if delivery.stopped and delivery.stopped != INTERRUPTED:
        return "delivery.stopped", {**payload, "reason": delivery.stopped}
    if delivery.rescued_unknown or any(
        delivery.count(s) for s in ("failed", "failed_permanent", "unknown")
    ):
        return "delivery.failed", payload
    return None
