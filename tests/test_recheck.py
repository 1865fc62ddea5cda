"""Queued rows checked again before they are claimed (notify.recheck), on SQLite and PostgreSQL: an
SMS queued before its number was muted, or before the recipient turned SMS off, is never sent; one
queued before a roster import changed the number goes to the new number. Real databases, the
in-memory sender, fixed clocks; the deliver-pending flow and the commands at the end."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from flows.deliver import deliver_pending
from notify.actions.audit_trail import Actor
from notify.actions.redrive import RedriveRequest, redrive
from notify.actions.suppressions import MuteRequest, MuteResult, UnmuteRequest, mute, unmute
from notify.audits.loops import Loop, mute_loops
from notify.db import Channel, DeliveryLog, Notification, Recipient, make_engine, transaction
from notify.digest import Gathered, follow_digests, gather_digests
from notify.due import has_work
from notify.enqueue import SendRequest, enqueue
from notify.errors import INVALID_PARAMETER, SMTP_TEMPORARY, SNS_THROTTLED, DeliveryError
from notify.fallback import FallbackPolicy
from notify.outbox import claim_due, mark_sending
from notify.recheck import Rechecked, hold_quiet_hours, recheck_imported, recheck_queued
from notify.recipients import upsert_recipients
from notify.roster import RecipientRow
from notify.senders.memory import MemorySender
from notify.settings import Priority, Settings, load_settings
from notify.summaries import DeliverySummary
from notifyops.cli import main
from tests.test_digest import AFTER, QUIET, digest_rows, held, request, rows, sms_fail
from tests.test_dispatch import (
    CATALOG,
    NOON,
    add_recipients,
    deliverer,
    tech,
    waits_for_an_advisory_lock,
)

CAROL = Actor.from_cli("carol")
FALLBACK = FallbackPolicy.of(CATALOG)
PHONE = "+12065550001"  # tech(1)'s
NEW_PHONE = "+12065559999"  # the number a re-imported roster gives tech(1)


def operator_mute(
    engine: Engine, to: str = "tech:1", *, apply: bool = True, at: datetime = NOON
) -> MuteResult:
    sms = MuteRequest(recipient=to, channel=Channel.sms, reason="stop now", hours=3)
    with transaction(engine) as session:
        return mute(
            session=session, request=sms, now=at, actor=CAROL, fallback=FALLBACK, apply=apply
        )


def loop_mute(engine: Engine, ids: list[int], to: str = "tech:1", at: datetime = NOON) -> None:
    """The mutes loop detection writes by itself (not the mute command), one per title of these
    rows: found at the next delivery."""
    loops = [
        Loop(
            recipient=to, channel="sms", title=title_of(engine, row_id), count=8, first_seen=at,
            last_seen=at, template_name="repair_assigned", flow_run_id=None, deployment_name=None,
            request_id=None, address_masked=None,
        )
        for row_id in ids
    ]  # fmt: skip
    with transaction(engine) as session:
        mute_loops(session=session, loops=loops, now=at, hours=24)


def prepare(engine: Engine, settings: Settings, at: datetime) -> tuple[Rechecked, Gathered]:
    """What a delivery run does before its first claim (tasks.dispatch.prepare_delivery)."""
    with transaction(engine) as session:
        rechecked = recheck_queued(
            session.connection(), now=at, fallback=FALLBACK, settings=settings
        )
    follow_digests(engine=engine, now=at)
    gathered = gather_digests(engine=engine, catalog=CATALOG, settings=settings, now=at)
    return rechecked, gathered


def deliver(engine: Engine, settings: Settings, at: datetime) -> MemorySender:
    """A delivery run at `at`: prepare, one batch, the carried rows follow."""
    prepare(engine, settings, at)
    sender = MemorySender()
    deliverer(engine, settings, sender, clock=lambda: at).deliver_batch()
    follow_digests(engine=engine, now=at)
    return sender


def by_channel(engine: Engine, to: str = "tech:1") -> dict[str, list[DeliveryLog]]:
    found: dict[str, list[DeliveryLog]] = {}
    with transaction(engine) as session:
        query = (
            select(DeliveryLog)
            .join(Notification, Notification.id == DeliveryLog.notification_id)
            .where(Notification.template_name != "digest")
            .order_by(DeliveryLog.id)
        )
        for row in session.scalars(query):
            found.setdefault(row.channel, []).append(row)
    return found


def urgent(engine: Engine, settings: Settings, to: str = "tech:1") -> int:
    """An urgent SMS (its quiet hours do not hold it), pending; its row id."""
    return request(engine, settings, "R-9", to=to, priority=Priority.urgent)


def title_of(engine: Engine, row_id: int) -> str:
    with transaction(engine) as session:
        query = (
            select(Notification.title)
            .join(DeliveryLog, DeliveryLog.notification_id == Notification.id)
            .where(DeliveryLog.id == row_id)
        )
        return str(session.scalars(query).one())


def test_sms_held_by_quiet_hours_then_muted_never_go_and_say_why(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET)])
    ids = held(engine, settings, 2)
    would = operator_mute(engine, apply=False)
    assert would.queued_skipped == 2 and {r.status for r in rows(engine, ids).values()} == {
        "pending"
    }, "a dry run counts and changes nothing"
    muted = operator_mute(engine)
    assert muted.queued_skipped == 2
    sender = deliver(engine, settings, AFTER)
    assert sender.sms == [] and digest_rows(engine) == [], "no digest of muted rows"
    number = muted.suppression.id
    for row in rows(engine, ids).values():
        assert row.status == "skipped" and row.next_attempt_at is None
        assert row.decision == (
            f"sms: muted after it was queued (suppression #{number}: "
            "stop now (muted by carol for tech:1))"
        )
    assert [r.status for r in by_channel(engine)["email"]] == ["sent", "sent"], (
        "an SMS mute leaves the email alone"
    )


def test_a_pending_urgent_sms_muted_before_delivery_is_skipped(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1)])
    sms_id = urgent(engine, settings)
    assert operator_mute(engine).queued_skipped == 1
    sender = deliver(engine, settings, NOON)
    assert sender.sms == [] and len(sender.emails) == 1
    assert rows(engine, [sms_id])[sms_id].status == "skipped"


def test_a_mute_skips_at_once_the_queued_sms_of_everyone_sharing_the_number(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1), tech(2, phone=PHONE), tech(3)])
    mine, shared, other = (urgent(engine, settings, to=f"tech:{n}") for n in (1, 2, 3))
    would = operator_mute(engine, apply=False)
    assert (would.queued_skipped, would.also_muted) == (2, ["tech:2"])
    muted = operator_mute(engine)
    assert muted.queued_skipped == 2, "tech:1's SMS and tech:2's, queued to the same number"
    found = rows(engine, [mine, shared, other])
    assert [found[i].status for i in (mine, shared, other)] == ["skipped", "skipped", "pending"]
    assert found[shared].decision.startswith("sms: muted after it was queued (suppression #")


def test_a_loop_mute_written_after_queueing_is_honoured_at_the_next_delivery(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET), tech(2, **QUIET)])
    ids = held(engine, settings, 2)
    other = held(engine, settings, 2, to="tech:2")
    pending = urgent(engine, settings)
    loop_mute(engine, [*ids, pending])
    rechecked, gathered = prepare(engine, settings, AFTER)
    assert rechecked == Rechecked(muted=3) and gathered == Gathered(digests=1, carried=2)
    for row in rows(engine, [*ids, pending]).values():
        assert row.status == "skipped"
        assert row.decision.startswith("sms: muted after it was queued (suppression #")
        assert "loop" in row.decision
    sender = MemorySender()
    deliverer(engine, settings, sender, clock=lambda: AFTER).deliver_batch()
    follow_digests(engine=engine, now=AFTER)
    assert [m.phone for m in sender.sms] == ["+12065550002"], "only tech:2's digest goes"
    assert {r.status for r in rows(engine, other).values()} == {"sent"}


def test_sms_turned_off_by_a_reimport_after_queueing_is_skipped(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET)])
    ids = [*held(engine, settings, 2), urgent(engine, settings)]
    add_recipients(engine, [tech(1, receive_sms=False, **QUIET)])
    rechecked, _ = prepare(engine, settings, AFTER)
    assert rechecked == Rechecked(turned_off=3)
    sender = deliver(engine, settings, AFTER)
    assert sender.sms == [] and len(sender.emails) == 3, "email is still on"
    for row in rows(engine, ids).values():
        assert row.status == "skipped"
        assert row.decision == "sms: turned off in preferences after it was queued"


def test_an_unmuted_or_never_muted_recipients_sms_still_goes(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET), tech(2, **QUIET)])
    ids = held(engine, settings, 2)
    loop_mute(engine, ids)
    lift = UnmuteRequest(recipient="tech:1", channel=Channel.sms, reason="fixed")
    with transaction(engine) as session:
        assert len(unmute(session=session, request=lift, now=NOON, actor=CAROL).lifted) == 2
    other = held(engine, settings, 2, to="tech:2")
    sender = deliver(engine, settings, AFTER)
    assert sorted(m.phone for m in sender.sms) == [PHONE, "+12065550002"]
    assert {r.status for r in rows(engine, [*ids, *other]).values()} == {"sent"}


def test_a_digest_muted_before_it_went_is_skipped_and_its_rows_follow(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET)])
    ids = held(engine, settings, 2)
    assert prepare(engine, settings, AFTER)[1] == Gathered(digests=1, carried=2)
    muted = operator_mute(engine, at=AFTER)
    assert muted.queued_skipped == 1, "the digest row, which carries the two"
    (digest,) = digest_rows(engine)
    assert digest.status == "skipped" and digest.decision.startswith(
        f"sms: muted after it was queued (suppression #{muted.suppression.id}"
    )
    with transaction(engine) as session:
        assert has_work(session=session, now=AFTER), "its rows are behind it"
    sender = deliver(engine, settings, AFTER)
    assert sender.sms == []
    for row in rows(engine, ids).values():
        assert (row.status, row.carried_by_id) == ("skipped", digest.id)
    with transaction(engine) as session:
        assert not has_work(session=session, now=AFTER)


def test_a_muted_sms_falls_back_to_email_as_it_would_at_enqueue(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, receive_email=False)])
    sms_id = urgent(engine, settings)
    would = operator_mute(engine, apply=False)
    assert (would.queued_skipped, would.fallbacks) == (1, 1), "a dry run counts the fallbacks too"
    assert [r.replaces_id for r in by_channel(engine)["email"]] == [None], "and makes none"
    assert rows(engine, [sms_id])[sms_id].status == "pending"
    muted = operator_mute(engine)
    assert (muted.queued_skipped, muted.fallbacks) == (1, 1)
    sender = deliver(engine, settings, NOON)
    assert sender.sms == [] and [m.to for m in sender.emails] == ["tech1@example.com"]
    (fallback,) = [r for r in by_channel(engine)["email"] if r.replaces_id == sms_id]
    assert fallback.status == "sent"
    assert fallback.decision == f"email: fallback for sms #{sms_id} (sms: number muted)"
    assert rows(engine, [sms_id])[sms_id].decision.endswith(f"; email fallback #{fallback.id}")


def test_a_loop_mute_makes_no_fallback_and_rows_in_flight_are_left_alone(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, receive_email=False), tech(2)])
    flying = urgent(engine, settings, to="tech:2")
    with transaction(engine) as session:
        claimed = claim_due(
            session=session, owner="w", limit=10, now=NOON, lease=timedelta(minutes=5)
        )
        assert flying in [r.id for r in claimed]
        mark_sending(session=session, owner="w", ids=[flying], now=NOON)
    sms_id = urgent(engine, settings)
    loop_mute(engine, [sms_id])
    loop_mute(engine, [flying], to="tech:2")
    assert prepare(engine, settings, NOON)[0] == Rechecked(muted=1)
    assert [r.replaces_id for r in by_channel(engine)["email"]] == [None, None]
    assert rows(engine, [flying])[flying].status == "sending", "in flight: not ours to change"


# --- a roster import that changes an address ------------------------------------------------


def reimport(engine: Engine, settings: Settings, *changed: RecipientRow) -> Rechecked:
    """What `recipients import` does with these rows: the upsert, then the queued rows."""
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=list(changed))
        conn = session.connection()
        return recheck_imported(conn, now=NOON, fallback=FALLBACK, settings=settings)


def test_a_send_stored_while_an_import_changes_the_number_goes_to_the_new_number(
    engine: Engine, settings: Settings
) -> None:
    """An import under way (its new number not committed yet): a send that starts meanwhile
    waits for it, then stores its SMS to the new number. Before, it read the old number and
    stored its rows after the import had moved the waiting ones: they went to the old number."""
    add_recipients(engine, [tech(1)])
    with ThreadPoolExecutor(1) as beside:
        with transaction(engine) as importing:
            upsert_recipients(session=importing, rows=[tech(1, phone=NEW_PHONE)])
            conn = importing.connection()
            recheck_imported(conn, now=NOON, fallback=FALLBACK, settings=settings)
            sending = beside.submit(urgent, engine, settings)
            waits_for_an_advisory_lock(engine, sending)
        row_id = sending.result(timeout=30)
    assert rows(engine, [row_id])[row_id].recipient_phone == NEW_PHONE
    assert [m.phone for m in deliver(engine, settings, NOON).sms] == [NEW_PHONE]


def test_an_import_during_a_send_moves_the_messages_the_send_is_storing(
    engine: Engine, settings: Settings
) -> None:
    """A send being stored (its rows not committed yet, with the number it read): an import that
    starts meanwhile waits for the store to commit, then moves those rows to the new number.
    Before, on PostgreSQL, the import moved the rows it could see (none) and the send's rows
    kept the old number."""
    add_recipients(engine, [tech(1)])
    sent = SendRequest(
        template="repair_assigned",
        to=("tech:1",),
        context={"repair_id": "R-7", "unit_number": "12"},
        priority=Priority.urgent,
    )
    with ThreadPoolExecutor(1) as beside:
        with transaction(engine) as storing:
            enqueue(session=storing, request=sent, catalog=CATALOG, settings=settings, now=NOON)
            importing = beside.submit(reimport, engine, settings, tech(1, phone=NEW_PHONE))
            waits_for_an_advisory_lock(engine, importing)
        assert importing.result(timeout=30) == Rechecked(readdressed=1)
    [sms] = by_channel(engine)["sms"]
    assert (sms.status, sms.recipient_phone) == ("pending", NEW_PHONE)


def test_sms_held_by_quiet_hours_go_to_the_number_a_reimport_gives(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET)])
    ids = held(engine, settings, 2)
    assert reimport(engine, settings, tech(1, phone=NEW_PHONE, **QUIET)) == Rechecked(
        readdressed=2
    ), "the two SMS; their emails go to the same address as before"
    sender = deliver(engine, settings, AFTER)
    assert [m.phone for m in sender.sms] == [NEW_PHONE], "their digest, to the new number only"
    assert [m.to for m in sender.emails] == ["tech1@example.com"] * 2
    for row in rows(engine, ids).values():
        assert (row.status, row.recipient_phone) == ("sent", NEW_PHONE)


DENVER_END = datetime(2026, 11, 30, 20, 30, tzinfo=UTC)  # 13:30 in Denver


def test_sms_held_by_quiet_hours_wait_for_the_end_of_the_window_in_a_new_time_zone(
    engine: Engine, settings: Settings
) -> None:
    """Held at 12:00 in Chicago to 13:30 Chicago (19:30 UTC); the recipient is re-imported in
    Denver, where it is 11:00. Before, the digest went at 19:30 UTC, 12:30 in Denver: inside the
    quiet hours the roster gives. Now the rows wait for 13:30 Denver, and say so."""
    add_recipients(engine, [tech(1, **QUIET)])
    ids = held(engine, settings, 2)
    moved = tech(1, timezone="America/Denver", **QUIET)
    assert reimport(engine, settings, moved) == Rechecked(rescheduled=2)
    for row in rows(engine, ids).values():
        assert row.next_attempt_at == DENVER_END
        assert row.decision == "sms: deferred to 13:30 America/Denver (quiet hours 11:00-13:30)"
    assert deliver(engine, settings, AFTER).sms == [], "12:31 in Denver"
    assert reimport(engine, settings, moved) == Rechecked(), "decided again: the same answer"
    [digest] = deliver(engine, settings, DENVER_END).sms
    assert digest.phone == PHONE
    assert {row.status for row in rows(engine, ids).values()} == {"sent"}


def test_sms_held_by_quiet_hours_go_at_once_when_a_reimport_ends_them(
    engine: Engine, settings: Settings
) -> None:
    """Re-imported in Los Angeles (10:00 there, before its 11:00-13:30) or without quiet hours:
    the held SMS are due at the import, as one digest, not at 13:30 Chicago."""
    add_recipients(engine, [tech(1, **QUIET)])
    ids = held(engine, settings, 2)
    assert reimport(engine, settings, tech(1, timezone="America/Los_Angeles", **QUIET)) == (
        Rechecked(rescheduled=2)
    )
    for row in rows(engine, ids).values():
        assert row.next_attempt_at == NOON
        assert row.decision == (
            "sms: deferred to 10:00 America/Los_Angeles (quiet hours 11:00-13:30 since a roster "
            "import; was to 13:30 America/Chicago)"
        )
    assert [m.phone for m in deliver(engine, settings, NOON).sms] == [PHONE], "one digest"
    assert {row.status for row in rows(engine, ids).values()} == {"sent"}
    add_recipients(engine, [tech(1, **QUIET)])
    ids = held(engine, settings, 1)
    assert reimport(engine, settings, tech(1)) == Rechecked(rescheduled=1)
    [row] = rows(engine, ids).values()
    assert (row.next_attempt_at, row.decision) == (
        NOON,
        "sms: deferred to 12:00 America/Chicago (quiet hours none since a roster import; was "
        "to 13:30 America/Chicago)",
    )


def test_a_retry_goes_to_the_new_number_and_a_row_in_flight_keeps_its_own(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, receive_email=False)])
    retry = urgent(engine, settings)
    busy = MemorySender(fail=sms_fail(DeliveryError(SMTP_TEMPORARY, "451 busy")))
    deliverer(engine, settings, busy).deliver_batch()
    flying = request(engine, settings, "R-8", priority=Priority.urgent)
    with transaction(engine) as session:
        claimed = claim_due(
            session=session, owner="w", limit=10, now=NOON, lease=timedelta(minutes=5)
        )
        assert [r.id for r in claimed] == [flying], "the retry is not due yet"
        mark_sending(session=session, owner="w", ids=[flying], now=NOON)
    assert reimport(engine, settings, tech(1, phone=NEW_PHONE, receive_email=False)) == (
        Rechecked(readdressed=1)
    )
    found = rows(engine, [retry, flying])
    assert (found[retry].status, found[retry].recipient_phone) == ("pending_retry", NEW_PHONE)
    assert (found[flying].status, found[flying].recipient_phone) == ("sending", PHONE), (
        "in flight: not ours to change"
    )
    due = found[retry].next_attempt_at
    assert due is not None
    sender = deliver(engine, settings, due + timedelta(seconds=1))
    assert [m.phone for m in sender.sms] == [NEW_PHONE]


def test_a_message_redriven_after_the_roster_fixed_its_number_goes_to_the_new_number(
    engine: Engine, settings: Settings
) -> None:
    """The runbook's way with a rejected number: fix the roster, re-import, redrive. The failed
    row keeps the number it failed on (the import moves queued rows only); once redriven it is
    queued again, and the delivery run sends it to the recipient's number as it is now."""
    add_recipients(engine, [tech(1, receive_email=False)])
    row_id = urgent(engine, settings)
    rejected = DeliveryError(INVALID_PARAMETER, "Invalid parameter: PhoneNumber")
    deliverer(engine, settings, MemorySender(fail=sms_fail(rejected))).deliver_batch()
    assert rows(engine, [row_id])[row_id].status == "failed_permanent"
    assert reimport(engine, settings, tech(1, phone=NEW_PHONE, receive_email=False)) == (
        Rechecked()
    ), "a final row is not the import's to move"
    with transaction(engine) as session:
        result = redrive(
            session=session,
            request=RedriveRequest(statuses=["failed_permanent"], error_codes=["InvalidParameter"]),
            now=NOON,
            actor=Actor(name="ops"),
            apply=True,
            catalog=CATALOG,
        )
    assert result.redriven == 1
    rechecked, _ = prepare(engine, settings, NOON + timedelta(minutes=1))
    assert rechecked == Rechecked(readdressed=1), "the delivery run moves it before its claim"
    sender = deliver(engine, settings, NOON + timedelta(minutes=1))
    assert [m.phone for m in sender.sms] == [NEW_PHONE]
    assert rows(engine, [row_id])[row_id].recipient_phone == NEW_PHONE


