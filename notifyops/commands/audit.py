"""`notifyops audit sms-cost|loops|failures`, `notifyops health`, `notifyops alarms install`.

Each check runs as its Prefect flow (a flow run in the UI when PREFECT_API_URL is set); `--direct`
runs the same library code without Prefect, for when Prefect itself is what is down. Ad hoc runs
publish no metrics and route no alerts unless asked (the schedules do both); asked, a run over
another window than the schedule's or with --as-of leaves the live alerts and the alarms'
metrics alone (notify.check_params.ad_hoc_run).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from notify.check_names import Check
from notifyops.console import EXIT_OK, EXIT_PARTIAL, err, fail_line, out, print_json, table

if TYPE_CHECKING:
    from notify.audits import Report

app = typer.Typer(
    help="Audits of the delivery log: SMS cost, loops, failures.", no_args_is_help=True
)
alarms_app = typer.Typer(help="CloudWatch alarms of the runbook.", no_args_is_help=True)

WINDOW = typer.Option("24h", "--window", help="Look-back window: 24h, 90m, 7d (default 24h).")
AS_OF = typer.Option(None, "--as-of", help="End of the window, ISO 8601 (UTC if no zone).")
JSON = typer.Option(False, "--json", help="Machine-readable output (stable keys).")
DIRECT = typer.Option(False, "--direct", help="Run without Prefect (when Prefect is down).")
PUBLISH = typer.Option(
    False,
    "--publish",
    help="Also publish the CloudWatch metrics (the alarms' only over the scheduled window "
    "without --as-of; otherwise under Run=ad-hoc).",
)
ALERT = typer.Option(
    False,
    "--alert",
    help="Also raise and route alerts (the live ones only over the scheduled window without "
    "--as-of; otherwise one-off notices).",
)
MAX_WINDOW = "744h (31 days)"


@app.command("sms-cost")
def sms_cost(
    window: str = WINDOW,
    as_of: str | None = AS_OF,
    json_output: bool = JSON,
    direct: bool = DIRECT,
    publish: bool = PUBLISH,
    alert: bool = ALERT,
) -> None:
    """SMS count and cost per hour, last hour vs $/h alarm, today vs daily cap, top recipients,
    this month vs the SNS account's monthly spend limit.

    Exit 1 when the hourly alarm, the daily cap or the SNS monthly spend limit is breached."""
    _run(Check.sms_cost, window, as_of, json_output, direct, publish, alert)


@app.command("loops")
def loops(
    window: str = WINDOW,
    as_of: str | None = AS_OF,
    json_output: bool = JSON,
    direct: bool = DIRECT,
    alert: bool = ALERT,
    mute: bool | None = typer.Option(
        None, "--mute/--no-mute", help="Mute SMS per loop (default NOTIFY_LOOP_AUTO_MUTE)."
    ),
) -> None:
    """Same title to the same recipient and channel more than NOTIFY_LOOP_THRESHOLD times.

    Exit 1 when any loop is found."""
    _run(Check.loops, window, as_of, json_output, direct, False, alert, mute=mute)


@app.command("failures")
def failures(
    window: str = WINDOW,
    as_of: str | None = AS_OF,
    json_output: bool = JSON,
    direct: bool = DIRECT,
    publish: bool = PUBLISH,
    alert: bool = ALERT,
) -> None:
    """Failures by error class and message with the runbook's fix; error rates vs 10%.

    Exit 1 when the email or SMS error rate is above 10%."""
    _run(Check.failures, window, as_of, json_output, direct, publish, alert)


def health_command(
    window: str = WINDOW,
    as_of: str | None = AS_OF,
    json_output: bool = JSON,
    direct: bool = DIRECT,
    publish: bool = PUBLISH,
    alert: bool = ALERT,
) -> None:
    """Backlog, latency, stuck and unknown rows, SES account, Prefect workers, database.

    Exit 1 when a threshold is breached (backlog > 1,000, average latency > 30 s, ...), with
    --alert when an alert reached nobody, with --publish when the metrics were not published."""
    _run(Check.health, window, as_of, json_output, direct, publish, alert)


@alarms_app.command("install")
def install_alarms_command(json_output: bool = JSON) -> None:
    """Create or update the RS-Notifications-* CloudWatch alarms (idempotent); WorkerDown only
    where the Prefect server has the `notifyops` work pool (none under `notifyops serve`)."""
    from notify.bootstrap import runtime
    from notify.metrics import install_alarms, remove_worker_alarm

    here = runtime()
    settings = here.settings
    pool, unknown_why = _work_pool_exists()
    client = here.aws_client("cloudwatch", retries=True)
    names = install_alarms(client, settings, work_pool=pool is not False)
    removed = pool is False and remove_worker_alarm(client)
    topic = settings.alert_sns_topic_arn
    if json_output:
        print_json(
            {
                "alarms": names,
                "namespace": settings.cloudwatch_namespace,
                "sns_topic_arn": topic,
                "work_pool": pool,
                "left_out": [] if pool is not False else [_WORKER_ALARM],
                "removed": [_WORKER_ALARM] if removed else [],
            }
        )
    else:
        out.print(table("CloudWatch alarms (created or updated)", ["alarm"], [[n] for n in names]))
    warnings = [
        *_pool_warnings(pool, unknown_why, removed=removed),
        *([] if settings.cloudwatch_enabled else [_cloudwatch_off(pool is not False)]),
        *([] if topic else [_NO_TOPIC]),
    ]
    for warning in warnings:
        err.print(Text.assemble(("warning: ", "bold yellow"), warning))


_WORKER_ALARM = "RS-Notifications-WorkerDown"  # notify.metrics ALARM_PREFIX + WORKER_DOWN
_AGAIN = "run `notifyops alarms install` again"
_NO_TOPIC = (
    "NOTIFY_ALERT_SNS_TOPIC_ARN is unset: the alarms have no actions and page nobody; set it "
    f"and {_AGAIN}"
)


def _cloudwatch_off(worker_alarm: bool) -> str:
    what = (
        f"{_WORKER_ALARM} (missing data counts as breaching) pages for ever"
        if worker_alarm
        else "no alarm ever fires"
    )
    return (
        "NOTIFY_CLOUDWATCH_ENABLED is false: no check publishes metrics, so the alarms never see "
        f"data and {what}; set it to true where the checks run"
    )


def _work_pool_exists() -> tuple[bool | None, str | None]:
    """Whether the Prefect server has the `notifyops` work pool; when not known, why."""
    import httpx

    from notify.errors import error_line
    from tasks.workers import work_pool_exists

    try:
        exists = work_pool_exists()
    except httpx.HTTPError as exc:
        return None, f"Prefect at {_prefect_url()} did not answer ({error_line(exc)})"
    if exists is None:
        return None, "PREFECT_API_URL is unset"
    return exists, None


def _pool_warnings(pool: bool | None, unknown_why: str | None, *, removed: bool) -> list[str]:
    if pool is None:
        return [
            f"{unknown_why}: cannot tell whether the `notifyops` work pool exists; "
            f"{_WORKER_ALARM} installed, and without a pool (`notifyops serve`) it pages for "
            f"ever; point PREFECT_API_URL at the server and {_AGAIN}"
        ]
    if pool:
        return []
    done = "left out and removed" if removed else "left out"
    return [
        f"no `notifyops` work pool at {_prefect_url()}: {_WORKER_ALARM} {done} (health "
        "publishes no WorkersOnline without one, as under `notifyops serve`, so it would page "
        "for ever); once workers poll the pool (`python -m deployments.setup`, `prefect worker "
        f"start --pool notifyops`), {_AGAIN}"
    ]


def _prefect_url() -> str:
    return os.environ.get("PREFECT_API_URL", "")


def parse_window(text: str, option: str) -> timedelta:
    """A duration such as 24h, 90m or 7d given to `option`; InputError naming it otherwise."""
    from notify.errors import InputError

    match = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,6})?)\s*([mhd]?)\s*", text.lower())
    if not match:
        raise InputError(f"{option}: {_cut(text)!r} is not a duration such as 24h, 90m or 7d")
    if float(match.group(1)) <= 0:
        raise InputError(f"{option}: {_cut(text)!r} is no time at all: give more than 0")
    unit = {"m": "minutes", "h": "hours", "": "hours", "d": "days"}[match.group(2)]
    try:
        return timedelta(**{unit: float(match.group(1))})
    except OverflowError:
        raise InputError(f"{option}: {_cut(text)!r} is too long (at most {MAX_WINDOW})") from None


def parse_as_of(text: str | None) -> datetime:
    from notify.check_params import future_note
    from notify.errors import InputError

    if not text:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        raise InputError(
            f"--as-of: {_cut(text)!r} is not ISO 8601, e.g. 2026-11-30T08:00:00Z"
        ) from None
    except OverflowError:
        raise InputError(f"--as-of: {_cut(text)!r} is out of range once converted to UTC") from None
    if ahead := future_note(moment):
        raise InputError(f"--as-of: {ahead}")
    return moment


def _cut(text: str, keep: int = 40) -> str:
    return text if len(text) <= keep else f"{text[:keep]}…"


def check_window_start(span: timedelta, end: datetime, as_of: str | None) -> None:
    """The window [end - span, end] must lie within the calendar (year 1 to 9999)."""
    from notify.errors import InputError

    try:
        end - span
    except OverflowError:
        raise InputError(
            f"--as-of: {as_of!r} minus --window {span.total_seconds() / 3600:g}h starts before "
            "year 1: "
            "pick a later --as-of or a shorter --window"
        ) from None


def _run(
    check: Check,
    window: str,
    as_of: str | None,
    json_output: bool,
    direct: bool,
    publish: bool,
    alert: bool,
    *,
    mute: bool | None = None,
) -> None:
    from notify.check_params import check_params
    from notifyops.params import build

    span, end = parse_window(window, "--window"), parse_as_of(as_of)
    extra = {"mute": mute} if check is Check.loops else {}
    params = build(
        check_params(check),
        options={"window_hours": "--window (hours)"},
        window_hours=span.total_seconds() / 3600,
        as_of=end if as_of else None,  # None: a look at now (it mutes loops, it may alert)
        publish_metrics=publish,
        alert=alert,
        **extra,
    )
    check_window_start(span, end, as_of)
    report = _direct(check, params) if direct else _through_prefect(check, params)
    _show(check, report, json_output)
    _say_if_ad_hoc(check, report)
    _say_if_nobody_was_alerted(check, report)
    _say_if_metrics_unpublished(check, report)
    failed = report.breached or report.alerts_unreached or report.metrics_unpublished
    raise typer.Exit(EXIT_PARTIAL if failed else EXIT_OK)


def _through_prefect(check: Check, params: Any) -> Report:
    from flows.monitoring import CHECK_FLOWS
    from flows.states import result_of
    from notify.bootstrap import runtime
    from notify.schema import DatabaseUnreachable
    from notifyops.prefect_env import run_flow

    try:
        runtime().engine()  # a database that cannot be used is one line here, before a flow starts
    except DatabaseUnreachable:
        if check is not Check.health:
            raise  # health reports it as its P1 finding and routes that
    # a P1/P2 run ends Failed (named P1/P2): its report is still the result
    report: Report = result_of(run_flow(CHECK_FLOWS[check], params=params, return_state=True))
    return report


def _direct(check: Check, params: Any) -> Report:
    """The same steps as the flow, without Prefect (for when Prefect itself is down)."""
    from notify import checks
    from notify.actions.audit_trail import Actor
    from notify.alerts import delivered, unreached
    from notify.audits import LoopReport
    from notify.bootstrap import runtime
    from notify.check_params import ad_hoc_run

    here, which = runtime(), check
    window = timedelta(hours=params.window_hours)
    as_of = params.as_of or here.now()
    report = checks.run_audit(which, runtime=here, as_of=as_of, window=window)
    if isinstance(report, LoopReport):
        mute = checks.should_mute(here.settings, params.mute, params.as_of)
        report = report.model_copy(update={"auto_mute": mute})  # this run's switch
    if isinstance(report, LoopReport) and report.auto_mute:
        actor = Actor(name=f"loop-detection via {Actor.from_cli().name} (--direct)")
        report = checks.mute_detected_loops(runtime=here, report=report, actor=actor)
    ad_hoc = ad_hoc_run(which, window_hours=params.window_hours, as_of=params.as_of)
    if params.alert or params.publish_metrics:
        report = report.with_ad_hoc(ad_hoc)
    if params.alert:  # before the metrics: AWS out of reach must not keep alerts from going out
        deliveries = checks.raise_alerts(which, runtime=here, report=report, ad_hoc=ad_hoc)
        report = report.with_alerts_unreached(unreached(deliveries), delivered(deliveries))
    if params.publish_metrics:
        published = checks.publish_metrics(which, runtime=here, report=report, ad_hoc=ad_hoc)
        report = report.with_metrics_unpublished(published.error)
    return report


def _say_if_ad_hoc(check: Check, report: Report) -> None:
    """One line on stderr when --alert or --publish ran over another window than the schedule's
    or looked back: what they did instead of touching the live alerts and the alarms' metrics."""
    from notify.check_params import ad_hoc_line

    if report.ad_hoc:
        err.print(Text.assemble(("note: ", "bold"), f"{check.value}: {ad_hoc_line(report.ad_hoc)}"))


