"""Alerts: dedup with a cooldown, auto-resolve, routing (webhook on local HTTP, SNS on moto)."""

from __future__ import annotations

import json
import logging
import socketserver
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from notify.alerts import (
    DEFAULT_ROUTES,
    AlertNotice,
    AlertRoute,
    LogRoute,
    SnsTopicRoute,
    WebhookRoute,
    dispatch,
    parse_routing,
    raise_or_refresh,
    reached,
    record_notices,
    resolve_cleared,
    routes_from_settings,
    sync_alerts,
    unreached,
)
from notify.db import Alert, transaction
from notify.errors import InputError
from notify.settings import Settings
from notify.severity import Finding, Severity

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
COOLDOWN = timedelta(minutes=60)
P1, P2, P3, P4 = Severity.P1, Severity.P2, Severity.P3, Severity.P4


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with transaction(engine) as session:
        yield session


def alert(
    session: Session,
    key: str = "health:backlog",
    severity: Severity = P3,
    minutes: float = 0,
    *,
    delivered: bool = True,
) -> Any:
    """One check run's alert: raised or refreshed, and its notice (when due) routed to someone
    (`delivered`) or to nobody."""
    now = NOW + timedelta(minutes=minutes)
    decision = raise_or_refresh(
        session=session,
        key=key,
        severity=severity,
        summary=f"{key} {severity}",
        now=now,
        cooldown=COOLDOWN,
    )
    if decision.notify:
        record_notices(session=session, reached={key: delivered}, now=now)
    return decision


def stored(session: Session, key: str = "health:backlog") -> Alert:
    return session.execute(select(Alert).where(Alert.key == key)).scalar_one()


def test_new_alert_notifies_then_cools_down_then_repeats(session: Session) -> None:
    first = alert(session)
    assert (first.notify, first.notice.reason, first.notice.count) == (True, "new", 1)
    quiet = alert(session, minutes=30)
    assert (quiet.notify, quiet.notice.reason, quiet.notice.count) == (False, "in cooldown", 2)
    repeat = alert(session, minutes=60)
    assert (repeat.notify, repeat.notice.reason, repeat.notice.count) == (True, "repeat", 3)
    row = stored(session)
    assert (row.state, row.count, row.first_seen, row.last_seen) == (
        "open",
        3,
        NOW,
        NOW + timedelta(minutes=60),
    )
    assert row.last_notified == NOW + timedelta(minutes=60)


def test_escalation_notifies_inside_the_cooldown_deescalation_does_not(session: Session) -> None:
    alert(session, severity=P3)
    up = alert(session, severity=P2, minutes=5)
    assert (up.notify, up.notice.reason, up.notice.severity) == (True, "escalated", P2)
    down = alert(session, severity=P3, minutes=10)
    assert (down.notify, stored(session).severity) == (False, "P3")


def test_an_alert_that_reached_nobody_is_sent_again_on_the_next_run(session: Session) -> None:
    """A route down (SNS topic not set, webhook failing) used to start the cooldown anyway: the
    operator fixed the route and heard nothing for an hour. Only a notice that reached someone
    starts it now."""
    assert alert(session, severity=P1, delivered=False).notify
    assert stored(session).last_notified is None
    again = alert(session, severity=P1, minutes=5, delivered=False)
    assert (again.notify, again.notice.reason) == (True, "retry")
    fixed = alert(session, severity=P1, minutes=10)
    assert (fixed.notify, fixed.notice.reason) == (True, "retry")
    assert stored(session).last_notified == NOW + timedelta(minutes=10)
    quiet = alert(session, severity=P1, minutes=15)
    assert (quiet.notify, quiet.notice.reason) == (False, "in cooldown")


def test_an_escalation_that_reached_nobody_is_not_lost_to_the_earlier_cooldown(
    session: Session,
) -> None:
    alert(session, severity=P3)  # logged: reached
    up = alert(session, severity=P1, minutes=5, delivered=False)
    assert (up.notify, up.notice.reason) == (True, "escalated")
    retried = alert(session, severity=P1, minutes=10)
    assert (retried.notify, retried.notice.reason, retried.notice.severity) == (True, "retry", P1)