def test_an_address_a_reimport_removes_skips_its_queued_messages_and_says_why(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **QUIET), tech(2, **QUIET)])
    sms = [*held(engine, settings, 2), *held(engine, settings, 2, to="tech:2")]
    done = reimport(engine, settings, tech(1, phone=None, **QUIET), tech(2, email=None, **QUIET))
    assert done == Rechecked(unaddressed=4), "tech:1's two SMS, tech:2's two emails"
    found = rows(engine, sms)
    assert [found[i].decision for i in sms[:2]] == [
        "sms: phone number removed after it was queued"
    ] * 2
    assert {found[i].status for i in sms[:2]} == {"skipped"}
    emails = by_channel(engine)["email"][2:]  # tech:2's, stored after tech:1's
    assert [(r.status, r.decision) for r in emails] == [
        ("skipped", "email: email address removed after it was queued")
    ] * 2
    sender = deliver(engine, settings, AFTER)
    assert [m.phone for m in sender.sms] == ["+12065550002"], "tech:2's digest"
    assert [m.to for m in sender.emails] == ["tech1@example.com"] * 2


def test_a_new_number_that_is_muted_is_never_sent_to(engine: Engine, settings: Settings) -> None:
    add_recipients(engine, [tech(1, receive_email=False), tech(2, phone=NEW_PHONE)])
    sms_id = urgent(engine, settings)
    muted = operator_mute(engine, "tech:2")
    moved = reimport(engine, settings, tech(1, phone=NEW_PHONE, receive_email=False))
    assert moved == Rechecked(muted=1, fallbacks=1), "skipped, by email instead as enqueue would"
    row = rows(engine, [sms_id])[sms_id]
    assert (row.status, row.recipient_phone) == ("skipped", NEW_PHONE)
    assert row.decision.startswith(
        f"sms: muted after it was queued (suppression #{muted.suppression.id}: stop now"
    )
    sender = deliver(engine, settings, NOON)
    assert sender.sms == [] and [m.to for m in sender.emails] == ["tech1@example.com"]


