"""Audits on crafted data where the right answer is known; every DB test on SQLite and Postgres."""

from __future__ import annotations

import json
import random
import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from notify.audits import (
    check_ses_account,
    failure_summary,
    health,
    kind_for,
    loop_detection,
    mute_loops,
    normalise_error_message,
    resolve_window,
    sms_cost_audit,
)
from notify.audits.health import WorkerState
from notify.audits.loops import CANDIDATES_PER_QUERY
from notify.audits.rollups import FULL_SCAN, RollupPolicy, fold
from notify.bootstrap import Runtime
from notify.check_names import Check
from notify.checks import run_audit
from notify.db import Suppression, make_engine, transaction
from notify.delivery import Deliverer
from notify.errors import (
    ADDRESS_NOT_VERIFIED,
    CONNECTION_FAILED,
    FIX_SEPARATOR,
    INVALID_PHONE,
    MAYBE_SENT,
    RATE_EXCEEDED,
    SENDER_NOT_VERIFIED,
    SMTP_AUTH_FAILED,
    InputError,
    classify_exception,
)
from notify.pacing import Unpaced
from notify.schema import DatabaseNotReady
from notify.senders import from_settings as senders_from_settings
from notify.settings import Priority, SenderKind, Settings, load_settings
from notify.severity import Severity
from tests.aws_fixtures import REJECTED_UNVERIFIED, VERIFIED_SENDER
from tests.factories import AS_OF, Rows
from tests.test_dispatch import NOON, add_recipients, send
from tests.test_dispatch import tech as technician

DAY = timedelta(hours=24)
H = timedelta(hours=1)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with transaction(engine) as session:
        yield session


def run(audit: Any, session: Session, settings: Settings, **kwargs: Any) -> Any:
    """The audit from the rollups, with every row folded first (the answers below are the
    full scan's too: tests/test_rollups.py compares the two on random data)."""
    fold(session, now=AS_OF, grace=timedelta(0))
    return audit(
        session=session,
        as_of=kwargs.pop("as_of", AS_OF),
        window=kwargs.pop("window", DAY),
        settings=settings,
        rollups=RollupPolicy(fold=False),
        **kwargs,
    )


# --- window ---------------------------------------------------------------------------------


def test_window_is_utc_and_rejects_naive_or_empty() -> None:
    chicago = AS_OF.astimezone(ZoneInfo("America/Chicago"))
    w = resolve_window(chicago, DAY)
    assert w.end == AS_OF and w.end.tzinfo is UTC and w.start == AS_OF - DAY and w.hours == 24
    with pytest.raises(InputError, match="time zone"):
        resolve_window(AS_OF.replace(tzinfo=None), DAY)
    with pytest.raises(InputError, match="positive"):
        resolve_window(AS_OF, timedelta(0))


