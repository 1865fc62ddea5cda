"""Fallbacks: SES API -> SES SMTP failover and SMS -> email, each message sent once in total.

The SES API is a fault-injecting stand-in (refuses while "down" on a test clock, or answers
`maybe_sent`); SES SMTP is a real aiosmtpd server; the deliverer runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from notify.bootstrap import Runtime
from notify.db import DeliveryLog, Status, Suppression, transaction
from notify.delivery import Deliverer
from notify.errors import (
    INVALID_PHONE,
    MAYBE_SENT,
    PROVIDER_UNAVAILABLE,
    RATE_EXCEEDED,
    DeliveryError,
    ErrorKind,
)
from notify.fallback import SMS_SUPPRESSED, SMTP_NOTE, FallbackPolicy, MarkMemory, make_fallbacks
from notify.pacing import Unpaced
from notify.senders import Senders
from notify.senders.base import EmailSender, OutgoingEmail
from notify.senders.failover import FailoverEmailSender
from notify.senders.memory import MemorySender, Outgoing
from notify.settings import Priority, Settings, load_settings
from tests.aws_fixtures import SmtpServer, SmtpServerFactory
from tests.test_dispatch import CATALOG, NOON, add_recipients, decisions, send, statuses, tech
from tests.test_senders import smtp_sender

POLICY = FallbackPolicy.of(CATALOG)
PHONE = "+12065550001"  # tech(1)'s number


class Clock:
    """A test clock both the deliverer and the failover read; tests move it."""

    def __init__(self, now: datetime = NOON) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FlakyApi(MemorySender):
    """The SES API stand-in: answers `error` (a throttle, a 5xx, a read timeout) while the clock
    is before `down_until`; sends (records) otherwise."""

    def __init__(self, clock: Clock, kind: ErrorKind, down_until: datetime) -> None:
        super().__init__(fail=self._refuse)
        self.clock, self.kind, self.down_until = clock, kind, down_until

    def _refuse(self, message: Outgoing) -> DeliveryError | None:
        return DeliveryError(self.kind) if self.clock() < self.down_until else None


def deliverer(
    engine: Engine,
    settings: Settings,
    *,
    email: EmailSender,
    sms: MemorySender | None = None,
    clock: Callable[[], datetime] = lambda: NOON,
    fallback: FallbackPolicy | None = POLICY,
) -> Deliverer:
    return Deliverer(
        engine=engine,
        senders=Senders(email=email, sms=sms or MemorySender()),
        settings=settings,
        owner="fallback-test",
        clock=clock,
        pacers={"email": Unpaced(), "sms": Unpaced()},
        rng=random.Random(7),
        fallback=fallback,
    )


def failover(api: EmailSender, smtp: EmailSender, clock: Clock, **memory: Any) -> EmailSender:
    return FailoverEmailSender(
        api,
        smtp,
        after=timedelta(seconds=60),
        probe_every=timedelta(seconds=30),
        clock=clock,
        **memory,
    )


def smtp_ids(server: SmtpServer) -> list[int]:
    """The delivery ids the SMTP server accepted (our tag on every send)."""
    return [int(str(m["X-SES-MESSAGE-TAGS"]).split("=")[1]) for m in server.messages]


def email_rows(engine: Engine) -> list[Any]:
    with transaction(engine) as session:
        query = (
            select(DeliveryLog)
            .where(DeliveryLog.channel == "email", DeliveryLog.status != "skipped")
            .order_by(DeliveryLog.id)
        )
        rows = list(session.scalars(query))
        session.expunge_all()
    return rows


def emails_to(engine: Engine, settings: Settings, first: int, count: int) -> None:
    people = [tech(n, receive_sms=False) for n in range(first, first + count)]
    add_recipients(engine, people)
    send(engine, settings, [p.external_id for p in people])


@pytest.fixture
def smtp_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"send_concurrency": 1, "breaker_failures": 3})


# --- SES API -> SES SMTP --------------------------------------------------------------------------


class Outage(NamedTuple):
    clock: Clock
    server: SmtpServer
    api: FlakyApi
    email: EmailSender


def api_outage(smtp_server: SmtpServerFactory, kind: ErrorKind) -> Outage:
    """An SES API stand-in that refuses (`kind`) for its first 100 s, a real SMTP server, and
    the failover sender over both, on one test clock."""
    clock = Clock()
    server = smtp_server()
    api = FlakyApi(clock, kind, down_until=NOON + timedelta(seconds=100))
    return Outage(clock, server, api, failover(api, smtp_sender(server), clock))


@pytest.mark.parametrize("kind", [RATE_EXCEEDED, PROVIDER_UNAVAILABLE], ids=["throttled", "5xx"])
def test_email_fails_over_to_smtp_after_the_set_time_and_back_once_the_api_recovers(
    engine: Engine,
    smtp_settings: Settings,
    smtp_server: SmtpServerFactory,
    kind: ErrorKind,
) -> None:
    clock, server, api, email = api_outage(smtp_server, kind)
    emails_to(engine, smtp_settings, 0, 20)

    # The API refuses: the circuit opens after 3 refusals, nothing is sent, nothing counted.
    first = deliverer(engine, smtp_settings, email=email, clock=clock).deliver_batch()
    assert first.stopped and "circuit open" in first.stopped
    assert not api.emails and not server.messages
    assert {r.status for r in email_rows(engine)} <= {"pending", "pending_retry"}
    assert {r.attempts for r in email_rows(engine)} == {0}

    # 61 s later the API still refuses: the refused message and the rest go through SMTP.
    clock.advance(61)
    second = deliverer(engine, smtp_settings, email=email, clock=clock).deliver_batch()
    assert second.outcomes == {("email", "sent"): 20} and not second.stopped
    assert not api.emails and len(server.messages) == 20

    # The API is back: the first send after the probe interval goes to the API, and so does
    # everything after it.
    emails_to(engine, smtp_settings, 20, 10)
    clock.advance(40)
    third = deliverer(engine, smtp_settings, email=email, clock=clock).deliver_batch()
    assert third.outcomes == {("email", "sent"): 10}
    assert len(api.emails) == 10 and len(server.messages) == 20

    rows = email_rows(engine)
    via_api = [m.delivery_id for m in api.emails]
    sent_ids = Counter(via_api + smtp_ids(server))
    assert sorted(sent_ids) == [r.id for r in rows]
    assert set(sent_ids.values()) == {1}, "each message was sent exactly once, on one path"
    assert all(r.status == "sent" and r.attempts == 1 for r in rows)
    smtp_rows = {r.id for r in rows if SMTP_NOTE in r.decision}
    assert smtp_rows == set(smtp_ids(server)), "the decision says which path sent the row"
    assert api.failures, "the API stand-in was asked, and refused, before the failover"


def test_a_message_the_api_may_have_accepted_is_never_resent_through_smtp(
    engine: Engine, smtp_settings: Settings, smtp_server: SmtpServerFactory
) -> None:
    clock, server, api, email = api_outage(smtp_server, RATE_EXCEEDED)
    emails_to(engine, smtp_settings, 0, 4)
    deliverer(engine, smtp_settings, email=email, clock=clock).deliver_batch()
    clock.advance(61)
    deliverer(engine, smtp_settings, email=email, clock=clock).deliver_batch()
    assert len(server.messages) == 4

    # At the next probe the API times out after the request was written: the row is unknown,
    # SMTP never sees it; the others keep going through SMTP.
    api.kind, api.down_until = MAYBE_SENT, NOON + timedelta(days=1)
    emails_to(engine, smtp_settings, 4, 3)
    clock.advance(40)
    report = deliverer(engine, smtp_settings, email=email, clock=clock).deliver_batch()
    assert report.outcomes == {("email", "unknown"): 1, ("email", "sent"): 2}
    unknown = [r.id for r in email_rows(engine) if r.status == "unknown"]
    assert len(unknown) == 1 and unknown[0] not in smtp_ids(server)
    assert len(server.messages) == 6 and not api.emails


def test_the_failover_clock_is_kept_in_the_database_for_the_next_process(
    engine: Engine, smtp_settings: Settings
) -> None:
    clock = Clock()
    api, smtp = FlakyApi(clock, RATE_EXCEEDED, NOON + timedelta(hours=1)), MemorySender()
    emails_to(engine, smtp_settings, 0, 3)
    one = failover(api, smtp, clock, memory=MarkMemory(lambda: engine))
    deliverer(engine, smtp_settings, email=one, clock=clock).deliver_batch()
    assert not smtp.emails

    clock.advance(61)  # a new process: a new sender, the same database
    two = failover(api, smtp, clock, memory=MarkMemory(lambda: engine))
    report = deliverer(engine, smtp_settings, email=two, clock=clock).deliver_batch()
    assert report.outcomes == {("email", "sent"): 3} and len(smtp.emails) == 3

    three = failover(api, MemorySender(), clock, memory=MarkMemory(lambda: engine))
    assert isinstance(three, FailoverEmailSender) and three.on_smtp


def test_the_runtime_builds_the_failover_only_when_smtp_is_configured(db_url: str) -> None:
    clients = {"sesv2": object(), "sns": object()}
    base = {"database_url": db_url, "sender": "aws"}
    cases = [
        ({}, False),
        ({"smtp_username": "user", "smtp_password": "secret"}, True),
        ({"smtp_username": "user", "smtp_password": "secret", "email_failover_after_s": 0}, False),
    ]
    for extra, expected in cases:
        runtime = Runtime(load_settings(**base, **extra), clients=clients)
        assert isinstance(runtime.senders().email, FailoverEmailSender) is expected, extra
        runtime.close()


# --- SMS -> email ---------------------------------------------------------------------------------


def bad_phone(message: Outgoing) -> DeliveryError:
    return DeliveryError(INVALID_PHONE, "Invalid parameter: PhoneNumber")


def sms_only(engine: Engine, settings: Settings, **changes: Any) -> None:
    """tech:1 takes SMS only (email off in preferences) but has an address on file."""
    add_recipients(engine, [tech(1, receive_email=False, **changes)])
    send(engine, settings, ["tech:1"], priority=Priority.high)


def rows(engine: Engine) -> list[Any]:
    with transaction(engine) as session:
        found = list(session.scalars(select(DeliveryLog).order_by(DeliveryLog.id)))
        session.expunge_all()
    return found


def test_a_permanently_failed_sms_becomes_one_email_sent_once(
    engine: Engine, settings: Settings
) -> None:
    sms_only(engine, settings)
    email, sms = MemorySender(), MemorySender(fail=bad_phone)
    run = deliverer(engine, settings, email=email, sms=sms)
    assert run.deliver_batch().outcomes == {("sms", "failed_permanent"): 1}
    run.deliver_batch()
    run.deliver_batch()  # again: nothing new is made or sent

    original_email, failed_sms, fallback = rows(engine)
    assert (failed_sms.channel, failed_sms.status) == ("sms", "failed_permanent")
    assert (original_email.status, original_email.decision) == (
        "skipped",
        "email: off in preferences",
    )
    assert (fallback.channel, fallback.status) == ("email", "sent")
    assert fallback.replaces_id == failed_sms.id
    assert fallback.decision == (
        f"email: fallback for sms #{failed_sms.id} (sms failed permanently: InvalidParameter)"
    )
    assert failed_sms.decision.endswith(f"; email fallback #{fallback.id}")
    assert [m.delivery_id for m in email.emails] == [fallback.id]
    assert email.emails[0].to == "tech1@example.com"

    # The same SMS failing again (a redrive) makes no second fallback.
    with engine.connect() as conn:
        again = make_fallbacks(
            conn, {failed_sms.id: "again"}, status=Status.failed_permanent, policy=POLICY, now=NOON
        )
        conn.commit()
    assert again == [] and len(rows(engine)) == 3


def test_an_opt_out_makes_no_fallback(engine: Engine, settings: Settings) -> None:
    sms_only(engine, settings)
    opted_out = MemorySender(opted_out=[PHONE])
    email = MemorySender()
    run = deliverer(engine, settings, email=email, sms=opted_out)
    assert run.deliver_batch().outcomes == {("sms", "failed_permanent"): 1}
    run.deliver_batch()
    assert statuses(engine) == {("email", "skipped"): 1, ("sms", "failed_permanent"): 1}
    assert not email.emails


def test_an_opt_out_found_at_delivery_suppresses_the_number(
    engine: Engine, settings: Settings
) -> None:
    """SNS drops an SMS to a number that replied STOP, so the deliverer asks first. What it finds
    is kept: the number is suppressed, and the next send skips its SMS at enqueue, naming the
    suppression, rather than storing, claiming and failing it again. No email fallback: the
    opt-out is the recipient's choice."""
    sms_only(engine, settings)
    run = deliverer(engine, settings, email=MemorySender(), sms=MemorySender(opted_out=[PHONE]))
    assert run.deliver_batch().outcomes == {("sms", "failed_permanent"): 1}
    with transaction(engine) as session:
        (kept,) = session.scalars(select(Suppression)).all()
        failed = session.scalars(select(DeliveryLog.id).where(DeliveryLog.channel == "sms")).one()
        assert (kept.address, kept.channel, kept.title, kept.until) == (PHONE, "sms", None, None)
        assert kept.reason.endswith(f"delivery #{failed}")
    send(engine, settings, ["tech:1"], priority=Priority.high)
    assert statuses(engine) == {
        ("email", "skipped"): 2,
        ("sms", "failed_permanent"): 1,
        ("sms", "skipped"): 1,
    }
    assert SMS_SUPPRESSED in [d for c, st, d in decisions(engine) if (c, st) == ("sms", "skipped")]


