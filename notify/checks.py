"""The monitoring checks as one table: run an audit, publish its metrics, raise its alerts.

Used by the Prefect tasks (scheduled flows, ad hoc CLI runs) and by `--direct` CLI runs, which skip
Prefect when it is down. Each step takes the process's runtime (notify.bootstrap), which holds the
engine, the settings and the AWS clients. A check is one entry of SPECS: its audit, its metrics,
its title; the flows, the CLI and prefect.yaml name it by its `Check` value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.exc import SQLAlchemyError

from notify.actions.audit_trail import Actor, record_action
from notify.alerts import (
    OPEN,
    AlertNotice,
    AlertSync,
    Delivery,
    ad_hoc_notice,
    dispatch,
    parse_routing,
    reached,
    record_notices,
    routes_from_settings,
    sync_alerts,
    unstored_notice,
)
from notify.audits import (
    FailureReport,
    HealthReport,
    LoopReport,
    Report,
    SmsCostReport,
    failure_summary,
    health,
    health_without_database,
    loop_detection,
    mute_loops,
    sms_cost_audit,
)
from notify.bootstrap import Runtime
from notify.check_names import Check
from notify.db import database_unavailable, transaction, utcnow
from notify.errors import error_line
from notify.metrics import failure_metrics, health_metrics, publish, sms_cost_metrics
from notify.schema import DatabaseUnreachable
from notify.settings import SenderKind, Settings

logger = logging.getLogger("notify.checks")
METRICS_UNPUBLISHED = "CloudWatch metrics NOT PUBLISHED"
METRICS_FIX = (
    "check the AWS credentials, region and network from this host (or set "
    "NOTIFY_CLOUDWATCH_ENABLED=false); the alarms on these metrics see a gap meanwhile"
)


@dataclass(frozen=True)
class CheckSpec:
    """Everything that makes a check: its audit, its CloudWatch points, its report and title."""

    audit: Callable[..., Report]
    metrics: Callable[[Any], list[Any]] | None
    report_type: type[Report]
    title: str


SPECS: dict[Check, CheckSpec] = {
    Check.sms_cost: CheckSpec(sms_cost_audit, sms_cost_metrics, SmsCostReport, "SMS cost audit"),
    Check.loops: CheckSpec(loop_detection, None, LoopReport, "Loop detection"),
    Check.failures: CheckSpec(failure_summary, failure_metrics, FailureReport, "Failure summary"),
    Check.health: CheckSpec(health, health_metrics, HealthReport, "Health"),
}


def run_audit(check: Check, *, runtime: Runtime, as_of: datetime, window: timedelta) -> Report:
    """The audit itself (read-only; health also asks SES, the SMS cost audit SNS, unless the
    sender is the in-memory one). Health reports
    a database it cannot open as its P1 finding; any other check stops on it."""
    extra = _aws_clients(check, runtime)
    settings = runtime.settings
    try:
        engine = runtime.engine()
    except DatabaseUnreachable as error:
        if check is not Check.health:
            raise
        return health_without_database(
            error=str(error), as_of=as_of, window=window, settings=settings, **extra
        )
    with transaction(engine) as session:
        return SPECS[check].audit(
            session=session, as_of=as_of, window=window, settings=settings, **extra
        )


def _aws_clients(check: Check, runtime: Runtime) -> dict[str, Any]:
    """What a check asks AWS with: health SES about the account and the sender, the SMS cost
    audit SNS about the monthly spend limit. None with the in-memory sender."""
    if runtime.settings.sender is SenderKind.memory:
        return {}
    if check is Check.health:
        return {
            "sesv2": runtime.aws_client("sesv2", retries=True),
            "ses": runtime.aws_client("ses", retries=True),
        }
    if check is Check.sms_cost:
        return {"sns": runtime.aws_client("sns", retries=True)}
    return {}


def should_mute(settings: Settings, requested: bool | None, as_of: datetime | None = None) -> bool:
    """The one place the mute switch is decided: the caller's choice, else NOTIFY_LOOP_AUTO_MUTE
    for a look at now. A look back (`as_of`) mutes only when asked: its loops may have ended long
    ago, and a mute starts now (it muted today's messages for an old incident)."""
    if requested is not None:
        return requested
    return settings.loop_auto_mute and as_of is None


def mute_detected_loops(
    *, runtime: Runtime, report: LoopReport, actor: Actor | None = None
) -> LoopReport:
    """A time-limited SMS suppression per loop (idempotent). The caller decided to mute. New
    mutes are recorded in the operator actions' trail like an operator's `recipients mute`."""
    if not report.loops:
        return report
    now = utcnow()
    with transaction(runtime.engine()) as session:
        muted = mute_loops(
            session=session,
            loops=report.loops,
            now=now,
            hours=runtime.settings.loop_mute_hours,
            reason="loop detection: automatic mute",
        )
        created = [m for m in muted if m.created]
        if created:
            record_action(
                session=session,
                actor=actor or Actor(name="loop-detection"),
                action="mute",
                now=now,
                applied=True,
                filters={"source": "loop detection", "threshold": report.threshold},
                counts={
                    "created": len(created),
                    "recipients": sorted({m.recipient for m in created}),
                    "titles": sorted({m.title for m in created}),
                    "until": until.isoformat() if (until := created[0].until) else None,
                },
                note="automatic mute of notification loops",
            )
    return report.with_muted(muted)


@dataclass(frozen=True)
class Published:
    """CloudWatch data points sent for a report, or why none could be (`error`: one line)."""

    points: int
    error: str | None = None


def publish_metrics(
    check: Check, *, runtime: Runtime, report: Report, ad_hoc: str | None
) -> Published:
    """CloudWatch data points for this report (0 when disabled or the check has none); an ad hoc
    run's (`ad_hoc`) under the dimension the alarms do not read. AWS refusing or out of reach is
    returned, not raised: a check publishes after routing its alerts, and says so as a failure
    of its own."""
    to_points = SPECS[check].metrics
    settings = runtime.settings
    if to_points is None or not settings.cloudwatch_enabled:
        return Published(0)
    try:
        client = runtime.aws_client("cloudwatch", retries=True)
        points = to_points(report)
        return Published(publish(client, settings, points, ad_hoc=ad_hoc is not None))
    except (ClientError, BotoCoreError, OSError) as exc:
        return Published(0, error=f"{METRICS_UNPUBLISHED} ({error_line(exc)}): {METRICS_FIX}")


def raise_alerts(
    check: Check, *, runtime: Runtime, report: Report, ad_hoc: str | None
) -> list[Delivery]:
    """Store, deduplicate and resolve this check's alerts; route the ones due a notice; start the
    cooldown of those that reached someone (one that reached nobody goes again next run).

    The live alerts are the scheduled runs': an ad hoc run (`ad_hoc`, from
    `notify.check_params.ad_hoc_run`: another window, or a look back) routes each finding once
    as a notice saying so, and neither opens, repeats, holds back nor resolves a stored alert.

    With the database out of reach (health found it so, or storing fails on it) every finding is
    routed as it is, unstored: no cooldown, so it goes out on every run until the database
    answers, and nothing is resolved."""
    route, now = _router(runtime), runtime.now()
    if ad_hoc is not None:
        notices = [ad_hoc_notice(check.value, f, now, ad_hoc) for f in report.findings]
        return [delivery for notice in notices for delivery in route(notice)]
    if isinstance(report, HealthReport) and not report.database_reachable:
        return _route_unstored(check, report, route, now)
    try:
        sync = _sync(check, runtime, report, now)
    except (DatabaseUnreachable, SQLAlchemyError) as error:
        if not _database_down(error):
            raise
        logger.warning(
            "alerts of %s not stored (%s): routed without cooldown", check, error_line(error)
        )
        return _route_unstored(check, report, route, now)
    routed = [(notice, route(notice)) for notice in (*sync.to_notify, *sync.resolved)]
    outcomes = {n.key: reached(deliveries) for n, deliveries in routed if n.state == OPEN}
    try:
        with transaction(runtime.engine()) as session:
            record_notices(session=session, reached=outcomes, now=now)
    except SQLAlchemyError as error:
        if not _database_down(error):
            raise
        logger.warning(
            "alert notices of %s not recorded (%s): sent again next run", check, error_line(error)
        )
    return [delivery for _, deliveries in routed for delivery in deliveries]


def _sync(check: Check, runtime: Runtime, report: Report, now: datetime) -> AlertSync:
    with transaction(runtime.engine()) as session:
        return sync_alerts(
            session=session,
            check=check.value,
            findings=report.findings,
            now=now,
            cooldown=timedelta(minutes=runtime.settings.alert_cooldown_minutes),
        )


def _database_down(error: BaseException) -> bool:
    return isinstance(error, DatabaseUnreachable) or database_unavailable(error)


def _route_unstored(
    check: Check, report: Report, route: Callable[[AlertNotice], list[Delivery]], now: datetime
) -> list[Delivery]:
    notices = [unstored_notice(check.value, finding, now) for finding in report.findings]
    return [delivery for notice in notices for delivery in route(notice)]


def _router(runtime: Runtime) -> Callable[[AlertNotice], list[Delivery]]:
    """`dispatch` on the configured routes and NOTIFY_ALERT_ROUTING."""
    settings = runtime.settings
    sns = runtime.aws_client("sns", retries=True) if settings.alert_sns_topic_arn else None
    routes = routes_from_settings(settings, sns_client=sns)
    return partial(dispatch, routes=routes, routing=parse_routing(settings.alert_routing))
