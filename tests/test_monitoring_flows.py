"""The monitoring flows and commands on crafted data, on a real (temporary) Prefect API."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.states import State
from sqlalchemy import func, select

from flows.action_params import MuteParams, PurgeParams, RedriveParams, UnmuteParams
from flows.monitoring import (
    failure_summary_flow,
    health_flow,
    loop_detection_flow,
    sms_cost_audit_flow,
)
from flows.params import DeliverParams
from flows.states import result_of
from notify.check_names import Check
from notify.check_params import CheckParams, FailureParams, HealthParams, LoopParams
from notify.checks import run_audit
from notify.db import Alert, Suppression, make_engine, transaction
from notifyops.cli import main
from tests.factories import AS_OF, Rows
from tests.runtime import reload_runtime

LOOP_PHONE = "+12065550142"


def ran(flow: Any, params: Any) -> tuple[State[Any], Any]:
    """A check's final state and its report (its result whatever the state)."""
    state = flow(params, return_state=True)
    return state, result_of(state)


def crafted(url: str) -> None:
    rows = Rows()
    looping = rows.recipient("technician:42", phone=LOOP_PHONE)
    calm = rows.recipient("technician:7", phone="+12065550107")
    rows.many(8, looping, created_at=AS_OF - timedelta(hours=2), title="Unit 12 ready")
    rows.many(2, calm, created_at=AS_OF - timedelta(hours=1), title="Unit 12 ready")
    rows.many(
        3,
        calm,
        created_at=AS_OF - timedelta(minutes=30),
        channel="email",
        status="failed_permanent",
        error_code="MessageRejected",
        error_class="permanent",
        error_message="Email address is not verified.",
    )
    rows.insert(make_engine(url))


def test_loop_detection_flow_finds_mutes_and_alerts(flow_env: str) -> None:
    crafted(flow_env)
    reload_runtime(now=AS_OF)  # the scheduled run's look at the present, at the crafted time
    params = LoopParams(publish_metrics=False, mute=True)
    _, report = ran(loop_detection_flow, params)
    assert [(lp.recipient, lp.count) for lp in report.loops] == [("technician:42", 8)]
    assert report.breached and [m.phone_masked for m in report.muted] == ["+1***0142"]
    engine = make_engine(flow_env)
    with transaction(engine) as session:
        muted = session.execute(select(Suppression.address, Suppression.title)).all()
        alerts = session.scalars(select(Alert.key)).all()
    assert [tuple(row) for row in muted] == [(LOOP_PHONE, "Unit 12 ready")]
    assert len(alerts) == 1 and alerts[0].startswith("loops:")
    _, again = ran(loop_detection_flow, params)
    assert again.muted[0].created is False, "an active mute is not added twice"
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 1
        assert session.scalar(select(Alert.count)) == 2, (
            "the same alert is refreshed, not duplicated"
        )


def test_sms_cost_failure_and_health_flows_report_the_crafted_numbers(flow_env: str) -> None:
    crafted(flow_env)
    quiet = CheckParams(as_of=AS_OF, publish_metrics=False, alert=False)
    cost_state, cost = ran(sms_cost_audit_flow, quiet)
    assert cost.to_json()["sms_count"] == 10 and cost.to_json()["total_cost_usd"] == "0.0645"
    assert cost_state.is_completed()
    failed, failures = ran(
        failure_summary_flow, FailureParams(as_of=AS_OF, window_hours=24, publish_metrics=False)
    )
    assert failures.to_json()["email_error_rate"] == 1.0 and failures.severity == "P1"
    assert failed.is_failed() and failed.name == "P1", "a P1 finding is red in the runs list"
    assert str(failed.message).startswith("NOBODY WAS ALERTED (sns: route not configured)")
    assert "failures P1:" in str(failed.message)
    _, health = ran(health_flow, HealthParams(**quiet.model_dump()))
    assert health.database_reachable and health.backlog == 0 and health.ses is None