def test_a_template_that_opts_out_makes_no_fallback(engine: Engine, settings: Settings) -> None:
    assert CATALOG.info("test_message").fallback_email is False
    add_recipients(engine, [tech(1, receive_email=False)])
    send(
        engine,
        settings,
        ["tech:1"],
        template="test_message",
        context={"sent_at": "now"},
        priority=Priority.high,
    )
    email = MemorySender()
    run = deliverer(engine, settings, email=email, sms=MemorySender(fail=bad_phone))
    run.deliver_batch()
    run.deliver_batch()
    assert statuses(engine) == {("email", "skipped"): 1, ("sms", "failed_permanent"): 1}
    assert not email.emails


def test_no_fallback_when_the_email_goes_anyway_or_is_suppressed(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1), tech(2, receive_email=False)])
    with transaction(engine) as session:
        session.add(Suppression(address="tech2@example.com", channel="email", reason="bounced"))
    send(engine, settings, ["tech:1", "tech:2"], priority=Priority.high)
    email = MemorySender()
    run = deliverer(engine, settings, email=email, sms=MemorySender(fail=bad_phone))
    run.deliver_batch()
    run.deliver_batch()
    assert statuses(engine) == {
        ("email", "sent"): 1,
        ("email", "skipped"): 1,
        ("sms", "failed_permanent"): 2,
    }
    assert [m.to for m in email.emails] == ["tech1@example.com"], "tech:1's email, once"


