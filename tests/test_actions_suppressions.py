"""Mute, unmute and the suppressions list (runbook section 2): the same records loop detection
writes, honoured by the enqueue policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from notify.actions.audit_trail import Actor, recent_actions
from notify.actions.suppressions import (
    MuteRequest,
    UnmuteRequest,
    list_suppressions,
    mute,
    unmute,
)
from notify.audits.loops import Loop, LoopReport, mute_loops
from notify.bootstrap import Runtime
from notify.checks import mute_detected_loops
from notify.db import Channel, Suppression, transaction, utcnow
from notify.errors import InputError
from notify.fallback import FallbackPolicy
from notify.settings import Priority, Settings
from tests.test_dispatch import CATALOG, NOON, add_recipients, send, statuses, tech

CAROL = Actor.from_cli("carol")
FALLBACK = FallbackPolicy.of(CATALOG)
PHONE = "+12065550001"  # tech(1)'s


def muted(engine: Engine, **fields: object) -> object:
    request = MuteRequest(**{"recipient": "tech:1", "channel": "sms", "reason": "loop"} | fields)  # type: ignore[arg-type]
    with transaction(engine) as session:
        return mute(session=session, request=request, now=NOON, actor=CAROL, fallback=FALLBACK)


def unmuted(engine: Engine, at: object = NOON, **fields: object) -> object:
    request = UnmuteRequest(**{"recipient": "tech:1"} | fields)  # type: ignore[arg-type]
    with transaction(engine) as session:
        return unmute(session=session, request=request, now=at, actor=CAROL)  # type: ignore[arg-type]


def sms_statuses(engine: Engine) -> dict[str, int]:
    return {s: n for (c, s), n in statuses(engine).items() if c == "sms"}


def test_a_muted_channel_is_skipped_by_the_policy_until_unmuted(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1)])
    result = muted(engine, hours=24)
    assert result.created and result.suppression.until == NOON + timedelta(hours=24)  # type: ignore[attr-defined]
    send(engine, settings, ["tech:1"], priority=Priority.high)
    assert sms_statuses(engine) == {"skipped": 1}
    assert statuses(engine)[("email", "pending")] == 1, "only the muted channel is skipped"
    lifted = unmuted(engine, channel="sms", reason="fixed")
    assert len(lifted.lifted) == 1  # type: ignore[attr-defined]
    send(engine, settings, ["tech:1"], priority=Priority.high, idempotency_key="after")
    assert sms_statuses(engine) == {"skipped": 1, "pending": 1}


def test_a_dry_run_says_what_would_change_and_changes_nothing(engine: Engine) -> None:
    add_recipients(engine, [tech(1)])
    request = MuteRequest(recipient="tech:1", channel=Channel.sms, reason="check")
    with transaction(engine) as session:
        would = mute(
            session=session, request=request, now=NOON, actor=CAROL, fallback=FALLBACK, apply=False
        )
        assert (would.created, would.applied, would.suppression.id) == (True, False, None)
        assert list_suppressions(session=session, now=NOON) == []
    muted(engine)
    with transaction(engine) as session:
        lift = UnmuteRequest(recipient="tech:1")
        listed = unmute(session=session, request=lift, now=NOON, actor=CAROL, apply=False)
        assert [s.active for s in listed.lifted] == [True]
        assert len(list_suppressions(session=session, now=NOON)) == 1


def test_a_mute_whose_title_a_form_sent_empty_mutes_every_title(
    engine: Engine, settings: Settings
) -> None:
    """The Prefect form sends the optional title left empty as "": the mute was stored for the
    title "", which no notification has, so it said the channel was muted and stopped nothing;
    unmuting with the title left empty lifted nothing."""
    add_recipients(engine, [tech(1)])
    assert muted(engine, title="").suppression.title is None  # type: ignore[attr-defined]
    send(engine, settings, ["tech:1"], priority=Priority.high)
    assert sms_statuses(engine) == {"skipped": 1}
    assert len(unmuted(engine, title="", channel="sms").lifted) == 1  # type: ignore[attr-defined]


def test_muting_again_adds_nothing_and_nothing_is_ever_deleted(engine: Engine) -> None:
    add_recipients(engine, [tech(1)])
    muted(engine, hours=24)
    again = muted(engine, hours=12)
    assert again.created is False  # type: ignore[attr-defined]
    unmuted(engine)
    with transaction(engine) as session:
        rows = session.scalars(select(Suppression)).all()
        assert session.scalar(select(func.count()).select_from(Suppression)) == 1
    assert rows[0].until == NOON and "unmuted by carol" in rows[0].reason
    assert unmuted(engine).lifted == []  # type: ignore[attr-defined]


def test_loop_mutes_are_the_same_records_listed_and_lifted(engine: Engine) -> None:
    add_recipients(engine, [tech(1), tech(2)])
    loop = Loop(
        recipient="tech:1", channel="sms", title="Unit 12 ready", count=8,
        first_seen=NOON, last_seen=NOON, template_name="repair_assigned",
        flow_run_id=None, deployment_name=None, request_id=None, address_masked=None,
    )  # fmt: skip
    with transaction(engine) as session:
        mute_loops(session=session, loops=[loop], now=NOON, hours=24)
    muted(engine, recipient="tech:2", channel="email", reason="bounces")
    with transaction(engine) as session:
        active = list_suppressions(session=session, now=NOON)
    assert [(s.recipients, s.channel, s.title) for s in active] == [
        (["tech:2"], "email", None),
        (["tech:1"], "sms", "Unit 12 ready"),
    ]
    assert active[1].address_masked != PHONE
    assert len(unmuted(engine, title="Unit 12 ready").lifted) == 1  # type: ignore[attr-defined]
    with transaction(engine) as session:
        now_active = list_suppressions(session=session, now=NOON)
        history = list_suppressions(
            session=session, now=NOON, recipient="tech:1", include_expired=True
        )
        sms_only = list_suppressions(session=session, now=NOON, channel=Channel.sms)
    assert [s.recipients for s in now_active] == [["tech:2"]]
    assert [(s.title, s.active) for s in history] == [("Unit 12 ready", False)]
    assert sms_only == []


def test_a_recipient_without_that_address_or_unknown_is_refused(engine: Engine) -> None:
    add_recipients(engine, [tech(1, phone=None, receive_sms=False)])
    with pytest.raises(InputError, match="no phone number"):
        muted(engine)
    with pytest.raises(InputError, match="not known"):
        muted(engine, recipient="tech:404")


def _loop(last_seen: object) -> Loop:
    return Loop(
        recipient="tech:1", channel="sms", title="Unit 12 ready", count=8,
        first_seen=last_seen, last_seen=last_seen, template_name="repair_assigned",
        flow_run_id=None, deployment_name=None, request_id=None, address_masked=None,
    )  # fmt: skip


def _report(loop: Loop) -> LoopReport:
    now = utcnow()
    return LoopReport(
        as_of=now, window_start=now - timedelta(hours=24),
        window_hours=24.0, severity="P2", threshold=5, auto_mute=True, loops=(loop,),
    )  # fmt: skip


def test_a_lifted_loop_mute_stays_lifted_until_the_loop_sends_again(
    engine: Engine, settings: Settings
) -> None:
    """An operator's unmute is not undone by the next loop-detection run over the same messages;
    a message after the lift mutes the loop again. Each automatic mute is in the audit trail."""
    add_recipients(engine, [tech(1)])
    here = Runtime(settings, engine=engine)
    before = utcnow() - timedelta(minutes=30)
    first = mute_detected_loops(runtime=here, report=_report(_loop(before)))
    assert [m.created for m in first.muted] == [True]
    lift = UnmuteRequest(recipient="tech:1", channel=Channel.sms, reason="loop fixed")
    with transaction(engine) as session:
        assert len(unmute(session=session, request=lift, now=utcnow(), actor=CAROL).lifted) == 1
    same_messages = mute_detected_loops(runtime=here, report=_report(_loop(before)))
    assert same_messages.muted == (), "lifted: nothing mutes the loop now"
    with transaction(engine) as session:
        assert list_suppressions(session=session, now=utcnow()) == [], "the lift holds"
    later = utcnow() + timedelta(seconds=1)
    again = mute_detected_loops(runtime=here, report=_report(_loop(later)))
    assert [m.created for m in again.muted] == [True]
    with transaction(engine) as session:
        assert len(list_suppressions(session=session, now=utcnow())) == 1
        trail = recent_actions(session=session, action="mute")
    assert [(a.actor, a.counts["created"], a.counts["recipients"]) for a in trail] == [
        ("loop-detection", 1, ["tech:1"]),
        ("loop-detection", 1, ["tech:1"]),
    ]


def test_muting_a_shared_number_says_who_else_it_mutes_and_unmuting_says_whom_it_lifts(
    engine: Engine, settings: Settings
) -> None:
    """A suppression is of the number (as SNS opt-outs are): muting A mutes B, who has the same
    phone; the result names B, and unmuting B names A, whose mute it lifts."""
    add_recipients(engine, [tech(1), tech(2, phone=PHONE), tech(3)])
    result = muted(engine, recipient="tech:1", reason="only A")
    assert result.suppression.recipients == ["tech:1", "tech:2"]  # type: ignore[attr-defined]
    assert result.also_muted == ["tech:2"]  # type: ignore[attr-defined]
    assert "for tech:1" in result.suppression.reason  # type: ignore[attr-defined]
    send(engine, settings, ["tech:1", "tech:2", "tech:3"], priority=Priority.high)
    assert sms_statuses(engine) == {"skipped": 2, "pending": 1}, "what the result said"
    again = muted(engine, recipient="tech:2", reason="B too")
    assert (again.created, again.also_muted) == (False, ["tech:1"])  # type: ignore[attr-defined]
    lifted = unmuted(engine, recipient="tech:2", channel="sms")
    assert lifted.also_unmuted == ["tech:1"]  # type: ignore[attr-defined]
    assert [s.recipients for s in lifted.lifted] == [["tech:1", "tech:2"]]  # type: ignore[attr-defined]
    alone = muted(engine, recipient="tech:3", reason="only C")
    assert (alone.suppression.recipients, alone.also_muted) == (["tech:3"], [])  # type: ignore[attr-defined]