def _say_if_nobody_was_alerted(check: Check, report: Report) -> None:
    """One line on stderr when an alert route failed (the run's state says the same)."""
    from notify.alerts import nobody_alerted

    if report.alerts_unreached:
        failed = nobody_alerted(report.alerts_unreached, report.alerts_delivered)
        fail_line(f"{check.value} {report.severity}: {failed}")


def _say_if_metrics_unpublished(check: Check, report: Report) -> None:
    """One line on stderr when --publish could not reach CloudWatch (the alerts went first)."""
    if report.metrics_unpublished:
        fail_line(f"{check.value} {report.severity}: {report.metrics_unpublished}")


def _show(check: Check, report: Report, json_output: bool) -> None:
    from notify.report_view import view

    data: dict[str, Any] = report.to_json()
    if json_output:
        print_json(data)
        return
    shaped = view(data)
    out.print(
        Text.assemble(
            (check.value, "bold"),
            ": severity ",
            (str(shaped.severity), "bold"),
            f", breached: {', '.join(shaped.breaches)}" if shaped.breaches else "",
        )
    )
    for finding in shaped.findings:
        out.print(f"  {finding}")
    out.print(table("Facts", ["fact", "value"], shaped.facts))
    for name, columns, rows in shaped.tables:
        out.print(table(name, columns, rows))