def test_no_fallback_when_the_deliverer_has_none(engine: Engine, settings: Settings) -> None:
    sms_only(engine, settings)
    email = MemorySender()
    run = deliverer(engine, settings, email=email, sms=MemorySender(fail=bad_phone), fallback=None)
    run.deliver_batch()
    run.deliver_batch()
    assert not email.emails and len(rows(engine)) == 2


@pytest.mark.parametrize(
    "reason",
    [
        "muted by ops",
        # a provider's opt-out was told from an operator's mute by " receipt " in its reason:
        # this mute made no fallback; who made it is now its own column (`source`)
        "no receipt from the carrier since Monday (muted by ops)",
    ],
)
def test_an_sms_skipped_for_a_muted_number_becomes_an_email_at_enqueue(
    engine: Engine, settings: Settings, reason: str
) -> None:
    add_recipients(engine, [tech(1, receive_email=False), tech(2, receive_email=False)])
    with transaction(engine) as session:
        session.add_all(
            [
                Suppression(address="+12065550001", channel="sms", reason=reason),
                Suppression(  # a loop mute names a title: moving the loop to email is no fix
                    address="+12065550002", channel="sms", title="Repair R-100 assigned"
                ),
            ]
        )
    result = send(engine, settings, ["tech:1", "tech:2"], priority=Priority.high)
    assert result.rows["email"] == {"pending": 1, "skipped": 2}
    email = MemorySender()
    deliverer(engine, settings, email=email).deliver_batch()
    by_id = {r.id: r for r in rows(engine)}
    [fallback] = [r for r in by_id.values() if r.replaces_id is not None]
    replaced = by_id[fallback.replaces_id]
    assert (replaced.channel, replaced.status, replaced.recipient_phone) == (
        "sms",
        "skipped",
        "+12065550001",
    )
    assert fallback.decision == f"email: fallback for sms #{replaced.id} (sms: number muted)"
    assert fallback.status == "sent" and [m.delivery_id for m in email.emails] == [fallback.id]