def test_a_moved_sms_is_priced_for_its_new_number(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"sms_prices": {"GB": Decimal("0.0395")}})
    add_recipients(engine, [tech(1)])
    sms_id = urgent(engine, settings)
    before = rows(engine, [sms_id])[sms_id]
    assert before.segments == 1 and before.cost == settings.sms_price_usd
    reimport(engine, settings, tech(1, phone="+447400123456"))
    assert rows(engine, [sms_id])[sms_id].cost == Decimal("0.0395")


# --- the flow and the commands ---------------------------------------------------------------


def test_the_deliver_pending_flow_sends_none_of_a_muted_recipients_held_sms(
    flow_env: str,
) -> None:
    engine = make_engine(flow_env)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = (now - timedelta(hours=3)), (now - timedelta(hours=1))
    window = {"quiet_hours_start": f"{start:%H:%M}", "quiet_hours_end": f"{end:%H:%M}"}
    add_recipients(engine, [tech(n, timezone="UTC", **window) for n in (1, 2)])
    settings = load_settings(database_url=flow_env, sender="memory")
    muted = [request(engine, settings, f"R-{n}", at=now - timedelta(hours=2)) for n in (1, 2)]
    before = now - timedelta(hours=2)
    heard = [request(engine, settings, f"R-{n}", to="tech:2", at=before) for n in (1, 2)]
    loop_mute(engine, muted, at=now)
    summary: DeliverySummary = deliver_pending()
    assert (summary.digests, summary.carried) == (1, 2), "tech:2's two, not tech:1's"
    assert summary.outcomes["sms"] == {"sent": 1}
    assert {r.status for r in rows(engine, muted).values()} == {"skipped"}
    assert {r.status for r in rows(engine, heard).values()} == {"sent"}


