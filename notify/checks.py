"""The monitoring checks as one table: run an audit, publish its metrics, raise its alerts.

Used by the Prefect tasks (scheduled flows, ad hoc CLI runs) and by `--direct` CLI runs, which skip
Prefect when it is down. Each step takes the engine and settings; AWS clients are built here only
when a step needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine

from notify.alerts import Delivery, dispatch, routes_from_settings, sync_alerts
from notify.audits import (
    FailureReport,
    HealthReport,
    LoopReport,
    Report,
    SmsCostReport,
    failure_summary,
    health,
    loop_detection,
    mute_loops,
    sms_cost_audit,
)
from notify.db import transaction, utcnow
from notify.metrics import failure_metrics, health_metrics, publish, sms_cost_metrics
from notify.senders import aws_client
from notify.settings import SenderKind, Settings


class Check(StrEnum):
    sms_cost = "sms-cost"
    loops = "loops"
    failures = "failures"
    health = "health"


@dataclass(frozen=True)
class CheckSpec:
    audit: Callable[..., Report]
    metrics: Callable[[Any], list[Any]] | None
    report_type: type[Report]


SPECS: dict[Check, CheckSpec] = {
    Check.sms_cost: CheckSpec(sms_cost_audit, sms_cost_metrics, SmsCostReport),
    Check.loops: CheckSpec(loop_detection, None, LoopReport),
    Check.failures: CheckSpec(failure_summary, failure_metrics, FailureReport),
    Check.health: CheckSpec(health, health_metrics, HealthReport),
}


def run_audit(
    check: Check, *, engine: Engine, settings: Settings, as_of: datetime, window: timedelta
) -> Report:
    """The audit itself (read-only; health also asks SES when the sender is SES)."""
    extra = _ses_clients(settings) if check is Check.health else {}
    with transaction(engine) as session:
        return SPECS[check].audit(
            session=session, as_of=as_of, window=window, settings=settings, **extra
        )


def _ses_clients(settings: Settings) -> dict[str, Any]:
    if settings.sender is SenderKind.memory:
        return {}
    return {
        "sesv2": aws_client("sesv2", settings, retries=True),
        "ses": aws_client("ses", settings, retries=True),
    }


def mute_detected_loops(*, engine: Engine, settings: Settings, report: LoopReport) -> LoopReport:
    """With NOTIFY_LOOP_AUTO_MUTE: a time-limited SMS suppression per loop (idempotent)."""
    if not settings.loop_auto_mute or not report.loops:
        return report
    with transaction(engine) as session:
        muted = mute_loops(
            session=session,
            loops=report.loops,
            now=utcnow(),
            hours=settings.loop_mute_hours,
            reason="loop detection: automatic mute",
        )
    return report.with_muted(muted)


def publish_metrics(check: Check, *, settings: Settings, report: Report) -> int:
    """CloudWatch data points for this report (0 when disabled or the check has none)."""
    to_points = SPECS[check].metrics
    if to_points is None or not settings.cloudwatch_enabled:
        return 0
    return publish(aws_client("cloudwatch", settings, retries=True), settings, to_points(report))


def raise_alerts(
    check: Check, *, engine: Engine, settings: Settings, report: Report
) -> list[Delivery]:
    """Store, deduplicate and resolve this check's alerts; route the ones due a notice."""
    with transaction(engine) as session:
        sync = sync_alerts(
            session=session,
            check=check.value,
            findings=report.findings,
            now=utcnow(),
            cooldown=timedelta(minutes=settings.alert_cooldown_minutes),
        )
    sns = aws_client("sns", settings, retries=True) if settings.alert_sns_topic_arn else None
    routes = routes_from_settings(settings, sns_client=sns)
    return [
        delivery
        for notice in (*sync.to_notify, *sync.resolved)
        for delivery in dispatch(notice, routes=routes)
    ]
