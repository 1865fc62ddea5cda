"""Quiet-hours digests on SQLite and PostgreSQL: the SMS quiet hours held back for one recipient go
out as one message at the window's end, the rows it carries follow its outcome, nothing is sent
twice. Real databases, the in-memory sender, fixed clocks; the deliver-pending flow at the end."""

from __future__ import annotations

import importlib
import re
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from flows.deliver import deliver_pending
from notify.actions.audit_trail import Actor
from notify.actions.redrive import RedriveRequest, redrive
from notify.audits.rollups import FULL_SCAN, RollupPolicy
from notify.audits.sms_cost import sms_cost_audit
from notify.bootstrap import Runtime, using
from notify.db import QUIET_INDEX_WHERE, DeliveryLog, Notification, make_engine, transaction
from notify.delivery import Deliverer
from notify.digest import (
    DIGEST_SMS_MAX_PARTS,
    DigestsWhileClaiming,
    Gathered,
    digest_decision,
    follow_digests,
    gather_digests,
    held_rows_came_due,
)
from notify.due import has_work
from notify.enqueue import SendRequest, enqueue
from notify.errors import INVALID_PHONE, SMTP_TEMPORARY, DeliveryError
from notify.policies import QUIET_HOURS_LIKE, REASON_MAX_CHARS
from notify.pricing import sms_length
from notify.rendering import BUILTIN_DIR, TemplateCatalog
from notify.senders.base import OutgoingSms
from notify.senders.memory import MemorySender
from notify.settings import Priority, Settings, load_settings
from notify.summaries import DeliverySummary
from tasks.dispatch import deliverer as delivery_deliverer
from tests.conftest import empty_tables, engine_for
from tests.test_dispatch import CATALOG, NOON, add_recipients, deliverer, tech

QUIET = {"quiet_hours_start": "11:00", "quiet_hours_end": "13:30"}  # NOON is 12:00 in Chicago
WINDOW_END = datetime(2026, 11, 30, 19, 30, tzinfo=UTC)  # 13:30 in Chicago
AFTER = WINDOW_END + timedelta(minutes=1)
PHONE = "+12065550001"


def request(
    engine: Engine,
    settings: Settings,
    repair: str,
    *,
    to: str = "tech:1",
    template: str = "repair_assigned",
    context: dict[str, Any] | None = None,
    priority: Priority | None = None,
    at: datetime = NOON,
) -> int:
    """One notification (its email goes now, its SMS is held by quiet hours); its SMS row id."""
    sent = SendRequest(
        template=template,
        to=(to,),
        context=context or {"repair_id": repair, "unit_number": "12"},
        priority=priority,
    )
    with transaction(engine) as session:
        result = enqueue(session=session, request=sent, catalog=CATALOG, settings=settings, now=at)
        (nid,) = result.notification_ids
        query = select(DeliveryLog.id).where(
            DeliveryLog.notification_id == nid, DeliveryLog.channel == "sms"
        )
        return int(session.scalars(query).one())


def held(engine: Engine, settings: Settings, count: int, to: str = "tech:1") -> list[int]:
    return [request(engine, settings, f"R-{n}", to=to) for n in range(1, count + 1)]


def gather(engine: Engine, settings: Settings, now: datetime = AFTER) -> Gathered:
    return gather_digests(engine=engine, catalog=CATALOG, settings=settings, now=now)


def rows(engine: Engine, ids: list[int]) -> dict[int, DeliveryLog]:
    with transaction(engine) as session:
        found = session.scalars(select(DeliveryLog).where(DeliveryLog.id.in_(ids)))
        return {row.id: row for row in found}


def digest_rows(engine: Engine) -> list[DeliveryLog]:
    with transaction(engine) as session:
        query = (
            select(DeliveryLog)
            .join(Notification, Notification.id == DeliveryLog.notification_id)
            .where(Notification.template_name == "digest")
            .order_by(DeliveryLog.id)
        )
        return list(session.scalars(query))


def deliver(
    engine: Engine, settings: Settings, sender: MemorySender, at: datetime = AFTER
) -> Deliverer:
    worker = deliverer(engine, settings, sender, clock=lambda: at)
    worker.deliver_batch()
    follow_digests(engine=engine, now=at)
    return worker


def sms_fail(error: DeliveryError) -> Any:
    """A fail hook for SMS only (the emails of the same notifications go out)."""
    return lambda message: error if isinstance(message, OutgoingSms) else None