def test_resolve_cleared_only_touches_its_own_check(session: Session) -> None:
    alert(session, key="health:backlog")
    alert(session, key="health:latency")
    alert(session, key="failures:email-failure-rate")
    resolved = resolve_cleared(
        session=session,
        active_keys_for_check=["health:latency"],
        check_prefix="health:",
        now=NOW + timedelta(minutes=5),
    )
    assert [(n.key, n.state) for n in resolved] == [("health:backlog", "resolved")]
    assert stored(session, "health:backlog").resolved_at == NOW + timedelta(minutes=5)
    assert stored(session, "health:latency").state == "open"
    assert stored(session, "failures:email-failure-rate").state == "open"
    again = alert(session, key="health:backlog", minutes=6)
    assert (again.notify, again.notice.reason, again.notice.count) == (True, "reopened", 1)
    row = stored(session, "health:backlog")
    assert (row.state, row.first_seen, row.resolved_at) == (
        "open",
        NOW + timedelta(minutes=6),
        None,
    )


def test_an_alert_that_never_reached_anyone_resolves_without_a_notice(session: Session) -> None:
    """A P1 whose page went nowhere (no SNS topic), then cleared: its resolution was routed to
    that same dead route and reported as the alert nobody heard, in place of the ones due now."""
    alert(session, key="health:runs-late", severity=P1, delivered=False)
    alert(session, key="health:backlog", severity=P3)  # logged: reached
    resolved = resolve_cleared(
        session=session, active_keys_for_check=[], check_prefix="health:", now=NOW
    )
    assert [n.key for n in resolved] == ["health:backlog"]
    assert stored(session, "health:runs-late").state == "resolved", "resolved all the same"


def test_sync_alerts_raises_refreshes_and_resolves(session: Session) -> None:
    findings = [
        Finding("backlog", P3, "backlog 2,000 > 1,000"),
        Finding("latency", P2, "latency 70 s > 60 s"),
    ]
    first = sync_alerts(
        session=session, check="health", findings=findings, now=NOW, cooldown=COOLDOWN
    )
    assert [n.key for n in first.to_notify] == ["health:backlog", "health:latency"]
    record_notices(session=session, reached={n.key: True for n in first.to_notify}, now=NOW)
    later = NOW + timedelta(minutes=15)
    second = sync_alerts(
        session=session, check="health", findings=findings[1:], now=later, cooldown=COOLDOWN
    )
    assert second.to_notify == () and [n.key for n in second.quiet] == ["health:latency"]
    assert [n.key for n in second.resolved] == ["health:backlog"]
    clear = sync_alerts(session=session, check="health", findings=[], now=later, cooldown=COOLDOWN)
    assert [n.key for n in clear.resolved] == ["health:latency"]


def test_alerts_survive_separate_transactions(engine: Engine) -> None:
    with transaction(engine) as session:
        assert alert(session).notify
    with transaction(engine) as session:
        assert not alert(session, minutes=1).notify
    with transaction(engine) as session:
        assert stored(session).count == 2


# --- routing --------------------------------------------------------------------------------


def notice(severity: Severity, state: str = "open") -> AlertNotice:
    return AlertNotice(
        key="health:backlog",
        severity=severity,
        summary="backlog 6,000 > 5,000",
        state=state,
        count=2,
        first_seen=NOW,
        reason="new",
    )


class _Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200
    delay_s = 0.0  # a slow webhook
    started = False  # a request has come in

    def do_POST(self) -> None:
        type(self).started = True
        time.sleep(type(self).delay_s)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(
            {"body": json.loads(body), "content_type": self.headers["Content-Type"]}
        )
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type(
        "Recorder", (_Recorder,), {"received": [], "status": 200, "delay_s": 0.0, "started": False}
    )
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts", handler
    server.shutdown()
    server.server_close()


def test_p2_goes_to_the_webhook_as_slack_json(webhook: tuple[str, Any]) -> None:
    url, handler = webhook
    routes: dict[str, AlertRoute] = {"webhook": WebhookRoute(url), "log": LogRoute()}
    results = dispatch(notice(P2), routes=routes)
    assert [(r.route, r.ok) for r in results] == [("webhook", True), ("log", True)]
    [request] = handler.received
    assert request["content_type"] == "application/json"
    assert request["body"] == {
        "text": "[P2] health:backlog: backlog 6,000 > 5,000 (seen 2x since 2026-11-20 12:00 UTC)"
    }