def test_the_database_holds_one_fallback_per_replaced_row(
    engine: Engine, settings: Settings
) -> None:
    sms_only(engine, settings)
    run = deliverer(engine, settings, email=MemorySender(), sms=MemorySender(fail=bad_phone))
    run.deliver_batch()
    *_, fallback = rows(engine)
    copy = {
        "notification_id": fallback.notification_id,
        "channel": "email",
        "status": "pending",
        "replaces_id": fallback.replaces_id,
    }
    with pytest.raises(IntegrityError), transaction(engine) as session:
        session.add(DeliveryLog(**copy))


def test_refusals_far_apart_are_not_one_outage() -> None:
    """A throttle a day after the last one does not count the day as an outage."""
    clock = Clock()
    api, smtp = FlakyApi(clock, RATE_EXCEEDED, NOON + timedelta(days=2)), MemorySender()
    email = failover(api, smtp, clock)
    message = OutgoingEmail("a@example.com", "s", "t", None, "notifications@example.com")
    with pytest.raises(DeliveryError):
        email.send_email(message)
    clock.advance(24 * 3600)
    with pytest.raises(DeliveryError):
        email.send_email(message)  # the clock started again: still through the API
    clock.advance(61)
    email.send_email(message)  # a minute of refusals: through SMTP
    assert len(smtp.emails) == 1 and not api.emails