@pytest.fixture
def quiet_tech(engine: Engine) -> None:
    add_recipients(engine, [tech(1, **QUIET)])


def test_three_held_sms_go_out_as_one_digest_that_the_rows_follow(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    ids = held(engine, settings, 3)
    assert gather(engine, settings, now=WINDOW_END - timedelta(seconds=1)) == Gathered(), (
        "nothing is gathered before the window ends"
    )
    assert gather(engine, settings) == Gathered(digests=1, carried=3)
    (digest,) = digest_rows(engine)
    assert digest.decision == f"sms: digest of 3 rows: #{ids[0]},#{ids[1]},#{ids[2]}"
    assert (digest.status, digest.recipient_phone) == ("pending", PHONE)
    assert digest.next_attempt_at == AFTER and digest.cost is not None and digest.cost > 0
    carried = rows(engine, ids)
    for row in carried.values():
        assert (row.status, row.carried_by_id, row.next_attempt_at) == ("carried", digest.id, None)
        assert row.decision.startswith(f"sms: carried by digest #{digest.id}; sms: deferred to")
        assert row.cost == 0 and row.segments == 0, "the digest row holds the price"

    sender = MemorySender()
    deliver(engine, settings, sender)
    assert [m.phone for m in sender.sms] == [PHONE], "one SMS, not a burst of three"
    body = sender.sms[0].body
    assert body.startswith("3 updates from your quiet hours:")
    assert all(f"Repair R-{n} assigned to you" in body for n in (1, 2, 3))
    assert sender.sms[0].delivery_id == digest.id
    (sent_digest,) = digest_rows(engine)
    for row in rows(engine, ids).values():
        assert (row.status, row.sent_at) == ("sent", sent_digest.sent_at), "statuses follow"
        assert row.provider_message_id is None, "receipts match the digest row only"
    deliver(engine, settings, sender, at=AFTER + timedelta(hours=1))
    assert len(sender.sms) == 1, "a carried row is never sent on its own"
    with transaction(engine) as session:
        note = session.get(Notification, sent_digest.notification_id)
        assert note is not None and note.template_name == "digest"
        assert note.context == {"carried": ids}


def test_the_sms_cost_audit_counts_a_digest_as_one_sms(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    """Three held rows went out as one SMS: the audit counts one message at the digest's price,
    from the hourly rollups as from a full scan."""
    held(engine, settings, 3)
    gather(engine, settings)
    deliver(engine, settings, MemorySender())
    (digest,) = digest_rows(engine)
    for policy in (FULL_SCAN, RollupPolicy(grace=timedelta(0), clock=lambda: AFTER)):
        with transaction(engine) as session:
            report = sms_cost_audit(
                session=session,
                as_of=AFTER + timedelta(hours=2),
                window=timedelta(hours=24),
                settings=settings,
                rollups=policy,
            )
        assert report.sms_count == 1, policy
        assert report.total_cost_usd == digest.cost, "the digest row holds the price"
        assert [r.count for r in report.top_recipients] == [1]


def test_a_template_that_opts_out_is_sent_on_its_own(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    assert CATALOG.info("account_alert").digest is False
    assert CATALOG.info("repair_assigned").digest is True
    ids = held(engine, settings, 2)
    alert = request(
        engine,
        settings,
        "",
        template="account_alert",
        context=CATALOG.info("account_alert").sample_context,
        priority=Priority.high,  # not urgent: held by quiet hours like the others
    )
    assert rows(engine, [alert])[alert].status == "pending"
    assert gather(engine, settings) == Gathered(digests=1, carried=2)
    assert rows(engine, [alert])[alert].carried_by_id is None
    sender = MemorySender()
    deliver(engine, settings, sender)
    bodies = sorted(m.body for m in sender.sms)
    assert len(bodies) == 2
    assert bodies[0].startswith("2 updates") and bodies[1].startswith("Account alert:")
    assert {row.status for row in rows(engine, [*ids, alert]).values()} == {"sent"}


def test_one_held_row_is_sent_as_it_is(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    (only,) = held(engine, settings, 1)
    assert gather(engine, settings) == Gathered()
    sender = MemorySender()
    deliver(engine, settings, sender)
    assert [m.body for m in sender.sms] == [
        "Repair R-1 assigned to you: unit 12. Address and time window are in the technician portal."
    ]
    assert rows(engine, [only])[only].status == "sent" and digest_rows(engine) == []


def test_a_batch_still_claiming_when_the_window_ends_sends_the_held_sms_as_one_digest(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET), tech(2)])
    ids = held(engine, settings, 3)
    busy = [request(engine, settings, f"B-{n}", to="tech:2") for n in range(40)]
    sender = MemorySender()
    before = WINDOW_END - timedelta(minutes=1)

    def clock() -> datetime:  # the window ends while the batch works through tech:2's rows
        return AFTER if len(sender.emails) + len(sender.sms) >= 10 else before

    small = settings.model_copy(update={"send_concurrency": 2, "send_window": 8})
    worker = deliverer(engine, small, sender, clock, digests=DigestsWhileClaiming(CATALOG, small))
    report = worker.deliver_batch()
    follow_digests(engine=engine, now=AFTER)

    to_held = [m.body for m in sender.sms if m.phone == PHONE]
    assert len(to_held) == 1 and to_held[0].startswith("3 updates from your quiet hours:"), (
        "one digest, not the three held SMS one by one"
    )
    assert (report.digests, report.carried) == (1, 3)
    assert {row.status for row in rows(engine, [*ids, *busy]).values()} == {"sent"}
    assert report.claimed == 40 * 2 + 3 + 1, "every email, tech:2's SMS and the digest"


@dataclass(frozen=True)
class RacingOnce(DigestsWhileClaiming):
    """Its first gather that finds held rows gives up, as one losing rows to another deliverer
    three times over does."""

    raced: list[bool] = field(default_factory=list)

    def gather(self, conn: Connection, *, seen: datetime | None, now: datetime) -> Gathered:
        if not self.raced and held_rows_came_due(conn, after=seen, now=now):
            self.raced.append(True)
            return Gathered(raced=True)
        return super().gather(conn, seen=seen, now=now)


def test_a_batch_whose_gather_gave_up_looks_again_before_it_claims_the_held_rows(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET), tech(2)])
    held(engine, settings, 3)
    for n in range(40):
        request(engine, settings, f"B-{n}", to="tech:2")
    sender = MemorySender()
    before = WINDOW_END - timedelta(minutes=1)

    def clock() -> datetime:
        return AFTER if len(sender.emails) + len(sender.sms) >= 10 else before

    small = settings.model_copy(update={"send_concurrency": 2, "send_window": 8})
    racing = RacingOnce(CATALOG, small)
    report = deliverer(engine, small, sender, clock, digests=racing).deliver_batch()
    assert racing.raced == [True]
    to_held = [m.body for m in sender.sms if m.phone == PHONE]
    assert len(to_held) == 1 and to_held[0].startswith("3 updates"), "a digest after all"
    assert report.digests == 1


