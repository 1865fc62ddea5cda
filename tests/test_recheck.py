"""Queued rows checked again before they are claimed (notify.recheck), on SQLite and PostgreSQL: an
SMS queued before its number was muted, or before the recipient turned SMS off, is never sent.
Real databases, the in-memory sender, fixed clocks; the deliver-pending flow and the commands at
the end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from flows.deliver import deliver_pending
from notify.actions.audit_trail import Actor
from notify.actions.suppressions import MuteRequest, MuteResult, UnmuteRequest, mute, unmute
from notify.audits.loops import Loop, mute_loops
from notify.db import Channel, DeliveryLog, Notification, Recipient, make_engine, transaction
from notify.digest import Gathered, follow_digests, gather_digests
from notify.due import has_work
from notify.fallback import FallbackPolicy
from notify.outbox import claim_due, mark_sending
from notify.recheck import Rechecked, recheck_queued
from notify.senders.memory import MemorySender
from notify.settings import Priority, Settings, load_settings
from notify.summaries import DeliverySummary
from notifyops.cli import main
from tests.test_digest import AFTER, QUIET, digest_rows, held, request, rows
from tests.test_dispatch import CATALOG, NOON, add_recipients, deliverer, tech

CAROL = Actor.from_cli("carol")
FALLBACK = FallbackPolicy.of(CATALOG)
PHONE = "+12065550001"  # tech(1)'s


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
        rechecked = recheck_queued(session.connection(), now=at, fallback=FALLBACK)
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
