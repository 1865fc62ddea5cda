"""What the four monitoring flows share: audit -> (workers / mute) -> metrics -> alerts ->
artifact, returning the typed report."""

from __future__ import annotations

from prefect import get_run_logger

from flows.artifacts import report_artifact
from flows.params import CheckParams
from notify.audits import HealthReport, LoopReport, Report
from notify.checks import Check
from notify.db import utcnow
from tasks import checks


def run_check(check: Check, params: CheckParams, *, mute: bool = False, title: str = "") -> Report:
    report = checks.audit(check, params.as_of or utcnow(), params.window_hours)
    if isinstance(report, HealthReport):
        report = checks.add_worker_state(report)
    if isinstance(report, LoopReport) and mute:
        report = checks.mute(report)
    published = checks.metrics(check, report) if params.publish_metrics else 0
    routed = checks.alerts(check, report) if params.alert else []
    report_artifact(check.value, report, title=title or check.value, routed=routed)
    get_run_logger().info(
        "%s: severity %s, breaches %s, %d metrics, alerts %s",
        check.value,
        report.severity,
        list(report.breaches),
        published,
        routed,
    )
    return report