def test_the_deliverers_of_delivery_runs_gather_digests_unless_digests_are_off(
    settings: Settings,
) -> None:
    for digests, expected in ((True, True), (False, False)):
        configured = settings.model_copy(update={"quiet_hours_digest": digests})
        with using(Runtime(configured)):
            assert (delivery_deliverer("test").digests is not None) is expected


def test_rows_are_grouped_per_recipient_and_sms_not_held_is_left_alone(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET), tech(2, **QUIET), tech(3)])
    first = held(engine, settings, 2, to="tech:1")
    second = held(engine, settings, 3, to="tech:2")
    awake = held(engine, settings, 2, to="tech:3")  # no quiet hours: sent at once, not digested
    assert gather(engine, settings) == Gathered(digests=2, carried=5)
    one, two = digest_rows(engine)
    assert {r.carried_by_id for r in rows(engine, first).values()} == {one.id}
    assert {r.carried_by_id for r in rows(engine, second).values()} == {two.id}
    assert {r.carried_by_id for r in rows(engine, awake).values()} == {None}


@pytest.mark.parametrize(
    "sms",
    [
        "{{ total }} {{ nope }}",  # a variable the digest's context has not
        "{% if false %}x{% endif %}",  # empty: the subject alone went, the rows counted sent
        "{% for i in range(200) %}{{ total }} updates while you slept. {% endfor %}",  # > SNS's
    ],
)
def test_a_broken_digest_override_leaves_the_rows_to_go_one_by_one(
    engine: Engine, settings: Settings, quiet_tech: None, tmp_path: Path, sms: str
) -> None:
    shutil.copytree(BUILTIN_DIR / "digest", tmp_path / "digest")
    (tmp_path / "digest" / "sms.txt.j2").write_text(sms, encoding="utf-8")
    ids = held(engine, settings, 2)
    broken = TemplateCatalog(tmp_path)
    assert gather_digests(engine=engine, catalog=broken, settings=settings, now=AFTER) == Gathered()
    sender = MemorySender()
    deliver(engine, settings, sender)
    assert len(sender.sms) == 2 and {r.status for r in rows(engine, ids).values()} == {"sent"}


