"""Ad hoc checks (another window than the schedule's, or a look back) leave the live alerts and
the CloudWatch alarms' metrics to the scheduled runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from notify.check_names import Check
from notify.check_params import SCHEDULED_WINDOW_HOURS, ad_hoc_run, check_params
from notify.db import Alert, make_engine, transaction
from notify.severity import Finding, Severity
from tests.factories import Rows
from tests.test_alerts import FakeSns, check_run, webhook  # noqa: F401  (a fixture)

EMAIL_RATE = "failures:email-failure-rate"


def failing_hour(url: str, now: datetime) -> None:
    """The last hour: 4 of 5 emails failed (80%, a P1). The day before it: 100 sent, so over
    24 hours the rate is 3.8% (a P3)."""
    rows = Rows()
    tech = rows.recipient("technician:5", phone=None)
    rows.many(100, tech, created_at=now - timedelta(hours=6), channel="email")
    rows.many(1, tech, created_at=now - timedelta(minutes=20), channel="email")
    rows.many(
        4,
        tech,
        created_at=now - timedelta(minutes=20),
        channel="email",
        status="failed_permanent",
        error_code="MessageRejected",
        error_class="permanent",
        error_message="Email address is not verified.",
    )
    rows.insert(make_engine(url))


def stored_alerts(url: str) -> list[tuple[str, str, str, int]]:
    with transaction(make_engine(url)) as session:
        query = select(Alert.key, Alert.state, Alert.severity, Alert.count).order_by(Alert.key)
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def three_hours_ago() -> list[str]:
    past = datetime.now(UTC) - timedelta(hours=3)
    return ["--window", "1h", "--as-of", past.isoformat()]


@pytest.mark.parametrize("how", [[], ["--direct"]], ids=["flow", "direct"])
@pytest.mark.parametrize("ad_hoc", ["24h", "as-of"])
def test_an_ad_hoc_alert_run_neither_resolves_nor_repages_the_scheduled_runs_alert(
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    webhook: tuple[str, Any],  # noqa: F811
    how: list[str],
    ad_hoc: str,
) -> None:
    """The scheduled failure summary (1 h) paged a P1; an on-call engineer ran `audit failures
    --alert` (24 h: the rate is 3.8% there, a P3) or looked back at an hour before it: the P1
    was turned into a P3, or resolved, and the next scheduled run paged it again. The live alert
    is the scheduled window's: an ad hoc run leaves it open, at P1, in its cooldown."""
    from notifyops.cli import main
    from tests.runtime import reload_runtime

    url, handler = webhook
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", url)
    monkeypatch.setenv("NOTIFY_ALERT_ROUTING", "P1=webhook,log")
    reload_runtime()
    failing_hour(flow_env, datetime.now(UTC))
    live = ["audit", "failures", "--window", "1h", "--alert", "--json", *how]
    assert main(live) == 1
    capsys.readouterr()
    [page] = [r["body"]["text"] for r in handler.received]
    assert page.startswith(f"[P1] {EMAIL_RATE}: email failure rate 80.0% > 50% (seen 1x")

    other = [] if ad_hoc == "24h" else three_hours_ago()
    assert main(["audit", "failures", "--alert", "--json", *other, *how]) == 0
    printed = capsys.readouterr()
    assert stored_alerts(flow_env) == [(EMAIL_RATE, "open", "P1", 1)], "left as it was"
    assert main(live) == 1
    assert [r["body"]["text"] for r in handler.received] == [page], "still in its cooldown"
    assert stored_alerts(flow_env) == [(EMAIL_RATE, "open", "P1", 2)]
    said = json.loads(printed.out)["ad_hoc"]
    assert said.startswith(
        "ad hoc run (window 24h, not the schedule's 1h" if not other else "ad hoc run (as of "
    )
    assert f"note: failures: {said}: alerts go out as one-off notices" in printed.err