def test_an_outage_seen_by_one_scheduled_run_after_another_adds_up() -> None:
    """deliver-pending runs every 5 minutes: on a quiet night each run meets one refusal, 5 min
    and a few seconds after the last. The clock restarted at each (refusals 5 min apart were
    'not one outage'), so email never failed over to SMTP."""
    clock = Clock()
    api, smtp = FlakyApi(clock, RATE_EXCEEDED, NOON + timedelta(days=2)), MemorySender()
    email = failover(api, smtp, clock)
    message = OutgoingEmail("a@example.com", "s", "t", None, "notifications@example.com")
    with pytest.raises(DeliveryError):
        email.send_email(message)  # one scheduled run
    clock.advance(5 * 60 + 7)  # the next one, started a little late
    email.send_email(message)  # refused for over a minute: through SMTP
    assert len(smtp.emails) == 1 and not api.emails


def test_migration_0012_tells_who_made_the_suppressions_stored_before_it(
    engine: Engine, db_url: str
) -> None:
    """Suppressions stored before `source` existed: a provider's (a receipt's, the deliverer's
    opt-out), a loop mute and an operator's mute each get theirs, read once from the reasons
    as they were written; only the operator's may fall back to email."""
    from alembic import command
    from sqlalchemy import text

    from notify.actions.indexes import missing_indexes
    from notify.migrate import alembic_config

    command.downgrade(alembic_config(db_url), "0011")
    reasons = [
        ("+12065550001", None, "OptOut receipt sns-log:abc"),
        ("+12065550002", None, "OptedOut (SNS said so before sending) delivery #7"),
        ("+12065550003", "Repair R-1 assigned", "auto-muted loop: 6 x by sms (loop detection)"),
        ("+12065550004", None, "no receipt from the carrier (muted by ops for tech:4)"),
    ]
    with engine.begin() as connection:
        for address, title, reason in reasons:
            connection.execute(
                text(
                    "INSERT INTO suppressions (address, channel, title, reason, until, created_at)"
                    " VALUES (:address, 'sms', :title, :reason, :until, :created_at)"
                ),
                {
                    "address": address,
                    "title": title,
                    "reason": reason,
                    "until": None if title is None else NOON + timedelta(days=1),
                    "created_at": NOON,
                },
            )
    command.upgrade(alembic_config(db_url), "head")
    with engine.connect() as connection:
        found = dict(connection.execute(select(Suppression.address, Suppression.source)).all())
        # down and up again, every declared index is there (a batch copy of a table on SQLite
        # lost the unique expression index of delivery_logs; health then reported it missing)
        assert missing_indexes(connection) == []
    assert found == {
        "+12065550001": "provider",
        "+12065550002": "provider",
        "+12065550003": "loop",
        "+12065550004": "operator",  # a mute forever, by the operator: not a receipt's
    }