def test_gathering_again_makes_nothing_new(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    held(engine, settings, 3)
    assert gather(engine, settings).digests == 1
    assert gather(engine, settings) == Gathered()
    assert gather(engine, settings, now=AFTER + timedelta(hours=2)) == Gathered()
    assert len(digest_rows(engine)) == 1


def test_a_digest_that_fails_for_good_takes_its_rows_with_it(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    ids = held(engine, settings, 3)
    gather(engine, settings)
    sender = MemorySender(fail=sms_fail(DeliveryError(INVALID_PHONE, "Invalid phone number")))
    deliver(engine, settings, sender)
    (digest,) = digest_rows(engine)
    assert digest.status == "failed_permanent"
    for row in rows(engine, ids).values():
        assert (row.status, row.error_code) == ("failed_permanent", digest.error_code)
    assert len(sender.failures) == 1, "one provider call, for the digest"


def test_a_digest_that_fails_for_good_makes_no_email_fallback(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    """The digest's SMS failed for good (an invalid number) and an email fallback was made for
    it: the carried notifications' emails had gone already (sent both ways), and a template
    with `"fallback_email": false` was re-sent as email after all."""
    from notify.fallback import FallbackPolicy

    ids = held(engine, settings, 2)
    gather(engine, settings)
    sender = MemorySender(fail=sms_fail(DeliveryError(INVALID_PHONE, "Invalid phone number")))
    worker = deliverer(engine, settings, sender, clock=lambda: AFTER)
    worker.fallback = FallbackPolicy.of(CATALOG)
    worker.deliver_batch()
    follow_digests(engine=engine, now=AFTER)
    worker.deliver_batch()  # a fallback would be due now
    (digest,) = digest_rows(engine)
    assert digest.status == "failed_permanent" and "fallback" not in digest.decision
    with transaction(engine) as session:
        emails = session.scalars(
            select(DeliveryLog.decision).where(DeliveryLog.channel == "email")
        ).all()
    assert len(emails) == len(ids) and not any("fallback" in d for d in emails)
    subjects = sorted(m.subject for m in sender.emails)
    assert subjects == ["Repair R-1 assigned", "Repair R-2 assigned"], "no digest by email"


def test_a_retried_digest_keeps_its_rows_out_of_the_queue_until_it_has_an_outcome(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    settings = settings.model_copy(update={"max_attempts": 2})
    ids = held(engine, settings, 3)
    gather(engine, settings)
    busy = MemorySender(fail=sms_fail(DeliveryError(SMTP_TEMPORARY, "451 busy")))
    deliver(engine, settings, busy)
    (digest,) = digest_rows(engine)
    assert digest.status == "pending_retry" and digest.next_attempt_at is not None
    assert {r.status for r in rows(engine, ids).values()} == {"carried"}, "waiting with it"
    retry_at = digest.next_attempt_at + timedelta(seconds=1)
    deliver(engine, settings, busy, at=retry_at)
    (digest,) = digest_rows(engine)
    assert digest.status == "failed", "attempts exhausted"
    assert {r.status for r in rows(engine, ids).values()} == {"failed"}
    assert len(busy.failures) == 2, "two attempts of one message, never one per carried row"

    # The operator redrives the failed rows: only the digest goes back, and its rows follow it.
    with transaction(engine) as session:
        result = redrive(
            session=session,
            request=RedriveRequest(statuses=["failed"]),
            now=retry_at,
            actor=Actor(name="ops"),
            apply=True,
            catalog=CATALOG,
        )
    assert result.redriven == 1
    sender = MemorySender()
    deliver(engine, settings, sender, at=retry_at + timedelta(minutes=1))
    assert len(sender.sms) == 1
    assert {r.status for r in rows(engine, [*ids, digest.id]).values()} == {"sent"}


def test_the_idle_check_sees_rows_behind_their_digest(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    held(engine, settings, 2)
    gather(engine, settings)
    deliverer(engine, settings, MemorySender(), clock=lambda: AFTER).deliver_batch()
    later = AFTER + timedelta(minutes=5)
    with transaction(engine) as session:
        assert has_work(session=session, now=later), "carried rows still `carried`"
    assert follow_digests(engine=engine, now=later) == 2
    assert follow_digests(engine=engine, now=later) == 0
    with transaction(engine) as session:
        assert not has_work(session=session, now=later)


def test_rows_follow_a_digest_that_gets_its_outcome_a_week_later(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    """Nothing delivered for eight days (an outage): when the digest finally goes out, the rows
    it carries take its outcome, however old they are."""
    ids = held(engine, settings, 2)
    gather(engine, settings)
    deliver(engine, settings, MemorySender(), at=AFTER + timedelta(days=8))
    (digest,) = digest_rows(engine)
    assert digest.status == "sent"
    assert {r.status for r in rows(engine, ids).values()} == {"sent"}
    with transaction(engine) as session:
        assert not has_work(session=session, now=AFTER + timedelta(days=8))


def test_a_long_digest_fits_its_sms_and_counts_the_rest(
    engine: Engine, settings: Settings, quiet_tech: None
) -> None:
    ids = held(engine, settings, 12)
    gather(engine, settings)
    sender = MemorySender()
    deliver(engine, settings, sender)
    (sms,) = sender.sms
    assert sms_length(sms.body).segments <= DIGEST_SMS_MAX_PARTS
    listed = sum(f"Repair R-{n} assigned" in sms.body for n in range(1, 13))
    assert 1 <= listed < 12
    assert sms.body.startswith("12 updates") and f"+{12 - listed} more" in sms.body
    assert {r.status for r in rows(engine, ids).values()} == {"sent"}


def test_the_decision_names_the_carried_rows_within_its_column() -> None:
    assert digest_decision("sms", [12, 15, 19]) == "sms: digest of 3 rows: #12,#15,#19"
    many = digest_decision("sms", list(range(100_000, 100_060)))
    assert len(many) <= REASON_MAX_CHARS
    assert many.startswith("sms: digest of 60 rows: #100000,#100001,")
    assert many.endswith(",… (see carried_by_id)")


def test_the_quiet_hours_index_covers_what_the_policy_writes() -> None:
    """db.py and migration 0006 spell the pattern out; it is the policy's, and it matches the
    deferral and nothing else the policy says."""
    migration = importlib.import_module("notify.migrations.versions.20261201_0006_delivery_links")
    assert migration.QUIET_WHERE == QUIET_INDEX_WHERE
    assert f"decision LIKE '{QUIET_HOURS_LIKE}'" in QUIET_INDEX_WHERE
    deferred = "sms: deferred to 07:00 America/New_York (quiet hours 22:00-07:00)"
    urgent = "sms: send (urgent overrides quiet hours 22:00-07:00 America/New_York)"
    pattern = re.compile(".*".join(map(re.escape, QUIET_HOURS_LIKE.split("%"))), re.DOTALL)
    assert pattern.fullmatch(deferred) and not pattern.fullmatch(urgent)


def test_two_deliverers_gathering_at_once_make_one_digest(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    empty_tables(engine)
    settings = load_settings(database_url=postgres_url, sender="memory")
    add_recipients(engine, [tech(n, **QUIET) for n in range(1, 21)])
    for n in range(1, 21):
        held(engine, settings, 3, to=f"tech:{n}")
    start = threading.Barrier(2)
    results: list[Gathered] = []

    def run() -> None:
        start.wait()
        results.append(gather(engine, settings))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.digests for r in results) == 20 and sum(r.carried for r in results) == 60
    assert len(digest_rows(engine)) == 20
    sender = MemorySender()
    deliver(engine, settings, sender)
    assert sorted(m.phone for m in sender.sms) == sorted(f"+1206555{n:04d}" for n in range(1, 21))


def test_the_deliver_pending_flow_sends_the_digest(flow_env: str) -> None:
    """The scheduled flow gathers, sends and lets the rows follow, on the real clock."""
    engine = make_engine(flow_env)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = (now - timedelta(hours=3)), (now - timedelta(hours=1))
    window = {"quiet_hours_start": f"{start:%H:%M}", "quiet_hours_end": f"{end:%H:%M}"}
    add_recipients(engine, [tech(1, timezone="UTC", **window)])
    settings = load_settings(database_url=flow_env, sender="memory")
    ids = [request(engine, settings, f"R-{n}", at=now - timedelta(hours=2)) for n in (1, 2, 3)]
    summary: DeliverySummary = deliver_pending()
    assert (summary.digests, summary.carried) == (1, 3)
    assert summary.outcomes["sms"] == {"sent": 1}, "one SMS for three held messages"
    (digest,) = digest_rows(engine)
    assert digest.status == "sent"
    assert {r.status for r in rows(engine, ids).values()} == {"sent"}
