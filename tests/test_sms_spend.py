"""The daily SMS cap counts what an SMS really cost once its receipt says so; `audit sms-cost`
shows spend against small thresholds as they are, and a reached cap as a P2 finding."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest
from sqlalchemy import Engine, update

from notify.audits.sns_account import NOT_RETURNED
from notify.conditions import sms_spend_since, start_conditions
from notify.db import DELIVERY_LOGS, make_engine, transaction
from notifyops.cli import main
from tests.factories import AS_OF, Rows
from tests.runtime import reload_runtime

pytest_plugins = ["tests.aws_fixtures"]


def test_the_cap_uses_the_receipt_price_where_known_and_the_estimate_otherwise(
    engine: Engine,
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    estimated = rows.delivery(tech, created_at=AS_OF - timedelta(hours=1), cost=Decimal("0.01"))
    priced = rows.delivery(tech, created_at=AS_OF - timedelta(hours=1), cost=Decimal("0.01"))
    rows.insert(engine)
    with engine.begin() as connection:
        connection.execute(
            update(DELIVERY_LOGS)
            .where(DELIVERY_LOGS.c.id == priced)
            .values(actual_cost=Decimal("0.0387"))
        )
    with transaction(engine) as session:
        spent = sms_spend_since(session=session, since=AS_OF - timedelta(days=1))
    assert spent == Decimal("0.0487"), (estimated, priced)


def test_a_purged_sms_is_not_spend(engine: Engine) -> None:
    """A purge marks stale queued rows `purged`, never sent: counted as spend, a purge of a
    morning's backlog used up the day's cap and every later SMS was skipped."""
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(tech, created_at=AS_OF - timedelta(hours=1), cost=Decimal("0.01"))
    rows.many(3, tech, created_at=AS_OF - timedelta(hours=2), status="purged", cost=Decimal("40"))
    rows.insert(engine)
    with transaction(engine) as session:
        spent = sms_spend_since(session=session, since=AS_OF - timedelta(days=1))
    assert spent == Decimal("0.01")


def two_sms_just_sent(url: str) -> None:
    """Two SMS at $0.00645 ten minutes before AS_OF: $0.0129 in the last hour and today."""
    rows = Rows()
    tech = rows.recipient("technician:101", phone="+12065550101")
    rows.many(2, tech, created_at=AS_OF - timedelta(minutes=10))
    rows.insert(make_engine(url))


def test_a_sub_cent_hourly_alarm_is_shown_as_it_is_not_as_zero(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SMS_HOURLY_ALARM_USD", "0.001")
    reload_runtime()
    two_sms_just_sent(cli_env)
    assert main(["audit", "sms-cost", "--as-of", AS_OF.isoformat(), "--direct"]) == 1
    printed = capsys.readouterr().out
    assert "P3 sms-cost: SMS cost $0.0129 in the last hour > alarm $0.001/h" in printed
    assert "$0.00/h" not in printed


def test_a_reached_daily_cap_is_a_p2_finding_in_the_table_the_json_and_the_exit_code(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SMS_DAILY_CAP_USD", "0.01")
    reload_runtime()
    two_sms_just_sent(cli_env)
    command = ["audit", "sms-cost", "--as-of", AS_OF.isoformat(), "--direct"]
    assert main(command) == 1
    printed = capsys.readouterr().out
    assert "sms-cost: severity P2, breached: daily SMS cap reached: $0.0129 of $0.01" in printed
    assert "P2 sms-daily-cap: daily SMS cap reached: $0.0129 of $0.01 spent today" in printed
    assert main([*command, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["daily_cap_reached"] is True and report["severity"] == "P2"
    assert [(f["code"], f["severity"]) for f in report["findings"]] == [("sms-daily-cap", "P2")]


@pytest.mark.parametrize(
    ("cap", "reached"),
    [
        ("0.02", False),  # $0.0129 spent: one more $0.00645 SMS still fits
        ("0.013", True),  # the next SMS would pass the cap: the policy skips every SMS now
    ],
)
def test_the_cap_is_reached_when_the_next_sms_would_not_fit(
    cli_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cap: str,
    reached: bool,
) -> None:
    """The send policy refuses an SMS whose cost would take the day past the cap, so spend
    stops just below it: the audit called such a day P4, no findings, while every SMS was
    skipped."""
    monkeypatch.setenv("NOTIFY_SMS_DAILY_CAP_USD", cap)
    reload_runtime()
    two_sms_just_sent(cli_env)
    command = ["audit", "sms-cost", "--as-of", AS_OF.isoformat(), "--direct", "--json"]
    assert main(command) == (1 if reached else 0)
    report = json.loads(capsys.readouterr().out)
    findings = [(f["code"], f["severity"]) for f in report["findings"]]
    assert report["daily_cap_reached"] is reached
    assert findings == ([("sms-daily-cap", "P2")] if reached else [])


def test_every_money_value_of_the_json_has_at_least_two_decimals(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's rule (`0.0774`, `1.50`): the thresholds came out as set, "20" and "100"."""
    monkeypatch.delenv("NOTIFY_SMS_HOURLY_ALARM_USD", raising=False)
    monkeypatch.setenv("NOTIFY_SMS_DAILY_CAP_USD", "100")
    reload_runtime()
    two_sms_just_sent(cli_env)
    command = ["audit", "sms-cost", "--as-of", AS_OF.isoformat(), "--direct", "--json"]
    assert main(command) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["hourly_alarm_usd"], report["daily_cap_usd"]) == ("20.00", "100.00")
    assert report["today_cost_usd"] == "0.0129"
    assert (report["month_cost_usd"], report["sns_spend_limit_usd"]) == ("0.0129", None)
    money = [
        (key, value)
        for entry in [report, *report["hourly"], *report["top_recipients"]]
        for key, value in entry.items()
        if key.endswith("_usd") and value is not None  # None: not asked (the SNS limit here)
    ]
    assert len(money) > 5
    assert all(re.fullmatch(r"\d+\.\d{2,6}", value) for _, value in money), money