def test_webhook_failure_is_reported_not_raised(webhook: tuple[str, Any]) -> None:
    url, handler = webhook
    handler.status = 500
    [result, logged] = dispatch(
        notice(P2), routes={"webhook": WebhookRoute(url), "log": LogRoute()}
    )
    assert not result.ok and "HTTPError" in (result.error or "") and logged.ok
    refused = dispatch(
        notice(P2),
        routes={"webhook": WebhookRoute("http://127.0.0.1:9/x")},
        routing={P2: ("webhook",)},
    )
    assert not refused[0].ok and "URLError" in (refused[0].error or "")


def test_p3_and_p4_only_log(caplog: pytest.LogCaptureFixture, webhook: tuple[str, Any]) -> None:
    url, handler = webhook
    routes: dict[str, AlertRoute] = {"webhook": WebhookRoute(url), "log": LogRoute()}
    with caplog.at_level(logging.INFO, logger="notify.alerts"):
        for severity in (P3, P4):
            assert [r.route for r in dispatch(notice(severity), routes=routes)] == ["log"]
        dispatch(notice(P3, state="resolved"), routes=routes)
    assert handler.received == []
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "INFO"]
    assert (
        caplog.records[-1].getMessage() == "alert [RESOLVED] health:backlog: backlog 6,000 > 5,000"
    )


def test_a_severity_routed_nowhere_is_reported_and_logged() -> None:
    """`NOTIFY_ALERT_ROUTING=P1=` loads (it may be meant), but its P1 alerts reached nobody
    without a word: now that is an unreached delivery, and the alert goes to the log."""
    results = dispatch(notice(P1), routes={"log": LogRoute()}, routing={P1: ()})
    assert [(r.route, r.ok) for r in results] == [("routing", False), ("log", True)]
    assert unreached(results) == ("routing: NOTIFY_ALERT_ROUTING names no route for P1",)


def test_unconfigured_route_is_reported_and_logged_instead() -> None:
    results = dispatch(notice(P1), routes={"log": LogRoute()}, routing={P1: ("sns",)})
    assert [(r.route, r.ok, r.error) for r in results] == [
        ("sns", False, "route not configured"),
        ("log", True, None),
    ]
    assert unreached(results) == ("sns: route not configured",)


def test_an_alert_reaches_someone_only_where_its_severity_is_routed() -> None:
    """The log counts only when it is all the severity asks for (P3-P4): the log standing in for
    a pager or chat route that failed reaches nobody."""
    log_only = dispatch(notice(P3), routes={"log": LogRoute()})
    paged_nobody = dispatch(notice(P1), routes={"log": LogRoute()})  # sns, log: sns not set
    routed_nowhere = dispatch(notice(P1), routes={"log": LogRoute()}, routing={P1: ()})
    assert [reached(d) for d in (log_only, paged_nobody, routed_nowhere)] == [True, False, False]


def test_unreached_names_each_failed_route_once() -> None:
    """Two P1 findings with the pager not set up were one line naming `sns` twice."""
    routes: dict[str, AlertRoute] = {"log": LogRoute()}
    both = [*dispatch(notice(P1), routes=routes), *dispatch(notice(P1), routes=routes)]
    nowhere = {P1: (), P2: ()}
    routed_nowhere = [
        *dispatch(notice(P1), routes=routes, routing=nowhere),
        *dispatch(notice(P2), routes=routes, routing=nowhere),
    ]
    assert unreached(both) == ("sns: route not configured",)
    assert unreached(routed_nowhere) == (
        "routing: NOTIFY_ALERT_ROUTING names no route for P1; "
        "NOTIFY_ALERT_ROUTING names no route for P2",
    )


def test_routing_is_configurable() -> None:
    routing = parse_routing("P1=sns,webhook; p3=Webhook")
    assert routing[P1] == ("sns", "webhook") and routing[P3] == ("webhook",)
    assert routing[P2] == DEFAULT_ROUTES[P2] and routing[P4] == ("log",)
    with pytest.raises(InputError, match="accepted form"):
        parse_routing("P9=sns")
    with pytest.raises(InputError, match="'sms' is not a route"):
        parse_routing("P1=sms,log")