def test_an_ad_hoc_run_routes_its_finding_once_saying_so_and_stores_nothing(
    engine: Engine,
) -> None:
    """Its notice goes out (the pager's subject and text say it is ad hoc and name the window),
    every run of it, without opening the alert the scheduled runs own."""
    sns = FakeSns()
    unverified = (Finding("ses-sender", Severity.P1, "sender not verified"),)
    note = ad_hoc_run(Check.health, window_hours=24, as_of=None)
    assert note == "ad hoc run (window 24h, not the schedule's 1h)"
    for _ in range(2):
        assert [(d.route, d.ok) for d in check_run(engine, sns, unverified, ad_hoc=note)] == [
            ("sns", True),
            ("log", True),
        ]
    with transaction(engine) as session:
        assert session.scalars(select(Alert.key)).all() == []
    assert [(p["Subject"], p["Message"]) for p in sns.published] == 2 * [
        (
            "[P1 ad hoc] notifyops health:ses-sender",
            "[P1] health:ses-sender: sender not verified (ad hoc run (window 24h, not the "
            "schedule's 1h): a one-off notice; the live alert is left as it is)",
        )
    ]


def test_a_run_of_the_present_over_the_scheduled_window_is_the_live_one() -> None:
    assert SCHEDULED_WINDOW_HOURS[Check.failures] == 1.0
    assert ad_hoc_run(Check.failures, window_hours=1, as_of=None) is None
    assert ad_hoc_run(Check.sms_cost, window_hours=24, as_of=None) is None
    past = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    assert ad_hoc_run(Check.failures, window_hours=1, as_of=past) == (
        "ad hoc run (as of 2026-11-20 12:30 UTC)"
    )
    assert ad_hoc_run(Check.loops, window_hours=1.5, as_of=past) == (
        "ad hoc run (window 1.5h, not the schedule's 24h, as of 2026-11-20 12:30 UTC)"
    )


class FakeCloudWatch:
    """A CloudWatch client that keeps what it is given (moto does not tell a metric without
    dimensions from the same metric with some, as CloudWatch does)."""

    def __init__(self) -> None:
        self.data: list[dict[str, Any]] = []

    def put_metric_data(self, *, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
        self.data.extend(MetricData)

    def alarm_reading(self, metric: str) -> float:
        """What a runbook alarm reads of a rate: the Average of the metric without dimensions."""
        values = [
            d["Value"] for d in self.data if d["MetricName"] == metric and not d.get("Dimensions")
        ]
        return sum(values) / len(values)

    def ad_hoc(self, metric: str) -> list[float]:
        run = [{"Name": "Run", "Value": "ad-hoc"}]
        return [
            d["Value"]
            for d in self.data
            if d["MetricName"] == metric and d.get("Dimensions") == run
        ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("how", [[], ["--direct"]], ids=["flow", "direct"])
def test_an_ad_hoc_publish_does_not_dilute_the_failure_rate_the_alarm_reads(
    flow_env: str, capsys: pytest.CaptureFixture[str], how: list[str]
) -> None:
    """The scheduled run published an email failure rate of 80% for the hour; three ad hoc
    `audit failures --publish` over 24 h published 3.8% each into the same period, and the
    HighEmailFailureRate alarm (the period's Average) read 23% where the hour's rate was 80%
    (a 12% hour would have read under the 10% threshold). An ad hoc run's points go under
    Run=ad-hoc, which the alarms do not read."""
    from notifyops.cli import main
    from tests.runtime import reload_runtime

    cloudwatch = FakeCloudWatch()
    reload_runtime(clients={"cloudwatch": cloudwatch})
    failing_hour(flow_env, datetime.now(UTC))
    assert main(["audit", "failures", "--window", "1h", "--publish", "--json", *how]) == 1
    assert "Run=ad-hoc" not in capsys.readouterr().err
    for _ in range(3):
        assert main(["audit", "failures", "--publish", "--json", *how]) == 0
    printed = capsys.readouterr()
    assert cloudwatch.alarm_reading("EmailFailureRate") == pytest.approx(80.0)
    assert cloudwatch.ad_hoc("EmailFailureRate") == 3 * [pytest.approx(3.81)]
    assert (
        printed.err.count("metrics go under the dimension Run=ad-hoc, which the alarms do not read")
        == 3
    )


@pytest.mark.parametrize("check", list(Check))
def test_a_check_flow_run_at_its_defaults_is_a_run_like_its_schedule(check: Check) -> None:
    """A UI run of a check at the flow's defaults (the health flow looked at 24 h, its schedule
    at 1 h) was ad hoc: its alerts one-off notices, its metrics apart from the alarms'."""
    defaults = check_params(check)()
    assert defaults.window_hours == SCHEDULED_WINDOW_HOURS[check]
    assert ad_hoc_run(check, window_hours=defaults.window_hours, as_of=defaults.as_of) is None