def through_sns(monkeypatch: pytest.MonkeyPatch, url: str) -> list[str]:
    """The AWS senders (the audit asks SNS), two SMS just sent; the audit's JSON command."""
    monkeypatch.setenv("NOTIFY_SENDER", "aws")
    reload_runtime()
    two_sms_just_sent(url)
    return ["audit", "sms-cost", "--as-of", AS_OF.isoformat(), "--direct", "--json"]


def sns_spend_limit(moto_server: str, limit: str) -> None:
    """The account's MonthlySpendLimit as the SNS console sets it (moto stores it)."""
    sns = boto3.session.Session().client(
        "sns",
        region_name="us-east-1",
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sns.set_sms_attributes(attributes={"MonthlySpendLimit": limit})


@pytest.mark.parametrize(
    ("limit", "finding"),
    [
        ("0.01", ("sms-spend-limit", "P1")),  # $0.0129 this month: SNS has stopped sending
        ("0.015", ("sms-spend-limit", "P2")),  # 86% of it
        ("1", None),
    ],
)
def test_the_months_spend_against_the_sns_monthly_spend_limit(
    cli_env: str,
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    limit: str,
    finding: tuple[str, str] | None,
) -> None:
    sns_spend_limit(aws_env, limit)
    command = through_sns(monkeypatch, cli_env)
    reached = finding == ("sms-spend-limit", "P1")
    assert main(command) == (1 if reached else 0), "exit 1 once reached (breached), not at 80%"
    report = json.loads(capsys.readouterr().out)
    assert (report["month_cost_usd"], report["sns_error"]) == ("0.0129", None)
    assert Decimal(report["sns_spend_limit_usd"]) == Decimal(limit)
    assert [(f["code"], f["severity"]) for f in report["findings"]] == (
        [finding] if finding else []
    )
    if reached:
        assert main(command[:-1]) == 1
        printed = capsys.readouterr().out
        assert "P1 sms-spend-limit: SNS monthly SMS spend limit $0.01 reached" in printed
        assert "raise it in SNS" in printed


def test_the_sms_cost_audit_reports_sns_out_of_reach_and_still_measures_spend(
    cli_env: str,
    aws_out_of_reach: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The limit unknown for an error was a clean P4 ("no findings"), where a reached limit is P1:
    SMS spent this month and no answer is now P3, naming the error (the spend still measured)."""
    assert main(through_sns(monkeypatch, cli_env)) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["month_cost_usd"] == "0.0129" and report["sns_spend_limit_usd"] is None
    assert report["sns_error"].startswith("sns.GetSMSAttributes: EndpointConnectionError")
    [finding] = report["findings"]
    assert (finding["code"], finding["severity"]) == ("sms-spend-limit", "P3")
    assert finding["message"].startswith(
        "SNS monthly SMS spend limit unknown (sns.GetSMSAttributes: EndpointConnectionError"
    )


def test_the_sms_cost_audit_says_why_it_has_no_spend_limit_when_sns_gives_none(
    cli_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account where MonthlySpendLimit was never set (the stand-in returns none): the report
    said `sns_spend_limit_usd: null` and `sns_error: null`, no reason, where README says
    `sns_error` says why."""
    assert main(through_sns(monkeypatch, cli_env)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sns_spend_limit_usd"] is None and report["month_cost_usd"] == "0.0129"
    assert report["sns_error"] == NOT_RETURNED
    assert report["findings"] == [], "answered, without a limit set: nothing to compare"


def _cap_report(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    command = ["audit", "sms-cost", "--as-of", AS_OF.isoformat(), "--direct", "--json"]
    main(command)
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


@pytest.mark.parametrize(
    ("now", "today"),
    [
        ("2026-03-08T00:00:00+00:00", "0.30"),  # the SMS of 00:00 sharp is today's
        ("2026-03-08T02:30:00-05:00", "0.30"),  # 07:30 UTC
        ("2026-03-08T04:00:00+05:30", "6.30"),  # 22:30 UTC on March 7: from 00:00 UTC March 7
        ("2026-03-07T23:59:59.999999+00:00", "6.30"),
    ],
)
def test_the_cap_counts_the_utc_day_of_now_whatever_zone_now_is_given_in(
    engine: Engine, now: str, today: str
) -> None:
    """Before, the day started at 00:00 in `now`'s own offset: at 02:30-05:00 it began at 05:00
    UTC and left out the SMS of 00:00-05:00 UTC (at 04:00+05:30, 18:30 UTC the day before)."""
    midnight = datetime(2026, 3, 8, tzinfo=UTC)
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(tech, created_at=midnight - timedelta(hours=12), cost=Decimal("1"))
    rows.delivery(tech, created_at=midnight - timedelta(hours=2), cost=Decimal("5"))
    rows.delivery(tech, created_at=midnight, cost=Decimal("0.10"))
    rows.delivery(tech, created_at=midnight + timedelta(hours=3), cost=Decimal("0.20"))
    rows.insert(engine)
    with transaction(engine) as session:
        spent = start_conditions(session=session, now=datetime.fromisoformat(now))
    assert spent.sms_spent_today == Decimal(today)


def test_sms_queued_today_count_against_the_cap_as_the_send_policy_counts_them(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The policy skips every new SMS once today's queued ones fill the cap; the audit, counting
    only SMS sent, said $0.10 today, P4."""
    monkeypatch.setenv("NOTIFY_SMS_DAILY_CAP_USD", "1")
    reload_runtime()
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(tech, created_at=AS_OF - timedelta(hours=1), cost=Decimal("0.10"))
    queued = {"status": "pending", "next_attempt_at": AS_OF + timedelta(hours=3)}
    rows.many(2, tech, created_at=AS_OF - timedelta(hours=2), cost=Decimal("0.45"), **queued)
    rows.insert(make_engine(cli_env))
    with transaction(make_engine(cli_env)) as session:
        midnight = AS_OF.replace(hour=0, minute=0)
        assert sms_spend_since(session=session, since=midnight) == Decimal("1.00")
    report = _cap_report(capsys)
    assert (report["today_cost_usd"], report["daily_cap_reached"]) == ("1.00", True)
    assert report["severity"] == "P2" and report["daily_cap_used"] == 1.0


def test_sms_created_yesterday_and_sent_after_midnight_are_not_todays_cap(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Yesterday's SMS held by quiet hours and sent at 00:30 are not in the policy's cap: the
    audit called the cap reached ("SMS are skipped", P2) while SMS went out."""
    monkeypatch.setenv("NOTIFY_SMS_DAILY_CAP_USD", "1")
    reload_runtime()
    midnight = AS_OF.replace(hour=0, minute=0)
    rows = Rows()
    tech = rows.recipient("technician:1")
    sent = {"sent_at": midnight + timedelta(minutes=30), "cost": Decimal("5")}
    rows.delivery(tech, created_at=midnight - timedelta(minutes=30), **sent)
    rows.insert(make_engine(cli_env))
    report = _cap_report(capsys)
    assert (report["today_cost_usd"], report["daily_cap_reached"]) == ("0.00", False)
    assert report["severity"] == "P4" and report["total_cost_usd"] == "5.00"