def test_p1_publishes_to_the_sns_topic(aws_env: str) -> None:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="notifyops-pager")["TopicArn"]
    queue = sqs.create_queue(QueueName="pager")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    settings = Settings(alert_sns_topic_arn=topic, sender="memory")
    routes = routes_from_settings(settings, sns_client=sns)
    assert set(routes) == {"sns", "log"}
    results = dispatch(notice(P1), routes=routes)
    assert [(r.route, r.ok) for r in results] == [("sns", True), ("log", True)]
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert body["Subject"] == "[P1] notifyops health:backlog"
    assert body["Message"].startswith("[P1] health:backlog: backlog 6,000 > 5,000")


def test_sns_errors_are_reported(aws_env: str) -> None:
    route = SnsTopicRoute(boto3.client("sns"), "arn:aws:sns:us-east-1:123456789012:missing")
    [result] = dispatch(notice(P1), routes={"sns": route}, routing={P1: ("sns",)})
    assert not result.ok and "NotFound" in (result.error or "")


def test_routes_from_settings_include_only_what_is_configured() -> None:
    bare = Settings(sender="memory")
    assert set(routes_from_settings(bare)) == {"log"}
    full = Settings(
        sender="memory",
        alert_webhook_url="http://127.0.0.1:1/x",
        alert_sns_topic_arn="arn:aws:sns:us-east-1:123456789012:t",
    )
    assert set(routes_from_settings(full)) == {"log", "webhook"}  # no SNS client given


def test_a_concurrent_insert_of_the_same_key_is_absorbed(session: Session) -> None:
    from notify.alerts.store import _insert

    assert _insert(session, "health:backlog", P3, "first", NOW) is not None
    assert _insert(session, "health:backlog", P2, "second", NOW) is None  # savepoint rolled back
    assert stored(session).summary == "first"
    refreshed = alert(session, severity=P2, minutes=1)
    assert (refreshed.notify, refreshed.notice.reason, refreshed.notice.count) == (
        True,
        "escalated",
        2,
    )


@pytest.mark.parametrize("how", [[], ["--direct"]], ids=["flow", "direct"])
def test_an_alert_that_reached_nobody_reaches_the_route_once_it_is_fixed(
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    webhook: tuple[str, Any],
    how: list[str],
) -> None:
    """A P2 with no webhook configured: the next run (within the hour's cooldown) still says
    nobody was alerted, and once the webhook is set the alert goes out at once, where the
    cooldown kept it back for an hour. (The live alert: health's scheduled window, the present
    being the crafted data's time.)"""
    from notifyops.cli import main
    from tests.factories import AS_OF
    from tests.runtime import reload_runtime
    from tests.test_monitoring_flows import slow_email

    reload_runtime(now=AS_OF)
    slow_email(flow_env)
    command = ["health", "--window", "1h", "--alert", "--json", *how]
    for _ in range(2):
        assert main(command) == 1
        printed = capsys.readouterr()
        assert json.loads(printed.out)["alerts_unreached"] == ["webhook: route not configured"]
        assert "NOBODY WAS ALERTED" in printed.err
    url, handler = webhook
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", url)
    reload_runtime(now=AS_OF)
    assert main(command) == 1
    assert json.loads(capsys.readouterr().out)["alerts_unreached"] == []
    assert [r["body"]["text"].split(":")[0] for r in handler.received] == ["[P2] health"]
    assert main(command) == 1, "still breached"
    assert len(handler.received) == 1, "reached: now in its cooldown"