def test_audit_commands_exit_1_on_a_breach_with_stable_json_keys(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    crafted(flow_env)
    as_of = AS_OF.isoformat()
    assert main(["audit", "loops", "--as-of", as_of, "--no-mute", "--json"]) == 1
    loops = json.loads(capsys.readouterr().out)
    assert {"threshold", "loops", "muted", "severity"} <= set(loops)
    assert main(["audit", "sms-cost", "--as-of", as_of, "--json", "--direct"]) == 0
    cost = json.loads(capsys.readouterr().out)
    assert {
        "window_hours",
        "sms_count",
        "total_cost_usd",
        "last_hour_cost_usd",
        "today_cost_usd",
        "hourly",
        "top_recipients",
        "severity",
    } <= set(cost)
    assert {"recipient", "count", "cost_usd"} <= set(cost["top_recipients"][0])
    assert main(["audit", "failures", "--as-of", as_of, "--window", "1d", "--json"]) == 1
    failures = json.loads(capsys.readouterr().out)
    assert {
        "total",
        "failed",
        "error_rate",
        "email_error_rate",
        "sms_error_rate",
        "groups",
        "severity",
    } <= set(failures)
    assert {"error_class", "error_message", "count", "fix"} <= set(failures["groups"][0])
    assert main(["health", "--as-of", as_of, "--json", "--direct"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert {
        "backlog",
        "oldest_pending_age_s",
        "avg_latency_s",
        "p95_latency_s",
        "unknown",
        "ses",
        "severity",
    } <= set(state)
    assert main(["audit", "loops", "--window", "soon"]) == 2
    assert "--window" in capsys.readouterr().err


def slow_email(url: str) -> None:
    """One email sent 25 minutes after it was stored: average latency 1,500 s > 60 s, a P2."""
    rows = Rows()
    tech = rows.recipient("technician:9", phone=None)
    stored = AS_OF - timedelta(minutes=30)
    rows.delivery(tech, created_at=stored, channel="email", sent_at=AS_OF - timedelta(minutes=5))
    rows.insert(make_engine(url))


NOBODY = (
    "error: health P2: NOBODY WAS ALERTED (webhook: route not configured): set "
    "NOTIFY_ALERT_SNS_TOPIC_ARN (sns) or NOTIFY_ALERT_WEBHOOK_URL (webhook), or route the "
    "severity elsewhere with NOTIFY_ALERT_ROUTING"
)


@pytest.mark.parametrize("how", [[], ["--direct"]], ids=["flow", "direct"])
def test_an_alert_that_reached_nobody_is_one_line_and_exit_1(
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    how: list[str],
) -> None:
    monkeypatch.setenv("NOTIFY_ALERT_COOLDOWN_MINUTES", "0")
    reload_runtime()
    slow_email(flow_env)
    command = ["health", "--as-of", AS_OF.isoformat(), "--alert", *how]
    assert main(command) == 1
    printed = capsys.readouterr()
    assert "health: severity P2" in printed.out
    assert [line for line in printed.err.splitlines() if "NOBODY" in line] == [NOBODY]
    assert main([*command, "--json"]) == 1, "the cooldown is 0: the alert is repeated"
    printed = capsys.readouterr()
    assert json.loads(printed.out)["alerts_unreached"] == ["webhook: route not configured"]
    assert NOBODY in printed.err


@pytest.mark.parametrize("how", [[], ["--direct"]], ids=["flow", "direct"])
def test_an_alert_routed_where_it_can_go_prints_no_such_line(
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    how: list[str],
) -> None:
    monkeypatch.setenv("NOTIFY_ALERT_ROUTING", "P2=log")
    reload_runtime()
    slow_email(flow_env)
    assert main(["health", "--as-of", AS_OF.isoformat(), "--alert", "--json", *how]) == 1
    printed = capsys.readouterr()
    assert json.loads(printed.out)["alerts_unreached"] == []
    assert "NOBODY" not in printed.err


def test_a_p3_check_whose_alert_reached_nobody_ends_failed(
    flow_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A P3 (or P4) check whose alert no route delivered ended green Completed, its message
    starting `NOBODY WAS ALERTED`, while the command exits 1 for it: in the runs list nothing
    showed that the alerting was broken. Now it ends Failed named NobodyAlerted."""
    monkeypatch.setenv("NOTIFY_ALERT_ROUTING", "P3=webhook")
    reload_runtime()
    crafted(flow_env)
    state, report = ran(
        loop_detection_flow, LoopParams(as_of=AS_OF, publish_metrics=False, mute=False)
    )
    assert report.severity == "P3"
    assert list(report.alerts_unreached) == ["webhook: route not configured"]
    assert state.is_failed() and state.name == "NobodyAlerted"
    assert str(state.message).startswith("NOBODY WAS ALERTED (webhook: route not configured)")
    assert "loops P3: loop" in str(state.message)


def test_a_check_whose_metrics_could_not_be_published_ends_failed(
    flow_env: str, aws_out_of_reach: str
) -> None:
    state, report = ran(
        health_flow, HealthParams(as_of=AS_OF, window_hours=24, publish_metrics=True)
    )
    assert report.severity == "P4" and report.metrics_unpublished
    assert state.is_failed() and state.name == "MetricsUnpublished"
    assert str(state.message).startswith("CloudWatch metrics NOT PUBLISHED")


def test_the_artifact_names_each_route_once_with_how_many_alerts_took_it() -> None:
    from flows.monitoring import routed_lines
    from notify.alerts import Delivery

    deliveries = [
        Delivery("webhook", ok=True),
        Delivery("log", ok=True),
        Delivery("webhook", ok=True),
        Delivery("webhook", ok=True),
    ]
    assert routed_lines(deliveries) == ["webhook: ok (3 alerts)", "log: ok"]


def test_a_checks_end_of_window_is_a_past_time_read_in_utc_without_a_zone() -> None:
    """As the command line reads --as-of: the form refused a time without a zone, where the
    README says it is read in UTC."""
    with pytest.raises(ValueError, match="is in the future"):  # from the form: an empty report
        CheckParams.model_validate({"as_of": "2030-01-01T00:00:00+00:00"})
    assert CheckParams.model_validate({"as_of": AS_OF.isoformat()}).as_of == AS_OF
    naive = AS_OF.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert CheckParams.model_validate({"as_of": naive}).as_of == AS_OF


@pytest.mark.parametrize(
    ("model", "misspelt"),
    [
        (CheckParams, {"windw_hours": 2}),
        (LoopParams, {"mutee": True}),
        (DeliverParams, {"batchsize": 10}),
        (PurgeParams, {"statu": "failed"}),  # dropped, the purge matched every status
        (RedriveParams, {"chanel": "sms"}),
        (MuteParams, {"recipient": "technician:1", "chanel": "sms"}),
        (UnmuteParams, {"recipient": "technician:1", "titel": "x"}),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else next(iter(value)),
)
def test_a_form_key_nobody_knows_is_refused_naming_it(model: Any, misspelt: dict[str, Any]) -> None:
    """A misspelt key given to a run (`prefect deployment run ... --param params='{...}'`, the
    API) was dropped without a word: the check ran its default window, an action its filter's
    absence."""
    with pytest.raises(ValueError) as refused:
        model.model_validate(misspelt)
    [key] = [k for k in misspelt if k not in model.model_fields]
    assert key in str(refused.value) and "Extra inputs are not permitted" in str(refused.value)


@pytest.mark.parametrize("empty", ["", "  "])
def test_a_checks_end_of_window_left_empty_in_the_form_means_now(empty: str) -> None:
    """The form says of as_of "empty means now", but a field cleared in the form sends "" and
    the run failed at once: `params.as_of: Input should be a valid datetime or date, input is
    too short`."""
    assert CheckParams.model_validate({"as_of": empty}).as_of is None
    assert LoopParams.model_validate({"as_of": empty, "window_hours": 2}).window_hours == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the database is out of reach
def test_health_without_its_database_says_unknown_not_0(
    cli_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """With the database unreachable, `health --json` said `backlog: 0` and `unknown: 0` beside
    `database_reachable: false` (and the text 0 too, and CloudWatch got QueueBacklog 0): an
    empty queue, where nothing was read."""
    from notify.bootstrap import runtime
    from notify.check_names import HEALTH_DATABASE_FACTS
    from notify.metrics import health_metrics

    monkeypatch.setenv("NOTIFY_DATABASE_URL", f"sqlite:///{tmp_path}/missing/notify.db")
    reload_runtime()
    assert main(["health", "--direct", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["database_reachable"] is False
    assert {key: report[key] for key in HEALTH_DATABASE_FACTS} == dict.fromkeys(
        HEALTH_DATABASE_FACTS
    )
    assert [f["code"] for f in report["findings"]] == ["database"]
    assert main(["health", "--direct"]) == 1
    facts = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in capsys.readouterr().out.splitlines()
        if line.count("│") >= 3
    }
    assert facts["database_reachable"] == "False"
    assert {facts[key] for key in HEALTH_DATABASE_FACTS} == {"unknown"}
    audit = run_audit(Check.health, runtime=runtime(), as_of=AS_OF, window=timedelta(hours=1))
    assert [point.name for point in health_metrics(audit)] == [], "no 0 backlog for the alarms"


def test_health_pages_an_email_pause_until_it_is_resumed(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reputation guardrail paused email (receipts: "EMAIL PAUSED", exit 1) and health said
    nothing of it: no finding, exit and run state as if email went out."""
    from notify.db import utcnow
    from notify.receipts import resume_email
    from notify.receipts.reputation import guard, reputation

    rows, now = Rows(), utcnow()
    who = rows.recipient("technician:9")
    sent = now - timedelta(hours=2)
    rows.many(3, who, channel="email", created_at=sent, status="bounced", sent_at=sent)
    rows.many(3, who, channel="email", created_at=sent, status="delivered")
    engine = make_engine(flow_env)
    rows.insert(engine)
    with transaction(engine) as session:  # as `notifyops receipts` does on its poll
        found = reputation(session=session, now=now, window=timedelta(days=7), min_sends=5)
        assert guard(session=session, finding=found, now=now).paused
    state, report = ran(
        health_flow, HealthParams(window_hours=24, publish_metrics=False, alert=False)
    )
    assert report.severity == "P1" and state.is_failed() and state.name == "P1"
    [finding] = [f for f in report.findings if f.code == "email-paused"]
    assert finding.severity == "P1"
    assert finding.message.startswith(  # since when and why, as the guardrail stored them
        f"email paused by the reputation guardrail at {now:%Y-%m-%d %H:%M} UTC: P1: bounce rate "
        "50.00% (3/6)"
    )
    assert "`notifyops receipts resume-email`" in finding.message
    assert "email-paused" in str(state.message)
    assert main(["health", "--direct", "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["email_paused"].startswith("email paused by the reputation guardrail")
    assert printed["email_paused_since"].startswith(f"{now:%Y-%m-%dT%H:%M}")
    with transaction(engine) as session:
        assert resume_email(session=session, now=utcnow())
    assert main(["health", "--direct", "--json"]) in (0, 1)
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["email_paused"] is None and "email-paused" not in {
        f["code"] for f in resumed["findings"]
    }


def test_health_pages_deployments_on_a_work_pool_no_worker_polls(
    flow_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `python -m deployments.setup` and no worker started, the pool is NOT_READY and
    health said `workers: []`, `workers_down_minutes: 0.0` and nothing else: 0 minutes down,
    read as healthy, while nothing would run the deployments."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate, WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from tasks.workers import WORK_POOL

    @flow(name="unpolled-pool-probe")
    def probe() -> None: ...

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
        flow_id = client.create_flow(probe)
        deployment = client.create_deployment(flow_id, "probe", work_pool_name=WORK_POOL)
    try:
        assert main(["health", "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["workers"] == [] and report["workers_down_minutes"] is None
        assert report["pool_deployments"] == 1 and report["severity"] == "P1"
        [finding] = [f for f in report["findings"] if f["code"] == "workers-none"]
        assert finding["severity"] == "P1"
        assert "`prefect worker start --pool notifyops`" in finding["message"]
        with get_client(sync_client=True) as client:  # nothing left for a worker to run
            client.update_deployment(deployment, DeploymentUpdate(paused=True))
        main(["health", "--json"])
        paused = json.loads(capsys.readouterr().out)
        assert paused["pool_deployments"] == 0 and paused["workers_down_minutes"] is None
        assert "workers-none" not in {f["code"] for f in paused["findings"]}
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment)
            client.delete_work_pool(WORK_POOL)
