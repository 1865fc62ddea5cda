"""The runbook's escalation table, row by row, edges included (see notify/severity.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from notify.settings import load_settings
from notify.severity import RUNBOOK, Facts, Severity, Thresholds, assess, worst

P1, P2, P3, P4 = Severity.P1, Severity.P2, Severity.P3, Severity.P4


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # nothing measured / all quiet
        (Facts(), P4),
        (Facts(email_failure_rate=0.0, sms_failure_rate=0.0, backlog=0, avg_latency_s=0.0), P4),
        # failure rate, per channel: (0, 10%) P3, [10%, 50%] P2, > 50% P1
        (Facts(email_failure_rate=0.0001), P3),
        (Facts(email_failure_rate=0.0999), P3),
        (Facts(email_failure_rate=0.10), P2),
        (Facts(sms_failure_rate=0.10), P2),
        (Facts(email_failure_rate=0.30), P2),
        (Facts(email_failure_rate=0.50), P2),
        (Facts(email_failure_rate=0.5001), P1),
        (Facts(sms_failure_rate=1.0), P1),
        (Facts(email_failure_rate=0.05, sms_failure_rate=0.6), P1),
        # SMS cost per hour: <= $20 P4, ($20, $100] P3, > $100 P1
        (Facts(sms_cost_last_hour_usd=Decimal("20.00")), P4),
        (Facts(sms_cost_last_hour_usd=Decimal("20.01")), P3),
        (Facts(sms_cost_last_hour_usd=Decimal("100.00")), P3),
        (Facts(sms_cost_last_hour_usd=Decimal("100.01")), P1),
        # today's SMS spend at the daily cap ($100 by default): SMS stop for the day, P2
        (Facts(sms_cost_today_usd=Decimal("0")), P4),
        (Facts(sms_cost_today_usd=Decimal("99.99")), P4),
        (Facts(sms_cost_today_usd=Decimal("100.00")), P2),
        (Facts(sms_cost_today_usd=Decimal("100"), sms_cost_last_hour_usd=Decimal("30")), P2),
        (Facts(sms_cost_today_usd=Decimal("150"), sms_cost_last_hour_usd=Decimal("101")), P1),
        # workers down: > 10 min P1; 10 min or less escalates nothing by itself
        (Facts(workers_down_minutes=0), P4),
        (Facts(workers_down_minutes=10), P4),
        (Facts(workers_down_minutes=10.5), P1),
        # deployments on a pool no worker ever polled (no heartbeat, no down time): P1 at once
        (Facts(unpolled_deployments=1), P1),
        # scheduled runs nothing started (serve stopped: no pool, no heartbeat): > 10 min P1
        (Facts(late_runs=3, late_runs_minutes=10), P4),
        (Facts(late_runs=3, late_runs_minutes=10.5), P1),
        # backlog: <= 1,000 P4, (1,000, 5,000] P3, > 5,000 P2
        (Facts(backlog=999), P4),
        (Facts(backlog=1_000), P4),
        (Facts(backlog=1_001), P3),
        (Facts(backlog=5_000), P3),
        (Facts(backlog=5_001), P2),
        # average latency: <= 30 s P4, (30, 60] P3, > 60 s P2
        (Facts(avg_latency_s=30.0), P4),
        (Facts(avg_latency_s=30.1), P3),
        (Facts(avg_latency_s=60.0), P3),
        (Facts(avg_latency_s=60.1), P2),
        # data loss, and what amounts to "all failing"
        (Facts(data_loss=True), P1),
        (Facts(database_unreachable=True), P1),
        (Facts(email_sending_disabled=True), P1),
        (Facts(sender_unverified=True), P1),
        (Facts(email_paused="email paused by the reputation guardrail"), P1),  # runbook Receipts
        # SES erroring: answering nothing P2, leaving part of the account's state unknown P3
        (Facts(ses_unanswered=("account state", "sender verification"), ses_silent=True), P2),
        (Facts(ses_unanswered=("sender verification",)), P3),
        (Facts(ses_unanswered=("sending state",)), P3),  # quota answered, the pause not
        # operator work, no outage
        (Facts(unknown_deliveries=1), P3),
        (Facts(loops=2), P3),
        # the worst wins
        (Facts(backlog=2_000, avg_latency_s=61, email_failure_rate=0.01), P2),
        (Facts(backlog=6_000, sms_cost_last_hour_usd=Decimal("150")), P1),
    ],
)
def test_escalation_table(facts: Facts, expected: Severity) -> None:
    assert assess(facts).severity is expected


def test_findings_are_ordered_most_severe_first_with_stable_codes() -> None:
    result = assess(Facts(backlog=2_000, email_failure_rate=0.6, avg_latency_s=45))
    assert [(f.code, f.severity) for f in result.findings] == [
        ("email-failure-rate", P1),
        ("backlog", P3),
        ("latency", P3),
    ]
    assert "60.0%" in result.findings[0].message


def test_thresholds_from_settings_take_the_hourly_alarm_and_the_daily_cap() -> None:
    settings = load_settings(sms_hourly_alarm_usd="5", sms_daily_cap_usd="0.01")
    thresholds = Thresholds.from_settings(settings)
    assert thresholds.sms_cost_alarm_usd == Decimal("5")
    assert thresholds.sms_daily_cap_usd == Decimal("0.01")
    [cap] = assess(Facts(sms_cost_today_usd=Decimal("0.0129")), thresholds).findings
    assert (cap.code, cap.severity) == ("sms-daily-cap", P2)
    assert cap.message.startswith("daily SMS cap reached: $0.0129 of $0.01 spent today")
    assert assess(Facts(sms_cost_last_hour_usd=Decimal("6")), thresholds).severity is P3
    assert assess(Facts(sms_cost_last_hour_usd=Decimal("6")), RUNBOOK).severity is P4


def test_money_in_findings_keeps_its_sub_cent_digits() -> None:
    thresholds = Thresholds.from_settings(load_settings(sms_hourly_alarm_usd="0.001"))
    [finding] = assess(Facts(sms_cost_last_hour_usd=Decimal("0.00645")), thresholds).findings
    assert finding.message == "SMS cost $0.00645 in the last hour > alarm $0.001/h"
    [page] = assess(Facts(sms_cost_last_hour_usd=Decimal("1234.5"))).findings
    assert page.message == "SMS cost $1,234.50 in the last hour > $100.00/h"


def test_worst_and_rank() -> None:
    assert worst(P3, P1, P2) is P1 and worst() is P4
    assert [s.rank for s in Severity] == [1, 2, 3, 4]


def test_late_runs_page_once_and_not_beside_workers_down() -> None:
    alone = assess(Facts(late_runs=12, late_runs_minutes=55))
    assert [f.code for f in alone.findings] == ["runs-late"]
    assert "12 scheduled run(s) late, the oldest for 55 min" in alone.findings[0].message
    assert "`notifyops serve`" in alone.findings[0].message
    both = assess(Facts(late_runs=12, late_runs_minutes=55, workers_down_minutes=30))
    assert [f.code for f in both.findings] == ["workers-down"], "one outage, one page"
    unpolled = assess(Facts(late_runs=12, late_runs_minutes=55, unpolled_deployments=12))
    assert [f.code for f in unpolled.findings] == ["workers-none"], "one outage, one page"


def test_the_data_loss_page_says_what_to_do() -> None:
    """The P1 page named the counts to look at and nothing to do about them."""
    (finding,) = assess(Facts(data_loss=True)).findings
    assert "`notifyops deliver` rescues the held rows" in finding.message
    assert "runbook section 3" in finding.message


def test_the_email_pause_page_says_since_when_why_and_the_fix() -> None:
    since = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    bare = Facts(email_paused="email paused by the reputation guardrail", email_paused_since=since)
    (finding,) = assess(bare).findings
    assert (finding.code, finding.severity) == ("email-paused", P1)
    assert finding.message.startswith(
        "email paused by the reputation guardrail (since 2026-12-01 09:30 UTC); no email goes out"
    )
    assert finding.message.endswith("then `notifyops receipts resume-email`")