@pytest.mark.parametrize("how", [[], ["--direct"]], ids=["flow", "direct"])
def test_with_aws_out_of_reach_publish_still_routes_the_alerts_and_says_why_it_failed(
    flow_env: str,
    aws_out_of_reach: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    webhook: tuple[str, Any],
    how: list[str],
) -> None:
    """`--publish` used to put the metrics to CloudWatch first: with AWS down its error ended
    the check (exit 2) before any alert was routed. The alerts go first now, and the metrics
    that could not go are a failure of their own: one line on stderr, exit 1."""
    from notifyops.cli import main
    from tests.factories import AS_OF
    from tests.runtime import reload_runtime
    from tests.test_monitoring_flows import slow_email

    url, handler = webhook
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", url)
    reload_runtime()
    slow_email(flow_env)
    command = ["health", "--as-of", AS_OF.isoformat(), "--alert", "--publish", "--json", *how]
    assert main(command) == 1
    printed = capsys.readouterr()
    assert [r["body"]["text"].split(":")[0] for r in handler.received] == ["[P2] health"]
    report = json.loads(printed.out)
    assert (report["severity"], report["alerts_unreached"]) == ("P2", [])
    unpublished = "CloudWatch metrics NOT PUBLISHED (EndpointConnectionError: "
    assert report["metrics_unpublished"].startswith(unpublished)
    assert "NOTIFY_CLOUDWATCH_ENABLED=false" in report["metrics_unpublished"]
    said = [line for line in printed.err.splitlines() if line.startswith("error: ")]
    assert [line[: len(unpublished) + 18] for line in said] == [f"error: health P2: {unpublished}"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_metrics_that_could_not_be_published_fail_a_healthy_check(
    cli_env: str, aws_out_of_reach: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from notifyops.cli import main

    assert main(["health", "--publish", "--direct"]) == 1
    printed = capsys.readouterr()
    assert "health: severity P4" in printed.out
    assert "error: health P4: CloudWatch metrics NOT PUBLISHED" in printed.err


def _out_of_reach(url: str, tmp_path: Path) -> str:
    """A database URL of the same kind nobody answers: a file in a missing directory, a port
    that refuses."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/missing/dir/notifyops.db"
    return make_url(url).set(port=1).render_as_string(hide_password=False)


@pytest.mark.parametrize("how", [[], ["--direct"]], ids=["flow", "direct"])
def test_health_pages_p1_when_the_database_is_out_of_reach(
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    webhook: tuple[str, Any],
    how: list[str],
) -> None:
    """The command used to stop at its schema check (exit 2, 'cannot open the database') before
    health ran, so the one outage that most needs a page never sent one. (The live run: health's
    scheduled window, as its schedule runs it.)"""
    from notifyops.cli import main
    from tests.runtime import reload_runtime

    url, handler = webhook
    monkeypatch.setenv("NOTIFY_DATABASE_URL", _out_of_reach(flow_env, tmp_path))
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", url)
    monkeypatch.setenv("NOTIFY_ALERT_ROUTING", "P1=webhook,log")
    reload_runtime()
    for run in (1, 2):
        assert main(["health", "--window", "1h", "--alert", "--json", *how]) == 1
        report = json.loads(capsys.readouterr().out)
        assert (report["severity"], report["database_reachable"]) == ("P1", False)
        [finding] = report["findings"]
        assert finding["code"] == "database"
        assert finding["message"].startswith("database unreachable (cannot open the database ")
        assert "fix: start the database server" in finding["message"]
        assert report["alerts_unreached"] == []
        assert len(handler.received) == run, "no alert store: no cooldown, paged every run"
    text = handler.received[-1]["body"]["text"]
    assert text.startswith("[P1] health:database: database unreachable (cannot open the database")
    assert text.endswith("(alert store out of reach: no cooldown, sent on every run)")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_other_checks_still_stop_on_a_database_out_of_reach(
    cli_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from notifyops.cli import main
    from tests.runtime import reload_runtime

    monkeypatch.setenv("NOTIFY_DATABASE_URL", _out_of_reach(cli_env, tmp_path))
    reload_runtime()
    assert main(["audit", "failures", "--direct"]) == 2
    assert "cannot open the database" in capsys.readouterr().err


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_alerts_whose_store_fails_are_routed_unstored(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database going away between a check's audit and its alerts: the findings still go
    out, without cooldown, instead of failing the check with nothing routed."""
    from notify.bootstrap import Runtime
    from notify.check_names import Check
    from notify.checks import raise_alerts
    from notify.db import make_engine
    from notify.reports import Report

    settings = Settings(sender="memory", database_url=db_url, alert_routing="P1=log")
    gone = make_engine(_out_of_reach(db_url, tmp_path))
    finding = Finding("email-failure-rate", P1, "email failure rate 80.0% > 50%")
    report = Report(as_of=NOW, window_start=NOW, window_hours=1, severity=P1, findings=(finding,))
    with caplog.at_level(logging.INFO, logger="notify"):
        deliveries = raise_alerts(
            Check.failures, runtime=Runtime(settings, engine=gone), report=report, ad_hoc=None
        )
    assert [(d.route, d.ok) for d in deliveries] == [("log", True)]
    assert "alerts of failures not stored" in caplog.text
    assert "[P1] failures:email-failure-rate: email failure rate 80.0% > 50% (alert store" in (
        caplog.text
    )


# --- a check's alerts: routes that fail in any way, what reached whom ------------------------


class FakeSns:
    """An SNS client for the pager route: records what it was asked to publish; `failing` makes
    it refuse (the topic gone, say)."""

    def __init__(self) -> None:
        self.published: list[dict[str, str]] = []
        self.failing = False

    def publish(self, **request: str) -> dict[str, str]:
        if self.failing:
            raise ConnectionError("topic unreachable")
        self.published.append(request)
        return {"MessageId": str(len(self.published))}


class _BrokenHttp(socketserver.StreamRequestHandler):
    """Reads a whole request, answers with `answer` (raw bytes, broken HTTP), closes."""

    answer = b""

    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        self.rfile.read(length)
        self.wfile.write(type(self).answer)


BROKEN_ANSWERS = {
    "BadStatusLine": b"garbage, not HTTP\r\n\r\n",
    "IncompleteRead": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
}


@pytest.fixture(params=list(BROKEN_ANSWERS))
def broken_webhook(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A webhook answering broken HTTP: its URL and the error urllib raises on it."""
    handler = type("Broken", (_BrokenHttp,), {"answer": BROKEN_ANSWERS[request.param]})
    server = socketserver.TCPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts", request.param
    server.shutdown()
    server.server_close()


def check_run(
    engine: Engine,
    sns: FakeSns,
    findings: tuple[Finding, ...],
    *,
    ad_hoc: str | None = None,
    **settings: Any,
) -> list[Any]:
    """One `health --alert` run's alerts with these findings (a run like the schedule's, unless
    `ad_hoc` says what makes it ad hoc); its deliveries."""
    from notify.bootstrap import Runtime
    from notify.check_names import Check
    from notify.checks import raise_alerts
    from notify.reports import Report

    topic = "arn:aws:sns:us-east-1:123456789012:pager"
    configured = Settings(sender="memory", alert_sns_topic_arn=topic, **settings)
    severity = min((f.severity for f in findings), key=lambda s: s.rank, default=P4)
    report = Report(
        as_of=NOW, window_start=NOW, window_hours=1, severity=severity, findings=findings
    )
    runtime = Runtime(configured, engine=engine, clients={"sns": sns})
    return raise_alerts(Check.health, runtime=runtime, report=report, ad_hoc=ad_hoc)


SENDER_UNVERIFIED = Finding("ses-sender", P1, "sender not verified")


def test_a_webhook_answering_broken_http_fails_alone(
    engine: Engine, broken_webhook: tuple[str, str]
) -> None:
    """A webhook answering a garbage status line (BadStatusLine) or a short body (IncompleteRead)
    crashed the check: the SNS page after it never went, nothing was recorded, and the page was
    sent again on every run. It is the webhook's failure now, reported like a 500."""
    url, error = broken_webhook
    sns = FakeSns()
    routing = "P1=webhook,sns,log"
    deliveries = check_run(
        engine, sns, (SENDER_UNVERIFIED,), alert_webhook_url=url, alert_routing=routing
    )
    assert [(d.route, d.ok) for d in deliveries] == [
        ("webhook", False),
        ("sns", True),
        ("log", True),
    ]
    assert unreached(deliveries)[0].startswith(f"webhook: {error}")
    assert [p["Message"].split(":")[0] for p in sns.published] == ["[P1] health"]
    check_run(engine, sns, (SENDER_UNVERIFIED,), alert_webhook_url=url, alert_routing=routing)
    assert len(sns.published) == 1, "the page reached someone: in its cooldown"


def test_a_resolution_reaches_the_pager_that_heard_the_page(engine: Engine) -> None:
    """Paged at P1, dropped to P3 inside the cooldown (no notice), then cleared: the [RESOLVED]
    went to P3's route alone (the log), and the pager never heard the incident was over."""
    sns = FakeSns()
    backlog = "backlog"
    check_run(engine, sns, (Finding(backlog, P1, "backlog 60,000"),))
    quiet = check_run(engine, sns, (Finding(backlog, P3, "backlog 2,000"),))
    assert quiet == [], "de-escalated inside the cooldown: no notice"
    resolved = check_run(engine, sns, ())
    assert [(d.route, d.ok) for d in resolved] == [("log", True), ("sns", True)]
    assert [p["Message"] for p in sns.published] == [
        sns.published[0]["Message"],
        "[RESOLVED] health:backlog: backlog 2,000",
    ]


def test_a_resolution_says_so_in_the_sns_subject(engine: Engine) -> None:
    """The pager's subject of a resolution read `[P1] notifyops health:ses-sender`, like the
    page itself: whoever reads subjects only saw the incident start again."""
    sns = FakeSns()
    check_run(engine, sns, (SENDER_UNVERIFIED,))
    check_run(engine, sns, ())
    assert [p["Subject"] for p in sns.published] == [
        "[P1] notifyops health:ses-sender",
        "[RESOLVED] notifyops health:ses-sender",
    ]


def test_a_failed_route_beside_one_that_paged_is_not_nobody_alerted(
    engine: Engine, webhook: tuple[str, Any]
) -> None:
    """SNS paged, the webhook answered 500: stderr and the run's state said NOBODY WAS ALERTED.
    They say which route failed and which delivered; NOBODY WAS ALERTED stays for none."""
    from flows.states import check_message
    from notify.alerts import delivered
    from notify.reports import Report

    url, handler = webhook
    handler.status = 500
    sns = FakeSns()
    routing = "P1=sns,webhook,log"
    deliveries = check_run(
        engine, sns, (SENDER_UNVERIFIED,), alert_webhook_url=url, alert_routing=routing
    )
    report = Report(
        as_of=NOW, window_start=NOW, window_hours=1, severity=P1, findings=(SENDER_UNVERIFIED,)
    ).with_alerts_unreached(unreached(deliveries), delivered(deliveries))
    message = check_message("health", report, list(report.alerts_unreached))
    assert message.startswith(
        "ALERT ROUTES FAILED (webhook: HTTPError: HTTP Error 500: Internal Server Error); "
        "the others delivered (sns): set NOTIFY_ALERT_SNS_TOPIC_ARN"
    )
    assert "NOBODY WAS ALERTED" not in message
    assert report.to_json()["alerts_delivered"] == ["sns"]
    sns.failing = True
    failed = check_run(engine, sns, (), alert_cooldown_minutes=0, alert_webhook_url=url)
    nobody = Report(as_of=NOW, window_start=NOW, window_hours=1, severity=P4).with_alerts_unreached(
        unreached(failed), delivered(failed)
    )
    assert check_message("health", nobody, list(nobody.alerts_unreached)).startswith(
        "NOBODY WAS ALERTED (sns: ConnectionError: topic unreachable)"
    )


def test_a_failed_repeat_does_not_cancel_the_resolution(engine: Engine) -> None:
    """Paged at P1, a repeat failed (the topic out of reach), then the condition cleared:
    nothing was sent, as if the incident had reached nobody."""
    sns = FakeSns()
    unverified = (SENDER_UNVERIFIED,)
    check_run(engine, sns, unverified, alert_cooldown_minutes=0)
    sns.failing = True
    failed = check_run(engine, sns, unverified, alert_cooldown_minutes=0)
    assert unreached(failed) == ("sns: ConnectionError: topic unreachable",)
    sns.failing = False
    check_run(engine, sns, (), alert_cooldown_minutes=0)
    assert [p["Message"].split(":")[0] for p in sns.published] == [
        "[P1] health",
        "[RESOLVED] health",
    ]


def test_overlapping_runs_send_a_new_alert_once(engine: Engine, webhook: tuple[str, Any]) -> None:
    """Two runs of one check overlapping (the first held up by a slow webhook) both sent the new
    alert, 'seen 1x' and 'seen 2x': until the first recorded its notice the second took it for
    one that reached nobody. The first marks it as being sent; the second leaves it alone."""
    url, handler = webhook
    handler.delay_s = 1.0
    sns = FakeSns()
    backlog = (Finding("backlog", P2, "backlog 6,000 > 5,000"),)
    first = threading.Thread(
        target=check_run, args=(engine, sns, backlog), kwargs={"alert_webhook_url": url}
    )
    first.start()
    while not handler.started:
        time.sleep(0.01)
    overlapping = check_run(engine, sns, backlog, alert_webhook_url=url)
    first.join()
    assert overlapping == [], "being sent by the first run"
    assert [r["body"]["text"].split(" (")[0] for r in handler.received] == [
        "[P2] health:backlog: backlog 6,000 > 5,000"
    ]
