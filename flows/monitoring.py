"""The four monitoring flows. Each runs one check of notify.checks.SPECS the same way:
audit -> (workers / mute) -> alerts -> metrics -> artifact, returning the typed report (alerts
before metrics: with AWS out of reach the alerts still go out, and the run fails on the metrics).

    sms-cost-audit (hourly)    SMS spend against the $/hour alarm and the daily cap
    loop-detection (15 min)    notification loops, who caused them, an SMS mute for each
    failure-summary (hourly)   failures by cause with the runbook's fix; a daily digest
    health (5 min)             backlog, latency, stuck and unknown rows, SES, workers, database
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed, State

from flows.artifacts import report_artifact
from flows.events import check_events
from flows.logs import library_logs_in_run
from flows.naming import rename
from flows.states import Unsuccessful, check_state, one_line
from notify.alerts import Delivery, delivered, unreached
from notify.audits import HealthReport, LoopReport, Report
from notify.check_params import (
    CheckParams,
    FailureParams,
    HealthParams,
    LoopParams,
    ad_hoc_line,
    ad_hoc_run,
)
from notify.checks import SPECS, Check, Published, should_mute
from tasks import checks
from tasks.resources import runtime

METRICS_UNPUBLISHED = "MetricsUnpublished"


def run_check(
    check: Check, params: CheckParams, *, mute: bool = False, title: str = ""
) -> State[Any]:
    """The check's steps; its final state: Failed named P1/P2 at those severities (the report is
    its result either way), with the findings (and an alert that reached nobody) as message."""
    with library_logs_in_run():
        return _checked(check, params, mute=mute, title=title)


def _checked(check: Check, params: CheckParams, *, mute: bool, title: str) -> State[Any]:
    logger = get_run_logger()
    report = checks.audit(check, params.as_of or runtime().now(), params.window_hours)
    if isinstance(report, HealthReport):
        report = checks.add_worker_state(report)
    if isinstance(report, LoopReport):
        report = report.model_copy(update={"auto_mute": mute})  # this run's switch
    if isinstance(report, LoopReport) and mute:
        report = checks.mute(report)
    ad_hoc = ad_hoc_run(check, window_hours=params.window_hours, as_of=params.as_of)
    if params.alert or params.publish_metrics:
        report = report.with_ad_hoc(ad_hoc)
    deliveries = checks.alerts(check, report, ad_hoc) if params.alert else []
    report = report.with_alerts_unreached(unreached(deliveries), delivered(deliveries))
    # after the alerts: AWS out of reach must not keep them from going out
    published = checks.metrics(check, report, ad_hoc) if params.publish_metrics else Published(0)
    report = report.with_metrics_unpublished(published.error)
    routed, unrouted = routed_lines(deliveries), list(report.alerts_unreached)
    report_artifact(
        check.value, report, title=title or SPECS[check].title, routed=routed, unrouted=unrouted
    )
    state = _unpublished(check_state(check.value, report, unrouted), report)
    level = logging.ERROR if state.is_failed() or unrouted else logging.INFO
    logger.log(level, "%s", state.message)
    if report.ad_hoc:
        logger.info("%s", ad_hoc_line(report.ad_hoc))
    logger.info(
        "%s: severity %s, breaches %s, %d metrics, alerts %s",
        check.value,
        report.severity,
        list(report.breaches),
        published.points,
        routed,
    )
    check_events(check.value, report, routed, unrouted, ad_hoc=ad_hoc)
    codes = ", ".join(dict.fromkeys(f.code for f in report.findings))
    name = f"{check.value} {report.severity}" + (f": {codes}" if codes else "")
    rename(name + (" · NOBODY ALERTED" if unrouted else ""), [f"severity:{report.severity}"])
    return state


def _unpublished(state: State[Any], report: Report) -> State[Any]:
    """The check's state, Failed when its metrics could not be published (named as the check
    found it when that is Failed already), the reason first in its message."""
    if report.metrics_unpublished is None:
        return state
    message = one_line(f"{report.metrics_unpublished}. {state.message}")
    name = state.name if state.is_failed() else METRICS_UNPUBLISHED
    return Failed(name=name, message=message, data=Unsuccessful(message, report))


@flow(
    name="sms-cost-audit",
    description="SMS count and cost per hour, the last hour against the hourly alarm, today "
    "against the daily cap, top recipients; publishes SMSCost to CloudWatch.",
)
def sms_cost_audit_flow(params: CheckParams | None = None) -> State[Any]:
    return run_check(Check.sms_cost, params or CheckParams())


@flow(
    name="loop-detection",
    description="The same title to the same recipient and channel more than "
    "NOTIFY_LOOP_THRESHOLD times in 24 h, with the template and flow run that created it; "
    "mutes SMS for it when asked (mute) or, by default, when NOTIFY_LOOP_AUTO_MUTE is on.",
)
def loop_detection_flow(params: LoopParams | None = None) -> State[Any]:
    params = params or LoopParams()
    mute = should_mute(runtime().settings, params.mute, params.as_of)
    return run_check(Check.loops, params, mute=mute)


@flow(
    name="failure-summary",
    description="Failures grouped by error class and normalised message with the runbook's "
    "cause and fix; email and SMS error rates against 10%.",
)
def failure_summary_flow(params: FailureParams | None = None) -> State[Any]:
    params = params or FailureParams()
    title = "Failure digest (daily)" if params.digest else SPECS[Check.failures].title
    return run_check(Check.failures, params, title=title)


@flow(
    name="health",
    description="Backlog and oldest pending age, average and p95 delivery latency, stuck and "
    "unknown deliveries, SES account state, Prefect workers and late runs, database.",
)
def health_flow(params: HealthParams | None = None) -> State[Any]:
    return run_check(Check.health, params or HealthParams())


CHECK_FLOWS: dict[Check, Callable[..., Any]] = {
    Check.sms_cost: sms_cost_audit_flow,
    Check.loops: loop_detection_flow,
    Check.failures: failure_summary_flow,
    Check.health: health_flow,
}


def routed_lines(deliveries: list[Delivery]) -> list[str]:
    """One line per route and outcome, with how many alerts took it (`webhook: ok (3 alerts)`),
    where every alert's line was listed: the artifact said `alert routed: webhook: ok` once per
    alert."""
    counts = Counter(d.line for d in deliveries)
    return [line if n == 1 else f"{line} ({n} alerts)" for line, n in counts.items()]


if __name__ == "__main__":
    print(health_flow(return_state=True))