def test_the_mute_and_import_commands_say_what_they_stopped(
    cli_env: str, engine: Engine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    add_recipients(engine, [tech(1, **QUIET), tech(2, **QUIET)])
    ids = held(engine, settings, 2)
    assert main(["recipients", "mute", "tech:1", "--channel", "sms", "--reason", "stop"]) == 0
    assert "2 queued message(s) skipped, never sent" in capsys.readouterr().out
    assert {r.status for r in rows(engine, ids).values()} == {"skipped"}
    others = held(engine, settings, 2, to="tech:2")
    roster = Path("roster.jsonl")  # in the working directory cli_env gives
    line = tech(2, receive_sms=False, **QUIET).as_values()
    roster.write_text(json.dumps(line) + "\n")
    assert main(["recipients", "import", str(roster), "--dry-run"]) == 0
    assert "2 queued message(s) would be skipped: their channel is now off" in (
        capsys.readouterr().out
    )
    assert {r.status for r in rows(engine, others).values()} == {"pending"}, "nothing written"
    with transaction(engine) as session:
        still = session.scalars(select(Recipient).where(Recipient.external_id == "tech:2")).one()
        assert still.receive_sms, "the dry run left the preference as it was"
    assert main(["recipients", "import", str(roster), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queued_skipped"] == 2
    assert main(["recipients", "import", str(roster)]) == 0
    printed = capsys.readouterr().out
    assert "2 queued message(s) skipped, never sent: their channel is now off" in printed
    assert {r.decision for r in rows(engine, others).values()} == {
        "sms: turned off in preferences after it was queued"
    }


def test_the_import_command_says_how_many_queued_messages_it_readdressed(
    cli_env: str, engine: Engine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    add_recipients(engine, [tech(1, **QUIET), tech(2, **QUIET)])
    ids = held(engine, settings, 2)
    others = held(engine, settings, 2, to="tech:2")
    roster = Path("roster.jsonl")  # in the working directory cli_env gives
    moved = tech(1, phone=NEW_PHONE, email="ana@example.com", **QUIET)
    roster.write_text(json.dumps(moved.as_values()) + "\n")
    assert main(["recipients", "import", str(roster), "--dry-run"]) == 0
    assert "4 queued message(s) would be re-addressed: they would go to the recipient's new" in (
        capsys.readouterr().out
    ), "two SMS, two emails"
    assert {r.recipient_phone for r in rows(engine, ids).values()} == {PHONE}, "nothing written"
    assert main(["recipients", "import", str(roster), "--dry-run", "--json"]) == 0
    would = json.loads(capsys.readouterr().out)
    assert (would["queued_readdressed"], would["queued_skipped"]) == (4, 0)
    assert main(["recipients", "import", str(roster)]) == 0
    assert "4 queued message(s) re-addressed: they go to the recipient's new phone number" in (
        capsys.readouterr().out
    )
    assert {r.recipient_phone for r in rows(engine, ids).values()} == {NEW_PHONE}
    assert [r.recipient_email for r in by_channel(engine)["email"]] == [
        "ana@example.com",
        "ana@example.com",
        "tech2@example.com",
        "tech2@example.com",
    ]
    assert {r.recipient_phone for r in rows(engine, others).values()} == {"+12065550002"}
    assert main(["recipients", "import", str(roster), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["queued_readdressed"], again["queued_skipped"]) == (0, 0), "already there"


NIGHT = {"quiet_hours_start": "22:00", "quiet_hours_end": "07:00"}
EVENING = datetime(2026, 12, 1, 3, 59, tzinfo=UTC)  # 21:59 in Chicago: outside 22:00-07:00
LATE = datetime(2026, 12, 1, 4, 30, tzinfo=UTC)  # 22:30 in Chicago: inside
MORNING = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)  # 07:00 in Chicago: the window's end
HELD_TO_MORNING = "sms: deferred to 07:00 America/Chicago (quiet hours 22:00-07:00)"


def test_an_sms_decided_send_that_waits_into_quiet_hours_is_held_to_the_windows_end(
    engine: Engine, settings: Settings
) -> None:
    """Stored at 21:59 in Chicago (`sms: send`), delivered at 22:30: before, the SMS went inside
    the recipient's quiet hours. It now waits for 07:00, as a deferral; its email goes."""
    add_recipients(engine, [tech(1, **NIGHT)])
    sms = request(engine, settings, "R-1", at=EVENING)
    assert rows(engine, [sms])[sms].decision == "sms: send"
    rechecked, _ = prepare(engine, settings, LATE)
    assert rechecked == Rechecked(held=1)
    sender = deliver(engine, settings, LATE)
    assert sender.sms == [] and [m.to for m in sender.emails] == ["tech1@example.com"], (
        "email has no quiet hours"
    )
    row = rows(engine, [sms])[sms]
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, MORNING)
    assert row.decision == HELD_TO_MORNING
    assert deliver(engine, settings, MORNING - timedelta(seconds=1)).sms == []
    assert [m.phone for m in deliver(engine, settings, MORNING).sms] == [PHONE]
    assert deliver(engine, settings, MORNING + timedelta(hours=1)).sms == [], "once"
    assert rows(engine, [sms])[sms].status == "sent"


def failed_at_evening(engine: Engine, settings: Settings, error: DeliveryError) -> DeliveryLog:
    """tech:1 (SMS only, quiet hours 22:00-07:00 in Chicago) sent an SMS at 21:59 that failed
    with `error`; its row after that attempt."""
    add_recipients(engine, [tech(1, receive_email=False, **NIGHT)])
    sms = request(engine, settings, "R-1", at=EVENING)
    busy = MemorySender(fail=sms_fail(error))
    deliverer(engine, settings, busy, clock=lambda: EVENING).deliver_batch()
    return rows(engine, [sms])[sms]


def test_a_retry_due_inside_quiet_hours_is_held_and_keeps_its_attempts(
    engine: Engine, settings: Settings
) -> None:
    tried = failed_at_evening(engine, settings, DeliveryError(SMTP_TEMPORARY, "451 busy"))
    sms = tried.id
    assert (tried.status, tried.attempts) == ("pending_retry", 1)
    assert tried.next_attempt_at is not None and tried.next_attempt_at < LATE
    assert prepare(engine, settings, LATE)[0] == Rechecked(held=1)
    row = rows(engine, [sms])[sms]
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending_retry", 1, MORNING)
    assert row.decision == f"{tried.decision} | held by quiet hours until 07:00 America/Chicago"
    assert deliver(engine, settings, LATE).sms == []
    assert [m.phone for m in deliver(engine, settings, MORNING).sms] == [PHONE]
    assert rows(engine, [sms])[sms].status == "sent"


def test_a_retry_the_provider_failed_joins_the_digest_of_the_window(
    engine: Engine, settings: Settings
) -> None:
    """Throttled at 21:59 (the provider's failure: no attempt counted, `pending_retry`), then
    held by quiet hours: before, it kept `pending_retry`, which no digest gathers, and went alone
    at 07:00 beside the digest of the night's other SMS, two texts where one was due."""
    assert settings.quiet_hours_digest
    tried = failed_at_evening(engine, settings, DeliveryError(SNS_THROTTLED, "Rate exceeded"))
    throttled = tried.id
    assert (tried.status, tried.attempts) == ("pending_retry", 0)
    later = request(engine, settings, "R-2", at=LATE - timedelta(minutes=5))
    assert prepare(engine, settings, LATE)[0] == Rechecked(held=1)
    row = rows(engine, [throttled])[throttled]
    assert (row.status, row.next_attempt_at, row.decision) == ("pending", MORNING, HELD_TO_MORNING)
    [digest] = deliver(engine, settings, MORNING).sms
    assert digest.phone == PHONE
    assert digest_rows(engine)[0].decision == f"sms: digest of 2 rows: #{throttled},#{later}"


def test_urgent_sms_email_and_recipients_without_quiet_hours_are_not_held(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1, **NIGHT), tech(2)])
    held_back = request(engine, settings, "R-1", at=EVENING)
    alarm = request(engine, settings, "R-2", priority=Priority.urgent, at=EVENING)
    free = request(engine, settings, "R-3", to="tech:2", at=EVENING)
    sender = deliver(engine, settings, LATE)
    assert sorted(m.phone for m in sender.sms) == [PHONE, "+12065550002"], (
        "the urgent one, and tech:2's, who has no quiet hours"
    )
    assert len(sender.emails) == 3, "no email is held"
    found = rows(engine, [held_back, alarm, free])
    assert (found[held_back].status, found[held_back].next_attempt_at) == ("pending", MORNING)
    assert (found[alarm].status, found[free].status) == ("sent", "sent")


class PacedClock:
    """A batch's clock that each SMS sent moves on by `step` (SMS paced, as SNS's rate does)."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        return self.now

    def sent(self, message: object) -> None:
        self.now += self.step


def test_a_long_batch_holds_an_sms_whose_quiet_hours_begin_while_it_sends(
    engine: Engine, settings: Settings
) -> None:
    """The run starts at 21:59 in Chicago, before tech:1's 22:00-07:00 window, and its batch
    sends seven SMS 20 s apart (paced). Before, tech:1's SMS, the last due, went at 22:00:40,
    inside the window: only the run's own check, at 21:59, looked at quiet hours. The batch now
    holds them again before it claims more (every QUIET_RECHECK_S of its clock)."""
    add_recipients(engine, [tech(1, receive_email=False, **NIGHT), tech(2, receive_email=False)])
    others = [request(engine, settings, f"R-{n}", to="tech:2", at=EVENING) for n in range(6)]
    last = request(engine, settings, "R-9", at=EVENING)
    assert rows(engine, [last])[last].decision == "sms: send", "decided before the window"
    paced = settings.model_copy(update={"send_concurrency": 1, "send_window": 2})
    clock = PacedClock(EVENING, timedelta(seconds=20))
    sender = MemorySender(fail=lambda message: clock.sent(message))
    report = deliverer(engine, paced, sender, clock=clock).deliver_batch()
    assert [m.phone for m in sender.sms] == ["+12065550002"] * 6, "tech:2 has no quiet hours"
    assert report.held_quiet == 1 and report.claimed == 6
    row = rows(engine, [last])[last]
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, MORNING)
    assert row.decision == HELD_TO_MORNING, "a deferral: it joins the digest at 07:00"
    assert {r.status for r in rows(engine, others).values()} == {"sent"}


def test_a_batch_leaves_the_quiet_hold_to_another_already_holding(
    engine: Engine, settings: Settings
) -> None:
    """PostgreSQL: two holds over the same rows at once could deadlock; a batch's hold finding
    another under way (a run's recheck, another batch) holds nothing and does not wait."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: holds cannot overlap")
    add_recipients(engine, [tech(1, **NIGHT)])
    sms = request(engine, settings, "R-1", at=EVENING)
    with engine.connect() as first, engine.connect() as second:
        assert hold_quiet_hours(first, now=LATE) == 1  # uncommitted: its turn is still on
        assert hold_quiet_hours(second, now=LATE, wait=False) == 0
        second.rollback()
        first.commit()
        assert hold_quiet_hours(second, now=LATE, wait=False) == 0, "already held"
        second.commit()
    assert rows(engine, [sms])[sms].next_attempt_at == MORNING


def test_an_sms_held_at_delivery_and_one_held_at_enqueue_go_as_one_digest(
    engine: Engine, settings: Settings
) -> None:
    assert settings.quiet_hours_digest
    add_recipients(engine, [tech(1, **NIGHT)])
    first = request(engine, settings, "R-1", at=EVENING)
    second = request(engine, settings, "R-2", at=LATE - timedelta(minutes=5))
    assert rows(engine, [second])[second].decision == HELD_TO_MORNING, "held at enqueue"
    assert deliver(engine, settings, LATE).sms == []
    [digest] = deliver(engine, settings, MORNING).sms
    assert digest.phone == PHONE
    [row] = digest_rows(engine)
    assert row.decision == f"sms: digest of 2 rows: #{first},#{second}"
    assert {r.status for r in rows(engine, [first, second]).values()} == {"sent"}


def test_a_window_ending_in_the_spring_forward_gap_holds_to_a_real_instant(
    engine: Engine, settings: Settings
) -> None:
    """Quiet hours 22:00-02:30 in Chicago on 2026-03-08, when 02:00 jumps to 03:00: 02:30 never
    happens that night, the SMS goes at the change (03:00 CDT, 08:00 UTC)."""
    add_recipients(engine, [tech(1, quiet_hours_start="22:00", quiet_hours_end="02:30")])
    evening = datetime(2026, 3, 8, 3, 59, tzinfo=UTC)  # 21:59 CST on 7 March
    change = datetime(2026, 3, 8, 8, 0, tzinfo=UTC)  # 03:00 CDT
    sms = request(engine, settings, "R-1", at=evening)
    assert deliver(engine, settings, evening + timedelta(minutes=31)).sms == []
    row = rows(engine, [sms])[sms]
    assert (row.next_attempt_at, row.decision) == (
        change,
        "sms: deferred to 03:00 America/Chicago (quiet hours 22:00-02:30)",
    )
    assert deliver(engine, settings, change - timedelta(seconds=1)).sms == []
    assert [m.phone for m in deliver(engine, settings, change).sms] == [PHONE]


def test_the_deliver_pending_flow_holds_an_sms_that_waited_into_quiet_hours(
    flow_env: str,
) -> None:
    engine = make_engine(flow_env)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    window = {"quiet_hours_start": f"{start:%H:%M}", "quiet_hours_end": f"{end:%H:%M}"}
    add_recipients(engine, [tech(1, timezone="UTC", **window)])
    settings = load_settings(database_url=flow_env, sender="memory")
    sms = request(engine, settings, "R-1", at=now - timedelta(hours=2))  # before the window
    assert rows(engine, [sms])[sms].decision == "sms: send"
    summary: DeliverySummary = deliver_pending()
    assert "sms" not in summary.outcomes and summary.outcomes["email"] == {"sent": 1}
    assert summary.held_quiet == 1
    row = rows(engine, [sms])[sms]
    assert (row.status, row.next_attempt_at) == ("pending", end)