# --- SMS cost -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "price", "expected"),
    [
        (1000, "0.00645", "6.45"),
        (3, "0.00645", "0.01935"),
        (1, "0.00645", "0.00645"),
        (2, "0.0025", "0.005"),
        (7, "0.0395", "0.2765"),
    ],
)
def test_sms_total_cost_is_exact_at_the_precision_it_has(
    engine: Engine, session: Session, settings: Settings, count: int, price: str, expected: str
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.many(count, tech, created_at=AS_OF - 2 * H, cost=Decimal(price))
    rows.insert(engine)
    report = run(sms_cost_audit, session, settings)
    assert report.sms_count == count
    assert report.total_cost_usd == Decimal(expected)
    assert report.to_json()["total_cost_usd"] == expected


def test_sms_cost_counts_only_sent_and_delivered_sms(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    for status in ("sent", "delivered"):
        rows.delivery(tech, created_at=AS_OF - H / 2, status=status, cost=Decimal("1"))
    for status in ("pending", "failed", "failed_permanent", "skipped", "pending_retry", "unknown"):
        rows.delivery(tech, created_at=AS_OF - H / 2, status=status, cost=Decimal("1"))
    rows.delivery(tech, created_at=AS_OF - H / 2, channel="email", status="sent")
    rows.insert(engine)
    report = run(sms_cost_audit, session, settings)
    assert (report.sms_count, report.total_cost_usd) == (2, Decimal("2.00"))
    assert report.last_hour_cost_usd == Decimal("2.00")


def test_sms_window_edges_start_excluded_end_included(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(tech, created_at=AS_OF - DAY - H, sent_at=AS_OF - DAY, cost=Decimal("1"))
    rows.delivery(tech, created_at=AS_OF - H, sent_at=AS_OF, cost=Decimal("2"))
    rows.delivery(tech, created_at=AS_OF, sent_at=AS_OF + timedelta(microseconds=1))
    rows.insert(engine)
    report = run(sms_cost_audit, session, settings)
    assert (report.sms_count, report.total_cost_usd) == (1, Decimal("2.00"))
    assert report.hourly[-1].count == 1 and report.hourly[-1].hour == AS_OF.replace(minute=0)


def test_sms_hourly_buckets_cover_the_window_in_utc(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    base = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    for minute in (0, 15, 59):
        rows.delivery(tech, created_at=base + timedelta(minutes=minute))
    rows.delivery(tech, created_at=base + H, cost=Decimal("0.0395"))
    rows.insert(engine)
    chicago = AS_OF.astimezone(ZoneInfo("America/Chicago"))
    report = run(sms_cost_audit, session, settings, as_of=chicago)
    assert report.as_of == AS_OF and len(report.hourly) == 25
    assert report.hourly[0].hour == datetime(2026, 11, 19, 12, tzinfo=UTC)
    by_hour = {h.hour: (h.count, h.segments, h.cost_usd) for h in report.hourly if h.count}
    assert by_hour == {base: (3, 3, Decimal("0.01935")), base + H: (1, 1, Decimal("0.0395"))}
    assert report.total_cost_usd == Decimal("0.05885")  # 3 x 0.00645 + 0.0395, not rounded


def test_sms_same_answer_for_as_of_in_any_zone(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(tech, created_at=AS_OF - 5 * H)
    rows.delivery(tech, created_at=AS_OF - 23 * H)
    rows.insert(engine)
    utc = run(sms_cost_audit, session, settings).to_json()
    tokyo = run(sms_cost_audit, session, settings, as_of=AS_OF.astimezone(ZoneInfo("Asia/Tokyo")))
    assert tokyo.to_json() == utc


def test_sms_last_hour_and_today_against_thresholds(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(tech, created_at=AS_OF - 13 * H, cost=Decimal("50"))  # yesterday 23:30
    rows.delivery(tech, created_at=AS_OF - 2 * H, cost=Decimal("35"))  # today, not last hour
    rows.delivery(tech, created_at=AS_OF - H / 2, cost=Decimal("25.004"))  # last hour
    rows.insert(engine)
    report = run(sms_cost_audit, session, settings)
    assert report.last_hour_cost_usd == Decimal("25.004")
    assert report.today_cost_usd == Decimal("60.004")
    assert report.daily_cap_used == 0.6 and report.daily_cap_reached is False
    assert report.total_cost_usd == Decimal("110.004")
    assert report.severity is Severity.P3 and report.breached
    assert [f.code for f in report.findings] == ["sms-cost"]


def test_sms_over_100_per_hour_pages_and_cap_reached(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(tech, created_at=AS_OF - H / 4, cost=Decimal("100.01"))
    rows.insert(engine)
    report = run(sms_cost_audit, session, settings)
    assert report.severity is Severity.P1
    assert report.daily_cap_reached and len(report.breaches) == 2


def test_sms_one_huge_recipient_dominates_top_recipients(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    huge = rows.recipient("technician:huge", phone="+15559876543")
    pricey = rows.recipient("technician:uk", phone="+447700900123")
    others = [rows.recipient(f"technician:{n}", phone=None) for n in range(20)]
    rows.many(5_000, huge, created_at=AS_OF - 3 * H)
    rows.many(10, pricey, created_at=AS_OF - 3 * H, cost=Decimal("4"))
    for n, tech in enumerate(others):
        rows.many(n + 1, tech, created_at=AS_OF - 4 * H)
    rows.insert(engine)
    report = run(sms_cost_audit, session, settings, top_n=3)
    first = report.top_recipients[0]
    assert (first.recipient, first.count, first.cost_usd) == (
        "technician:huge",
        5000,
        Decimal("32.25"),
    )
    assert first.phone_masked == "+1***6543"
    assert [r.recipient for r in report.top_recipients[1:]] == ["technician:19", "technician:18"]
    by_cost = report.top_recipients_by_cost
    assert [(r.recipient, r.cost_usd) for r in by_cost[:2]] == [
        ("technician:uk", Decimal("40.00")),
        ("technician:huge", Decimal("32.25")),
    ]
    assert report.sms_count == 5_000 + 10 + sum(range(1, 21))


def test_sms_empty_database_is_all_zeros(session: Session, settings: Settings) -> None:
    report = run(sms_cost_audit, session, settings)
    assert (report.sms_count, report.total_cost_usd, report.today_cost_usd) == (0, 0, 0)
    assert report.severity is Severity.P4 and not report.breached and report.findings == ()
    assert len(report.hourly) == 25 and all(h.count == 0 for h in report.hourly)
    assert report.top_recipients == () and report.daily_cap_used == 0.0


def test_sms_only_email_day(engine: Engine, session: Session, settings: Settings) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.many(30, tech, created_at=AS_OF - 3 * H, channel="email")
    rows.insert(engine)
    report = run(sms_cost_audit, session, settings)
    assert report.sms_count == 0 and report.total_cost_usd == Decimal("0.00")


def test_sms_json_has_the_stable_keys(session: Session, settings: Settings) -> None:
    payload = run(sms_cost_audit, session, settings).to_json()
    assert {
        "window_hours",
        "sms_count",
        "total_cost_usd",
        "last_hour_cost_usd",
        "today_cost_usd",
        "hourly",
        "top_recipients",
        "severity",
    } <= set(payload)
    assert set(payload["hourly"][0]) >= {"hour", "count", "cost_usd"}
    assert payload["severity"] == "P4" and payload["total_cost_usd"] == "0.00"
    assert payload["window_hours"] == 24


# --- loops ----------------------------------------------------------------------------------


def test_loops_exactly_at_threshold_is_no_loop_above_is(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    at, above, skipped = (rows.recipient(f"technician:{n}") for n in (1, 2, 3))
    rows.many(5, at, created_at=AS_OF - H)
    rows.many(6, above, created_at=AS_OF - H)
    rows.many(5, skipped, created_at=AS_OF - H)
    rows.many(4, skipped, created_at=AS_OF - H, status="skipped")
    rows.insert(engine)
    report = run(loop_detection, session, settings)
    assert [(x.recipient, x.count) for x in report.loops] == [("technician:2", 6)]
    assert report.threshold == 5 and report.severity is Severity.P3 and report.breached


def test_loops_are_per_channel_and_title_with_latest_attribution(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:7", phone="+15551234567", email="ana@example.com")
    for n in range(7):
        rows.delivery(
            tech,
            created_at=AS_OF - timedelta(minutes=60 - n),
            flow_run_id=f"run-{n}",
            deployment_name="dispatch/hourly",
            request_id=f"req-{n}",
            template_name="repair_assigned" if n < 6 else "repair_reminder",
            recipient_phone="+15551234567",
        )
    rows.many(6, tech, created_at=AS_OF - 2 * H, channel="email", title="Repair assigned")
    rows.many(6, tech, created_at=AS_OF - 2 * H, title="Other title", status="failed")
    rows.insert(engine)
    loops = {(x.channel, x.title): x for x in run(loop_detection, session, settings).loops}
    assert set(loops) == {
        ("sms", "Repair assigned"),
        ("email", "Repair assigned"),
        ("sms", "Other title"),
    }
    sms = loops[("sms", "Repair assigned")]
    assert (sms.count, sms.template_name, sms.flow_run_id, sms.request_id) == (
        7,
        "repair_reminder",
        "run-6",
        "req-6",
    )
    assert sms.deployment_name == "dispatch/hourly" and sms.address_masked == "+1***4567"
    assert sms.first_seen == AS_OF - H and sms.last_seen == AS_OF - timedelta(minutes=54)
    assert loops[("email", "Repair assigned")].address_masked == "a***@example.com"


def test_loops_window_edges(engine: Engine, session: Session, settings: Settings) -> None:
    rows = Rows()
    start_edge, end_edge = rows.recipient("technician:1"), rows.recipient("technician:2")
    rows.many(5, start_edge, created_at=AS_OF - H)
    rows.delivery(start_edge, created_at=AS_OF - DAY)  # exactly at the start: excluded
    rows.many(5, end_edge, created_at=AS_OF - H)
    rows.delivery(end_edge, created_at=AS_OF)  # exactly at as_of: included
    rows.delivery(end_edge, created_at=AS_OF + timedelta(microseconds=1))  # after: excluded
    rows.insert(engine)
    loops = run(loop_detection, session, settings).loops
    assert [(x.recipient, x.count) for x in loops] == [("technician:2", 6)]
    earlier = run(loop_detection, session, settings, as_of=AS_OF - timedelta(microseconds=1))
    assert [(x.recipient, x.count) for x in earlier.loops] == [("technician:1", 6)]


def test_loops_beyond_one_query_of_candidates(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    count = CANDIDATES_PER_QUERY + 7
    for n in range(count):
        tech = rows.recipient(f"technician:{n:04d}")
        rows.many(6, tech, created_at=AS_OF - H, channel="email")
        rows.many(5, tech, created_at=AS_OF - H, title="Below threshold", channel="email")
    rows.insert(engine)
    loops = run(loop_detection, session, settings).loops
    assert len(loops) == count and {x.title for x in loops} == {"Repair assigned"}


def test_mute_loops_adds_one_time_limited_sms_suppression(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1", phone="+15551234567")
    no_phone = rows.recipient("technician:2", phone=None)
    rows.many(6, tech, created_at=AS_OF - H)
    rows.many(6, tech, created_at=AS_OF - H, channel="email")
    rows.many(6, no_phone, created_at=AS_OF - H, channel="email")
    rows.insert(engine)
    report = run(loop_detection, session, settings)
    assert len(report.loops) == 3
    muted = mute_loops(session=session, loops=report.loops, now=AS_OF, hours=24)
    assert [(m.recipient, m.title, m.created, m.until) for m in muted] == [
        ("technician:1", "Repair assigned", True, AS_OF + DAY)
    ]
    again = mute_loops(session=session, loops=report.loops, now=AS_OF + H, hours=24)
    assert [(m.created, m.until) for m in again] == [(False, AS_OF + DAY)], "the mute's own end"
    stored = session.execute(select(Suppression)).scalars().all()
    assert [(s.address, s.channel, s.title, s.until) for s in stored] == [
        ("+15551234567", "sms", "Repair assigned", AS_OF + DAY)
    ]
    # expired, but the loop's messages all came before it ended: dealt with, not muted again
    stale = mute_loops(session=session, loops=report.loops, now=AS_OF + DAY, hours=1)
    assert stale == [], "the mute ended: nothing mutes the loop now"
    # a message after the mute ended: the loop goes on, so it is muted again
    going_on = [x.model_copy(update={"last_seen": AS_OF + DAY + H}) for x in report.loops]
    after_expiry = mute_loops(session=session, loops=going_on, now=AS_OF + DAY + H, hours=1)
    assert [m.created for m in after_expiry] == [True]
    assert session.execute(select(func.count()).select_from(Suppression)).scalar() == 2
    payload = report.with_muted(muted).to_json()
    assert {"threshold", "loops", "muted"} <= set(payload)
    assert set(payload["loops"][0]) >= {"recipient", "channel", "title", "count"}
    assert payload["muted"][0]["phone_masked"] == "+1***4567"


def test_an_email_only_loop_is_not_met_with_an_sms_mute(
    engine: Engine, session: Session, settings: Settings
) -> None:
    """An email loop muted the recipient's SMS, which was not looping, while the emails went on
    (the loop guard holds their repeats back at enqueue); an SMS loop beside it is muted."""
    rows = Rows()
    emailed = rows.recipient("technician:3", phone="+15551230003")
    texted = rows.recipient("technician:4", phone="+15551230004")
    rows.many(8, emailed, created_at=AS_OF - H, channel="email")
    rows.many(8, texted, created_at=AS_OF - H, channel="sms")
    rows.insert(engine)
    report = run(loop_detection, session, settings)
    assert sorted((loop.recipient, loop.channel) for loop in report.loops) == [
        ("technician:3", "email"),
        ("technician:4", "sms"),
    ]
    muted = mute_loops(session=session, loops=report.loops, now=AS_OF, hours=24)
    assert [(m.recipient, m.channel) for m in muted] == [("technician:4", "sms")]
    stored = session.execute(select(Suppression.address)).scalars().all()
    assert stored == ["+15551230004"]


def test_loops_empty_database(session: Session, settings: Settings) -> None:
    report = run(loop_detection, session, settings)
    assert report.loops == () and report.severity is Severity.P4 and not report.breached


# --- failures -------------------------------------------------------------------------------

NOT_VERIFIED = (
    "Email address is not verified. The following identities failed the check in "
    "region US-EAST-1: {}"
)


def test_failure_rates_per_channel(engine: Engine, session: Session, settings: Settings) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.many(88, tech, created_at=AS_OF - H, channel="email")
    rows.many(
        7,
        tech,
        created_at=AS_OF - H,
        channel="email",
        status="failed_permanent",
        error_code="MessageRejected",
        error_class="permanent",
        error_message=NOT_VERIFIED.format("a@example.com"),
    )
    rows.many(
        5,
        tech,
        created_at=AS_OF - H,
        channel="email",
        status="failed",
        error_code="Throttling",
        error_class="transient",
        error_message="Maximum sending rate exceeded.",
    )
    rows.many(50, tech, created_at=AS_OF - H, status="sent")
    rows.many(3, tech, created_at=AS_OF - H, status="pending_retry")
    rows.many(40, tech, created_at=AS_OF - H, status="skipped")
    rows.insert(engine)
    report = run(failure_summary, session, settings)
    assert (report.total, report.failed, report.retrying) == (153, 12, 3)
    assert (report.email_total, report.email_failed, report.email_error_rate) == (100, 12, 0.12)
    assert (report.sms_total, report.sms_failed, report.sms_error_rate) == (53, 0, 0.0)
    assert report.error_rate == round(12 / 153, 4)
    assert report.severity is Severity.P2 and report.breaches == ("email error rate 12.0% > 10%",)
    first = report.groups[0]
    assert (first.count, first.share, first.error_class) == (7, round(7 / 12, 4), "permanent")
    assert first.fix == ADDRESS_NOT_VERIFIED.fix and first.known
    assert report.groups[1].fix == RATE_EXCEEDED.fix


def test_an_error_every_email_meets_and_waits_to_retry_shows_with_its_fix(
    engine: Engine, session: Session, settings: Settings
) -> None:
    """An unverified sender: SES refuses every email, each goes back to wait for a retry
    (`pending_retry`, a config error) and none has failed for good yet. The summary said P4
    with no group at all, while RUNBOOK section 1 sends on-call to it for the cause."""
    rows = Rows()
    tech = rows.recipient("technician:1")
    refused = {
        "channel": "email",
        "status": "pending_retry",
        "error_code": "MessageRejected",
        "error_class": "config",
        "error_message": "Email address is not verified. The following identities failed the "
        "check in region US-EAST-1: ops@example.com",
    }
    rows.many(30, tech, created_at=AS_OF - H, **refused)
    rows.many(2, tech, created_at=AS_OF - H, channel="email", status="failed", **{
        k: v for k, v in refused.items() if k not in ("channel", "status")
    })  # fmt: skip
    rows.many(3, tech, created_at=AS_OF - H, status="pending_retry")  # no error: not a group
    rows.many(20, tech, created_at=AS_OF - H, status="sent")
    rows.insert(engine)
    report = run(failure_summary, session, settings)
    assert (report.failed, report.retrying) == (2, 33), "the rates count failed rows only"
    [group] = report.groups
    assert (group.count, group.retrying, group.share) == (2, 30, 1.0)
    assert (group.error_code, group.channels, group.error_class) == (
        "MessageRejected",
        ("email",),
        "config",
    )
    assert (group.cause, group.fix) == (SENDER_NOT_VERIFIED.cause, SENDER_NOT_VERIFIED.fix)


def test_purged_rows_do_not_dilute_the_failure_rate(
    engine: Engine, session: Session, settings: Settings
) -> None:
    """A purge of a stale backlog (runbook section 4) marks rows `purged`, never sent: counted
    as deliveries, 1,000 of them turned 6 failed emails of 10 (P1) into 0.6% (P3)."""
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.many(4, tech, created_at=AS_OF - H, channel="email")
    failed = {"status": "failed_permanent", "error_code": "InvalidAddress"}
    rows.many(6, tech, created_at=AS_OF - H, channel="email", **failed)
    rows.many(1_000, tech, created_at=AS_OF - H, channel="email", status="purged")
    rows.insert(engine)
    report = run(failure_summary, session, settings)
    assert (report.email_total, report.email_failed, report.email_error_rate) == (10, 6, 0.6)
    assert report.severity is Severity.P1


def test_rows_still_queued_or_in_flight_do_not_dilute_the_failure_rate(
    engine: Engine, session: Session, settings: Settings
) -> None:
    """250 emails failed of 311 that ended (80%: P1) read as 24.6% (P2) beside 718 rows still
    `sending` and queued: rows without an outcome yet count nowhere."""
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.many(61, tech, created_at=AS_OF - H, channel="email")
    failed = {"status": "failed_permanent", "error_code": "InvalidAddress"}
    rows.many(250, tech, created_at=AS_OF - H, channel="email", **failed)
    for status, count in (("sending", 700), ("claimed", 10), ("pending", 8)):
        rows.many(count, tech, created_at=AS_OF - H, channel="email", status=status)
    rows.insert(engine)
    report = run(failure_summary, session, settings)
    assert (report.email_total, report.email_failed) == (311, 250)
    assert report.email_error_rate == round(250 / 311, 4)
    assert report.severity is Severity.P1


def test_a_failure_whose_provider_answered_an_html_page_groups_as_one_line(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center>nginx</center>"
    rows.many(
        2,
        tech,
        created_at=AS_OF - H,
        channel="email",
        status="failed",
        error_code="HTTP502",
        error_class="transient",
        error_message=page,
    )
    rows.insert(engine)
    [group] = run(failure_summary, session, settings).groups
    assert group.count == 2 and group.error_message == "<n> Bad Gateway"


@pytest.mark.parametrize(
    ("failed", "severity"),
    [
        (0, Severity.P4),
        (1, Severity.P3),
        (10, Severity.P2),
        (50, Severity.P2),
        (51, Severity.P1),
        (100, Severity.P1),
    ],
)
def test_failure_severity_follows_the_table(
    engine: Engine, session: Session, settings: Settings, failed: int, severity: Severity
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.many(100 - failed, tech, created_at=AS_OF - H)
    rows.many(failed, tech, created_at=AS_OF - H, status="failed", error_code="InternalError")
    rows.insert(engine)
    report = run(failure_summary, session, settings)
    assert report.sms_error_rate == failed / 100 and report.severity is severity
    assert report.breached is (failed > 10)


def test_failure_groups_normalise_messages(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    messages = [
        NOT_VERIFIED.format("a@example.com"),
        NOT_VERIFIED.format("b@test.org, c.d+x@corp.example.com"),
        NOT_VERIFIED.format("e@example.net"),
    ]
    for message in messages:
        rows.delivery(
            tech,
            created_at=AS_OF - H,
            channel="email",
            status="failed_permanent",
            error_code="MessageRejected",
            error_class="permanent",
            error_message=message,
        )
    for phone in ("+1555", "12345", "+4477009"):
        rows.delivery(
            tech,
            created_at=AS_OF - H,
            status="failed_permanent",
            error_class="permanent",
            error_code="InvalidParameter",
            error_message=f"Invalid parameter: PhoneNumber Reason: '{phone}' is not E.164",
        )
    rows.delivery(
        tech,
        created_at=AS_OF - H,
        channel="email",
        status="failed",
        error_message="SMTPAuthenticationError: (535, b'Authentication Credentials Invalid')",
    )
    rows.insert(engine)
    report = run(failure_summary, session, settings)
    groups = [(g.error_message, g.count, g.channels, g.fix) for g in report.groups]
    assert groups == [
        (
            "Invalid parameter: PhoneNumber Reason: '<value>' is not E.<n>",
            3,
            ("sms",),
            INVALID_PHONE.fix,
        ),
        (
            "Email address is not verified. The following identities failed the check in region "
            "US-EAST-<n>: <email>",
            3,
            ("email",),
            ADDRESS_NOT_VERIFIED.fix,
        ),
        ("SMTPAuthenticationError: (<n>, b'<value>')", 1, ("email",), SMTP_AUTH_FAILED.fix),
    ]
    assert report.groups[2].error_class == "config"  # filled from the known kind
    # equal counts: ordered by (class, code, message), so the output is stable
    assert set(report.to_json()["groups"][0]) >= {"error_class", "error_message", "count", "fix"}


def test_not_verified_naming_our_sender_and_naming_a_recipient_have_their_own_fixes(
    engine: Engine, session: Session, settings: Settings
) -> None:
    """SES words both the same, and the normalised message masks the address that tells them
    apart: `audit failures` gave our unverified sender (recorded as config by the deliverer)
    the sandboxed recipient's cause and fix, "request production access", while `deliver` and
    `test-email` said to verify the sender (RUNBOOK section 1)."""
    rows = Rows()
    tech = rows.recipient("technician:1")
    failure = {"channel": "email", "created_at": AS_OF - H, "error_code": "SMTP554"}
    ours, theirs = "unverified@example.com", "tech1@example.com"
    rows.many(4, tech, status="pending_retry", error_class="config", **failure,
              error_message=REJECTED_UNVERIFIED.format(sender=ours))  # fmt: skip
    rows.many(3, tech, status="failed_permanent", error_class="permanent", **failure,
              error_message=REJECTED_UNVERIFIED.format(sender=theirs))  # fmt: skip
    rows.insert(engine)
    for report in (
        run(failure_summary, session, settings),
        failure_summary(
            session=session, as_of=AS_OF, window=DAY, settings=settings, rollups=FULL_SCAN
        ),
    ):
        found = {
            g.error_class: (g.error_message, g.count, g.retrying, g.cause, g.fix)
            for g in report.groups
        }
        masked = (
            "<n> Message rejected: Email address is not verified. The following identities "
            "failed the check in region US-EAST-<n>: <email>"
        )
        assert found == {
            "config": (masked, 0, 4, SENDER_NOT_VERIFIED.cause, SENDER_NOT_VERIFIED.fix),
            "permanent": (masked, 3, 0, ADDRESS_NOT_VERIFIED.cause, ADDRESS_NOT_VERIFIED.fix),
        }


def test_an_unverified_sender_on_ses_shows_the_sender_fix_in_the_failure_summary(
    aws_env: str, engine: Engine, session: Session, settings: Settings
) -> None:
    """The reviewer's repro on the local SES (moto): NOTIFY_EMAIL_FROM never verified, two
    technicians sent to, delivered by the real SES sender. The summary's group said "SES in
    sandbox mode, recipient not verified"; now it says to verify the sender, our address
    masked as any other."""
    ours = "unverified@example.com"
    settings = settings.model_copy(update={"sender": SenderKind.aws, "email_from": ours})
    add_recipients(engine, [technician(42), technician(43)])
    send(engine, settings, ["tech:42", "tech:43"])
    Deliverer(
        engine=engine,
        senders=senders_from_settings(settings),
        settings=settings,
        owner="test-worker",
        clock=lambda: NOON,
        pacers={"email": Unpaced(), "sms": Unpaced()},
        rng=random.Random(7),
    ).deliver_batch()
    report = failure_summary(
        session=session, as_of=NOON, window=H, settings=settings, rollups=FULL_SCAN
    )
    [group] = report.groups
    assert (group.error_class, group.error_code, group.channels) == (
        "config",
        "MessageRejected",
        ("email",),
    )
    assert (group.cause, group.fix) == (SENDER_NOT_VERIFIED.cause, SENDER_NOT_VERIFIED.fix)
    assert "not verified" in group.error_message and "<email>" in group.error_message
    assert "`notifyops ses verify-sender`" in group.fix, "the fix is one command"
    assert ours not in json.dumps(report.to_json(), default=str)


def test_a_connection_dropped_before_the_message_was_written_shows_the_retry_fix(
    engine: Engine, session: Session, settings: Settings
) -> None:
    """SES SMTP dropping the connection before DATA: the deliverer records it transient (never
    reached SES, retried), but the summary took the exception's name alone and told on-call the
    message may have been sent, is never retried, and to redrive `--status unknown` rows."""
    dropped = classify_exception(
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), written=False
    )
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.many(
        3,
        tech,
        created_at=AS_OF - H,
        channel="email",
        status="pending_retry",
        error_code=dropped.code,
        error_class=dropped.error_class.value,
        error_message=f"{dropped.message}{FIX_SEPARATOR}{dropped.fix}",
    )
    rows.insert(engine)
    [group] = run(failure_summary, session, settings).groups
    assert (group.error_class, group.error_code, group.retrying) == (
        "transient",
        "SMTPServerDisconnected",
        3,
    )
    assert (group.cause, group.fix) == (CONNECTION_FAILED.cause, CONNECTION_FAILED.fix)


def test_failures_empty_database(session: Session, settings: Settings) -> None:
    report = run(failure_summary, session, settings)
    assert (report.total, report.failed, report.error_rate, report.groups) == (0, 0, 0.0, ())
    assert report.severity is Severity.P4
    assert {
        "total",
        "failed",
        "error_rate",
        "email_error_rate",
        "sms_error_rate",
        "groups",
        "severity",
    } <= set(report.to_json())


def test_failures_window_edges(engine: Engine, session: Session, settings: Settings) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(tech, created_at=AS_OF - DAY, status="failed")
    rows.delivery(tech, created_at=AS_OF, status="failed")
    rows.delivery(tech, created_at=AS_OF + timedelta(seconds=1), status="failed")
    rows.insert(engine)
    assert run(failure_summary, session, settings).failed == 1


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        (
            "Throttling: Rate exceeded for 0a1b2c3d-1111-2222-3333-444455556666",
            "Throttling: Rate exceeded for <id>",
        ),
        (
            "Request ABCD1234EFGH failed after 3 attempts (12.5 s)",
            "Request <id> failed after <n> attempts (<n> s)",
        ),
        (
            "Publish to +1 (555) 123-4567 denied by arn:aws:sns:us-east-1:123456789012:x",
            "Publish to <phone> denied by <arn>",
        ),
        ("see https://docs.aws.amazon.com/ses/x?y=1  now", "see <url> now"),
        (None, ""),
    ],
)
def test_normalise_error_message(raw: str | None, normalised: str) -> None:
    assert normalise_error_message(raw) == normalised


def test_kind_for_finds_the_runbook_patterns_in_text_without_a_code() -> None:
    assert kind_for(None, "SMTPAuthenticationError (535)") is SMTP_AUTH_FAILED
    assert kind_for("", "Rate exceeded") is RATE_EXCEEDED
    assert kind_for(None, "InvalidParameter: Phone number") is INVALID_PHONE
    assert kind_for(None, "Address not verified (SES sandbox)") is ADDRESS_NOT_VERIFIED
    assert kind_for(None, "Invalid email address").code == "InvalidAddress"


def test_kind_for_takes_not_verified_recorded_as_config_for_our_sender() -> None:
    """The deliverer records SES's "not verified" as config when it names NOTIFY_EMAIL_FROM
    (notify.senders.base.sender_aware); the masked text can no longer say whose address it was."""
    masked = "Email address is not verified. The following identities failed the check: <email>"
    assert kind_for("MessageRejected", masked, "config") is SENDER_NOT_VERIFIED
    assert kind_for("SMTP554", masked, "config") is SENDER_NOT_VERIFIED
    assert kind_for("MessageRejected", masked, "permanent") is ADDRESS_NOT_VERIFIED
    assert kind_for("MessageRejected", masked) is ADDRESS_NOT_VERIFIED  # no class recorded
    assert kind_for("Throttling", "Rate exceeded", "config") is RATE_EXCEEDED  # nothing else moves


def test_kind_for_takes_a_dropped_connection_as_recorded_never_reached_or_maybe_sent() -> None:
    reset = "ConnectionResetError: [Errno <n>] Connection reset by peer"
    assert kind_for("ConnectionResetError", reset, "transient") is CONNECTION_FAILED
    assert kind_for("ConnectionResetError", reset, "maybe_sent") is MAYBE_SENT
    assert kind_for("ConnectionError", "refused", "maybe_sent") is MAYBE_SENT
    assert kind_for("ConnectionError", "refused", "transient") is CONNECTION_FAILED


# --- health ---------------------------------------------------------------------------------


def test_health_backlog_deferred_and_oldest_age(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.delivery(
        tech,
        created_at=AS_OF - 2 * H,
        status="pending",
        next_attempt_at=AS_OF - 90 * 60 * timedelta(seconds=1),
    )
    rows.delivery(tech, created_at=AS_OF - H, status="pending_retry", next_attempt_at=AS_OF)
    rows.delivery(tech, created_at=AS_OF - H, status="pending")  # no next_attempt_at: due
    rows.delivery(tech, created_at=AS_OF - H, status="pending", next_attempt_at=AS_OF + H)
    rows.insert(engine)
    report = run(health, session, settings)
    assert (report.backlog, report.deferred) == (3, 1)
    assert report.oldest_pending_age_s == 5400.0
    assert report.severity is Severity.P4 and report.ses is None


def test_health_latency_average_and_p95(
    engine: Engine, session: Session, settings: Settings
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    for n in range(1, 21):  # latencies 1..20 s
        created = AS_OF - H + timedelta(minutes=n)
        rows.delivery(tech, created_at=created, sent_at=created + timedelta(seconds=n))
    old = AS_OF - DAY - H
    rows.delivery(tech, created_at=old, sent_at=old + timedelta(seconds=500))  # outside
    rows.insert(engine)
    report = run(health, session, settings)
    assert (report.sent_in_window, report.avg_latency_s, report.p95_latency_s) == (20, 10.5, 19.0)


@pytest.mark.parametrize(
    ("latency_s", "severity"),
    [(30, Severity.P4), (31, Severity.P3), (60, Severity.P3), (61, Severity.P2)],
)
def test_health_latency_severity(
    engine: Engine, session: Session, settings: Settings, latency_s: int, severity: Severity
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    created = AS_OF - H
    rows.delivery(tech, created_at=created, sent_at=created + timedelta(seconds=latency_s))
    rows.insert(engine)
    assert run(health, session, settings).severity is severity


@pytest.mark.parametrize(
    ("backlog", "severity"), [(1_000, Severity.P4), (1_001, Severity.P3), (5_001, Severity.P2)]
)
def test_health_backlog_severity(
    engine: Engine, session: Session, settings: Settings, backlog: int, severity: Severity
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    rows.many(backlog, tech, created_at=AS_OF - H, status="pending", next_attempt_at=AS_OF - H)
    rows.insert(engine)
    report = run(health, session, settings)
    assert report.backlog == backlog and report.severity is severity
    assert report.breached is (backlog > 1_000)


def test_health_stuck_and_unknown(engine: Engine, session: Session, settings: Settings) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    expired, live = AS_OF - timedelta(seconds=1), AS_OF + H
    for status, lease in (
        ("claimed", expired),
        ("claimed", expired),
        ("sending", expired),
        ("claimed", live),
        ("sending", live),
    ):
        rows.delivery(
            tech,
            created_at=AS_OF - H,
            status=status,
            lease_expires_at=lease,
            lease_owner="worker-1",
        )
    rows.many(2, tech, created_at=AS_OF - H, status="unknown")
    rows.insert(engine)
    report = run(health, session, settings)
    assert (report.stuck_claimed, report.stuck_sending, report.unknown) == (2, 1, 2)
    # rows held past their lease were counted and escalated nothing (P4, exit 0) for an hour
    assert report.severity is Severity.P3 and report.breached
    assert [f.code for f in report.findings] == ["unknown", "stuck"]
    stuck = next(f for f in report.findings if f.code == "stuck")
    assert stuck.message.startswith("3 row(s) held past their lease by a deliverer that stopped")
    assert "`notifyops deliver`" in stuck.message


def test_health_calls_rows_nobody_will_finish_and_orphan_receipts_data_loss(
    engine: Engine, settings: Settings
) -> None:
    from notify.db import RECEIPTS

    rows = Rows()
    tech = rows.recipient("technician:1")
    for lease in (AS_OF - 2 * H, AS_OF - 3 * H, AS_OF - timedelta(minutes=5)):
        rows.delivery(
            tech,
            created_at=AS_OF - 4 * H,
            status="sending",
            lease_expires_at=lease,
            lease_owner="dead-worker",
        )
    rows.insert(engine)
    with transaction(engine) as session:
        report = run(health, session, settings)
    assert (report.lost_past_horizon, report.unmatched_receipts) == (2, 0)
    assert report.severity is Severity.P1 and "data-loss" in [f.code for f in report.findings]

    with engine.begin() as connection:
        connection.execute(
            RECEIPTS.insert(),
            [
                {
                    "dedupe_key": "r-old",
                    "source": "ses",
                    "event_type": "Delivery",
                    "delivery_id": 999,
                    "state": "unmatched",
                    "received_at": AS_OF - 2 * H,
                },
                {
                    "dedupe_key": "r-new",
                    "source": "ses",
                    "event_type": "Delivery",
                    "delivery_id": 998,
                    "state": "unmatched",
                    "received_at": AS_OF - timedelta(minutes=10),
                },
            ],
        )
    with transaction(engine) as session:
        assert run(health, session, settings).unmatched_receipts == 1, "only after the horizon"


def test_another_senders_receipts_are_no_data_loss(engine: Engine, settings: Settings) -> None:
    """`notifyops test-email` through the configuration set, another application on it, or
    another application's SMS in the account's delivery logs: receipts without our delivery id
    tag stay unmatched. Counted as data loss, one of them paged P1 on every health run, for
    ever."""
    from notify.db import RECEIPTS

    untagged = [
        {"source": source, "event_type": event, "dedupe_key": f"other-{source}-{event}"}
        for source, event in (("ses", "Send"), ("ses", "Delivery"), ("sms", "SmsSuccess"))
    ]
    with engine.begin() as connection:
        connection.execute(
            RECEIPTS.insert(),
            [{**r, "state": "unmatched", "received_at": AS_OF - 3 * H} for r in untagged],
        )
    with transaction(engine) as session:
        report = run(health, session, settings)
    assert (report.unmatched_receipts, report.severity, report.findings) == (0, Severity.P4, ())


def test_health_reports_a_missing_index(engine: Engine, settings: Settings) -> None:
    with transaction(engine) as session:
        assert run(health, session, settings).index_problems == ()
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_notifications_history")
    # SQLite: another pooled connection may still parse DDL against the schema it last read
    # (CREATE INDEX then says the dropped index "already exists"); start every one afresh
    engine.dispose()
    try:
        with transaction(engine) as session:
            report = run(health, session, settings)
        assert [p.index for p in report.index_problems] == ["ix_notifications_history"]
        (finding,) = [f for f in report.findings if f.code == "indexes"]
        assert "db upgrade" not in finding.message, "at the newest migration it recreates nothing"
        assert report.index_problems[0].fix.startswith("CREATE INDEX ix_notifications_history")
    finally:
        from notify.db import Base

        index = next(
            i
            for t in Base.metadata.sorted_tables
            for i in t.indexes
            if i.name == "ix_notifications_history"
        )
        with engine.begin() as connection:
            index.create(connection)


def test_health_empty_database(session: Session, settings: Settings) -> None:
    report = run(health, session, settings)
    assert report.database_reachable and report.database_error is None
    assert (report.backlog, report.oldest_pending_age_s, report.avg_latency_s) == (0, 0.0, 0.0)
    assert report.severity is Severity.P4 and not report.breached
    payload = report.to_json()
    assert {
        "backlog",
        "oldest_pending_age_s",
        "avg_latency_s",
        "p95_latency_s",
        "unknown",
        "ses",
        "severity",
    } <= set(payload)


def test_health_workers_down_folds_into_severity(session: Session, settings: Settings) -> None:
    report = run(health, session, settings)
    worker = WorkerState(name="w1", pool="notifications", online=False)
    assert report.with_workers([worker], down_minutes=10).severity is Severity.P4
    down = report.with_workers([worker], down_minutes=11, late_runs=3)
    assert down.severity is Severity.P1 and down.breached and down.late_runs == 3
    assert down.to_json()["workers"][0]["name"] == "w1"


def test_health_unreachable_database_is_reported_not_raised(tmp_path: Any) -> None:
    settings = Settings(database_url="sqlite:///x.db", sender="memory")
    engine = make_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite")
    with Session(engine) as session:
        report = health(session=session, as_of=AS_OF, window=DAY, settings=settings)
    assert not report.database_reachable and "OperationalError" in (report.database_error or "")
    assert report.severity is Severity.P1 and report.findings[0].code == "database"


def test_health_reports_a_sqlite_file_that_does_not_exist_as_p1(tmp_path: Any) -> None:
    """A mistyped NOTIFY_DATABASE_URL to a SQLite file: every other command stops on it (the
    file is never created), but health exited 2 with that error where RUNBOOK says an
    unreachable database is its P1 finding (exit 1, routed to the pager)."""
    missing = tmp_path / "notify.db"
    here = Runtime(load_settings(database_url=f"sqlite:///{missing}", sender="memory"))
    report = run_audit(Check.health, runtime=here, as_of=AS_OF, window=DAY)
    assert report.severity is Severity.P1 and report.findings[0].code == "database"
    assert f"no file {missing}" in (report.to_json()["database_error"] or "")
    assert not missing.exists(), "never created"
    with pytest.raises(DatabaseNotReady, match="run `notifyops db upgrade`"):
        run_audit(Check.failures, runtime=here, as_of=AS_OF, window=DAY)


def _clients() -> tuple[Any, Any]:
    return boto3.client("sesv2", region_name="us-east-1"), boto3.client(
        "ses", region_name="us-east-1"
    )


def test_ses_state_on_moto_falls_back_to_v1(aws_env: str) -> None:
    sesv2, ses = _clients()
    state = check_ses_account(sender=VERIFIED_SENDER, sesv2=sesv2, ses=ses)
    assert state.source == "ses" and state.mode == "sandbox" and state.mode_inferred
    assert (state.max_24h_send, state.max_send_rate, state.sent_last_24h) == (200.0, 1.0, 0.0)
    assert state.sender_verified is True and state.sending_enabled is None
    # moto answers v2 GetAccount with a bare 404 page and v1 GetAccountSendingEnabled with an
    # HTML 500: calls it does not offer, not SES errors
    assert state.not_offered == ("sesv2.GetAccount", "ses.GetAccountSendingEnabled")
    assert state.errors == () and state.unanswered == ()
    assert check_ses_account(sender=VERIFIED_SENDER, sesv2=sesv2).sender_verified is True
    assert check_ses_account(sender="x@nowhere.example", sesv2=sesv2).sender_verified is False


def test_an_ses_error_naming_its_code_is_kept_beside_a_call_the_endpoint_lacks(
    aws_env: str, session: Session, settings: Settings
) -> None:
    """AccessDenied on v2 GetAccount is SES's answer (it names its code): the sending state it
    leaves unknown is P3, naming the permission; the v1 call moto lacks is only listed."""
    from botocore.stub import Stubber

    sesv2, ses = _clients()
    with Stubber(sesv2) as denied:
        denied.add_client_error(
            "get_account",
            service_error_code="AccessDeniedException",
            service_message="User is not authorized to perform ses:GetAccount",
            http_status_code=403,
        )
        report = run(health, session, settings, sesv2=sesv2, ses=ses)
    state = report.ses
    assert state is not None and state.not_offered == ("ses.GetAccountSendingEnabled",)
    assert [e.split(":")[0] for e in state.errors] == ["sesv2.GetAccount"]
    assert report.severity is Severity.P3
    [finding] = report.findings
    assert finding.code == "ses-errors"
    assert finding.message.startswith("SES left the sending state unknown (sesv2.GetAccount: ")
    assert "grant ses:GetAccount;" in finding.message


def test_an_endpoint_that_answers_no_call_as_ses_does_is_silent_not_lacking_calls(
    session: Session, settings: Settings
) -> None:
    """Every call answered with a page that is not AWS's (here a plain HTTP server's 501): no
    call answered, so nothing says the endpoint stands in for SES; SES does not answer (P2)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Nothing(BaseHTTPRequestHandler):  # no do_GET / do_POST: 501 Unsupported method
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Nothing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        clients = {
            name: boto3.client(
                name,
                region_name="us-east-1",
                endpoint_url=url,
                aws_access_key_id="x",
                aws_secret_access_key="x",
            )
            for name in ("sesv2", "ses")
        }
        report = run(health, session, settings, **clients)
    finally:
        server.shutdown()
    assert report.ses is not None and report.ses.not_offered == ()
    assert len(report.ses.errors) == 4
    assert report.severity is Severity.P2
    assert [f.code for f in report.findings] == ["ses-errors"]
    assert report.findings[0].message.startswith("SES does not answer")
    shown = [*report.to_json()["ses"]["errors"], *(f.message for f in report.findings)]
    assert all("\n" not in text and "<" not in text and len(text) <= 400 for text in shown)


def test_health_with_unverified_sender_pages(
    aws_env: str, session: Session, settings: Settings
) -> None:
    sesv2, ses = _clients()
    unverified = settings.model_copy(update={"email_from": "other@unverified.example"})
    report = run(health, session, unverified, sesv2=sesv2, ses=ses)
    assert report.ses is not None and report.ses.sender_verified is False
    assert report.severity is Severity.P1 and report.findings[0].code == "ses-sender"
    verified = run(health, session, settings, sesv2=sesv2, ses=ses)
    assert verified.to_json()["ses"]["mode"] == "sandbox"
    assert not verified.findings, "moto lacks the sending-state calls: not an SES finding"
    named = settings.model_copy(update={"email_from": f"Dispatch <{settings.email_from}>"})
    with_name = run(health, session, named, sesv2=sesv2, ses=ses)
    assert with_name.ses is not None and with_name.ses.sender_verified is True, "its address is"


def test_ses_state_unreachable_endpoint_is_captured() -> None:
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}, connect_timeout=0.5, read_timeout=0.5)
    ses = boto3.client(
        "ses",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=config,
    )
    state = check_ses_account(sender=VERIFIED_SENDER, ses=ses)
    assert state.source is None and state.sender_verified is None and len(state.errors) == 3


def test_health_with_ses_out_of_reach_is_a_p2_not_p4(
    aws_out_of_reach: str, session: Session, settings: Settings
) -> None:
    """Every SES call failing left health at P4 with the errors only in `ses.errors`."""
    from botocore.config import Config

    quick = Config(retries={"total_max_attempts": 1}, connect_timeout=0.5)
    clients = {name: boto3.client(name, config=quick) for name in ("sesv2", "ses")}
    report = run(health, session, settings, **clients)
    assert report.ses is not None and len(report.ses.errors) == 4  # every call
    assert report.severity is Severity.P2 and report.breached
    [finding] = report.findings
    assert finding.code == "ses-errors"
    assert finding.message.startswith(
        "SES does not answer (ses.GetIdentityVerificationAttributes: EndpointConnectionError)"
    )


def test_health_with_ses_v2_alone_on_moto_has_no_ses_finding(
    aws_env: str, session: Session, settings: Settings
) -> None:
    """SES v2 alone on moto: the sender is verified; the account's state comes from a call
    moto lacks, which is listed, not raised as a finding (health exited 1 on every run against
    the stand-in)."""
    sesv2, _ = _clients()
    report = run(health, session, settings, sesv2=sesv2)
    assert report.ses is not None and report.ses.sender_verified is True
    assert report.ses.source is None and report.ses.not_offered == ("sesv2.GetAccount",)
    assert not report.findings and not report.breached


def test_ses_errors_in_the_health_report_are_one_short_line_each(
    aws_env: str, session: Session, settings: Settings
) -> None:
    """moto answers SES v2's GetAccount with its HTML 404 page: `ses.errors` showed the page's
    markup over several lines (`404 <!doctype html>\n<html lang=en>...`), as did the finding.
    With no sender to ask about, no call answers: the 404 is an error, not a lacking call."""
    sesv2, _ = _clients()
    state = check_ses_account(sender="", sesv2=sesv2)
    assert state.errors == ("sesv2.GetAccount: 404 Not Found",) and state.not_offered == ()
    assert state.silent


# --- masking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+15551234567", "+1***4567"),
        ("+447700900123", "+44***0123"),
        ("+3312345", "+33***45"),
        ("12", "***"),
        ("alice@example.com", "a***@example.com"),
        ("a@b.co", "a***@b.co"),
        (None, None),
    ],
)
def test_masking(value: str | None, masked: str | None) -> None:
    from notify.masking import mask_address, mask_email

    assert mask_address(value) == masked
    assert mask_email("not-an-address") == "***"


@pytest.mark.parametrize("folded", [True, False])
def test_a_loop_the_guard_holds_back_still_shows(
    engine: Engine, session: Session, settings: Settings, folded: bool
) -> None:
    """The loop guard refuses the sixth identical SMS in 24 hours, so no more than five are ever
    sent and the audit (more than five) said `none` while the source kept repeating: the rows
    the guard refused count now (other skipped rows still do not)."""
    add_recipients(engine, [technician(1)])
    for _ in range(settings.loop_threshold + 2):
        send(engine, settings, ["tech:1"], priority=Priority.urgent)
    later = NOON + H
    policy = RollupPolicy(fold=False) if folded else FULL_SCAN
    if folded:
        fold(session, now=later, grace=timedelta(0))
    report = loop_detection(
        session=session, as_of=later, window=DAY, settings=settings, rollups=policy
    )
    found = sorted((x.recipient, x.channel, x.count) for x in report.loops)
    assert found == [("tech:1", "email", 7), ("tech:1", "sms", 7)], "5 sent, 2 held back each"
    assert report.severity is Severity.P3
