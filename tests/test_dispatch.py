"""Enqueue and delivery on SQLite and PostgreSQL with the in-memory sender and a fixed clock."""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from notify.db import DeliveryLog, Notification, Recipient, Status, Suppression, transaction
from notify.delivery import INTERRUPTED, Deliverer
from notify.digest import DigestsWhileClaiming
from notify.enqueue import SendRequest, enqueue
from notify.errors import (
    ACCOUNT_PAUSED,
    ADDRESS_NOT_VERIFIED,
    PROVIDER_UNAVAILABLE,
    RATE_EXCEEDED,
    SENDER_NOT_VERIFIED,
    SMTP_TEMPORARY,
    DeliveryError,
    InputError,
)
from notify.outbox import Outcome, claim_due, mark_sending, record_outcomes, rescue_expired
from notify.pacing import Unpaced
from notify.recipients import upsert_recipients
from notify.rendering import BUILTIN_DIR, TemplateCatalog
from notify.roster import RecipientRow
from notify.senders import Senders
from notify.senders.memory import MemorySender
from notify.settings import Priority, Settings

NOON = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)  # 12:00 in Chicago, outside quiet hours
CONTEXT = {"repair_id": "R-100", "unit_number": "1234"}
CATALOG = TemplateCatalog()


def tech(n: int, **changes: Any) -> RecipientRow:
    values: dict[str, Any] = {
        "external_id": f"tech:{n}",
        "name": f"Tech {n}",
        "email": f"tech{n}@example.com",
        "phone": f"+1206555{n:04d}",
        "timezone": "America/Chicago",
        "receive_email": True,
        "receive_sms": True,
        "quiet_hours_start": None,
        "quiet_hours_end": None,
    }
    values.update(changes)
    return RecipientRow(**values)


def add_recipients(engine: Engine, rows: list[RecipientRow]) -> None:
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=rows)


def send(
    engine: Engine, settings: Settings, to: list[str], chunk: int | None = None, **kwargs: Any
) -> Any:
    kwargs.setdefault("context", CONTEXT)
    request = SendRequest(
        template=kwargs.pop("template", "repair_assigned"), to=tuple(to), **kwargs
    )
    with transaction(engine) as session:
        return enqueue(
            session=session,
            request=request,
            catalog=CATALOG,
            settings=settings,
            now=NOON,
            chunk=chunk,
        )


def statuses(engine: Engine) -> dict[tuple[str, str], int]:
    with transaction(engine) as session:
        query = select(DeliveryLog.channel, DeliveryLog.status, func.count()).group_by(
            DeliveryLog.channel, DeliveryLog.status
        )
        return {(c, s): n for c, s, n in session.execute(query)}


def decisions(engine: Engine) -> list[tuple[str, str, str]]:
    """Every delivery row's (channel, status, decision), in the order they were stored."""
    with transaction(engine) as session:
        query = select(DeliveryLog.channel, DeliveryLog.status, DeliveryLog.decision)
        return [tuple(row) for row in session.execute(query.order_by(DeliveryLog.id))]


def email_statuses(engine: Engine) -> dict[str, int]:
    return {status: n for (channel, status), n in statuses(engine).items() if channel == "email"}


def deliverer(
    engine: Engine,
    settings: Settings,
    sender: MemorySender,
    clock: Callable[[], datetime] = lambda: NOON,
    interrupted: threading.Event | None = None,
    digests: DigestsWhileClaiming | None = None,
) -> Deliverer:
    return Deliverer(
        engine=engine,
        senders=Senders(email=sender, sms=sender),
        settings=settings,
        owner="test-worker",
        clock=clock,
        pacers={"email": Unpaced(), "sms": Unpaced()},
        rng=random.Random(7),
        interrupted=interrupted,
        digests=digests,
    )


def test_enqueue_writes_one_row_per_channel_with_the_decision(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(
        engine, [tech(1), tech(2, receive_sms=False), tech(3, email=None, receive_email=False)]
    )
    result = send(engine, settings, ["tech:1", "tech:2", "tech:3"], priority=Priority.high)
    assert len(result.notification_ids) == 3 and not result.duplicate
    assert statuses(engine) == {
        ("email", "pending"): 2,
        ("email", "skipped"): 1,
        ("sms", "pending"): 2,
        ("sms", "skipped"): 1,
    }
    with transaction(engine) as session:
        decisions = dict(
            session.execute(
                select(DeliveryLog.recipient_email, DeliveryLog.decision).where(
                    DeliveryLog.channel == "email", DeliveryLog.status == "skipped"
                )
            ).all()
        )
    assert list(decisions.values()) == ["email: off in preferences"]


def test_sms_below_minimum_priority_is_skipped_and_costed_rows_carry_estimates(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1)])
    send(engine, settings, ["tech:1"], priority=Priority.normal)
    send(
        engine,
        settings,
        ["tech:1"],
        priority=Priority.urgent,
        context={**CONTEXT, "repair_id": "R-2"},
    )
    with transaction(engine) as session:
        rows = session.execute(
            select(DeliveryLog.status, DeliveryLog.decision, DeliveryLog.cost, DeliveryLog.segments)
            .where(DeliveryLog.channel == "sms")
            .order_by(DeliveryLog.id)
        ).all()
    assert rows[0].status == "skipped" and "below SMS minimum" in rows[0].decision
    assert rows[1].status == "pending"
    assert rows[1].segments == 1 and Decimal(rows[1].cost) == Decimal("0.00645")


def test_same_idempotency_key_is_a_noop_answering_the_first_ids(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(1), tech(2)])
    first = send(engine, settings, ["tech:1", "tech:2"], idempotency_key="job-42")
    again = send(engine, settings, ["tech:1", "tech:2"], idempotency_key="job-42")
    assert again.duplicate and again.notification_ids == first.notification_ids
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 2


def test_the_same_key_while_the_first_request_is_still_storing_waits_and_is_a_noop(
    engine: Engine, settings: Settings
) -> None:
    """A dispatch retried with the same key while the first is still storing (not committed):
    the second waits for the first and answers its ids. Before, on PostgreSQL, it found no row
    under the key, stored its own and failed on the unique key with an IntegrityError (the
    enqueue task's retries hid it only when the first store ended within them)."""
    add_recipients(engine, [tech(1), tech(2)])
    request = SendRequest(
        template="repair_assigned",
        to=("tech:1", "tech:2"),
        context=CONTEXT,
        idempotency_key="job-43",
    )
    with ThreadPoolExecutor(1) as beside:
        with transaction(engine) as storing:
            first = enqueue(
                session=storing, request=request, catalog=CATALOG, settings=settings, now=NOON
            )
            again = beside.submit(send, engine, settings, ["tech:1", "tech:2"], **_key("job-43"))
            waits_for_an_advisory_lock(engine, again)
        second = again.result(timeout=30)
    assert second.duplicate and second.notification_ids == first.notification_ids
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 2


def _key(key: str) -> dict[str, Any]:
    return {"idempotency_key": key}


def waits_for_an_advisory_lock(engine: Engine, other: Future[Any]) -> None:
    """Return once `other` (a store or an import in a thread) waits for an advisory lock another
    transaction holds (the request key's, the roster's): seen in pg_stat_activity on PostgreSQL;
    on SQLite, where a waiting writer sleeps in its busy handler, after a while it did not end."""
    if engine.dialect.name != "postgresql":
        time.sleep(0.5)
        assert not other.done(), f"it did not wait: {other.result()}"
        return
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert not other.done(), f"it did not wait: {other.result()}"
        with engine.connect() as connection:
            if connection.scalar(query):
                return
        time.sleep(0.02)
    raise AssertionError("it never waited")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template": "no_such_template"}, "no_such_template"),
        ({"context": {"repair_id": "R-1"}}, "unit_number"),
    ],
)
def test_bad_request_is_refused_before_anything_is_stored(
    engine: Engine, settings: Settings, kwargs: dict[str, Any], message: str
) -> None:
    add_recipients(engine, [tech(1)])
    with pytest.raises(InputError, match=message):
        send(engine, settings, ["tech:1"], **kwargs)
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 0


@pytest.mark.parametrize("key", [None, "k-digest"])
def test_the_internal_digest_template_is_refused_and_nothing_stored(
    engine: Engine, settings: Settings, key: str | None
) -> None:
    """A request naming `digest` sent a real technician "0 updates from your quiet hours": the
    deliverer makes digests, a request may not."""
    add_recipients(engine, [tech(1)])
    context = {"items": [], "more": 0, "sms_items": [], "total": 0}
    refusal = r"template 'digest' is internal: the deliverer makes it, it is not sent by hand"
    with pytest.raises(InputError, match=refusal):
        send(engine, settings, ["tech:1"], template="digest", context=context, idempotency_key=key)
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 0


def test_unknown_recipients_are_named_unless_skipped(engine: Engine, settings: Settings) -> None:
    add_recipients(engine, [tech(1)])
    with pytest.raises(InputError, match="tech:404"):
        send(engine, settings, ["tech:1", "tech:404"])
    result = send(engine, settings, ["tech:1", "tech:404"], skip_unknown=True)
    assert result.unknown_recipients == ("tech:404",) and len(result.notification_ids) == 1


def test_loop_guard_skips_beyond_the_threshold(engine: Engine, settings: Settings) -> None:
    add_recipients(engine, [tech(1)])
    for _ in range(settings.loop_threshold + 2):
        send(engine, settings, ["tech:1"], priority=Priority.urgent)
    counts = statuses(engine)
    assert counts[("sms", "pending")] == settings.loop_threshold
    assert counts[("sms", "skipped")] == 2
    assert counts[("email", "skipped")] == 2


def test_a_subject_longer_than_a_title_is_the_same_text_previewed_stored_and_sent(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """A 400-character subject: the preview showed it whole, the stored title was its first 300
    characters (cut mid-word) and so was the email's subject; the loop guard, which counts
    stored titles by the rendered subject, never found the earlier sends and let every repeat go."""
    shutil.copytree(BUILTIN_DIR / "test_message", tmp_path / "long_subject")
    (tmp_path / "long_subject" / "subject.txt.j2").write_text("{{ sent_at }}\n")
    catalog = TemplateCatalog(tmp_path)
    context = {"sent_at": "word " * 80}
    previewed = catalog.render("long_subject", context).subject
    assert len(previewed) == 300 and previewed.endswith("word…")
    add_recipients(engine, [tech(1)])
    for _ in range(settings.loop_threshold + 1):
        request = SendRequest(
            template="long_subject", to=("tech:1",), context=context, priority=Priority.urgent
        )
        with transaction(engine) as session:
            enqueue(session=session, request=request, catalog=catalog, settings=settings, now=NOON)
    with transaction(engine) as session:
        assert set(session.scalars(select(Notification.title))) == {previewed}
    counts = statuses(engine)
    assert counts[("email", "skipped")] == counts[("sms", "skipped")] == 1, "the loop guard"
    sender = MemorySender()
    deliverer(engine, settings, sender).deliver_batch()
    assert {email.subject for email in sender.emails} == {previewed}


def test_daily_cap_moves_sms_to_email(engine: Engine, settings: Settings) -> None:
    capped = settings.model_copy(update={"sms_daily_cap_usd": Decimal("0.01")})
    add_recipients(engine, [tech(n) for n in range(1, 4)])
    send(engine, capped, ["tech:1", "tech:2", "tech:3"], priority=Priority.urgent)
    with transaction(engine) as session:
        sms = session.execute(
            select(DeliveryLog.status, DeliveryLog.decision)
            .where(DeliveryLog.channel == "sms")
            .order_by(DeliveryLog.id)
        ).all()
    assert [row.status for row in sms] == ["pending", "skipped", "skipped"]
    assert "daily SMS cap" in sms[1].decision and "email instead" in sms[1].decision


def test_suppression_skips_that_address(engine: Engine, settings: Settings) -> None:
    add_recipients(engine, [tech(1)])
    with transaction(engine) as session:
        session.add(Suppression(address="+12065550001", channel="sms", reason="STOP", until=None))
    send(engine, settings, ["tech:1"], priority=Priority.urgent)
    assert statuses(engine)[("sms", "skipped")] == 1


def test_quiet_hours_defer_sms_to_the_end_of_the_window(engine: Engine, settings: Settings) -> None:
    add_recipients(engine, [tech(1, quiet_hours_start="11:00", quiet_hours_end="13:30")])
    send(engine, settings, ["tech:1"], priority=Priority.high)
    with transaction(engine) as session:
        row = session.execute(
            select(DeliveryLog.status, DeliveryLog.next_attempt_at).where(
                DeliveryLog.channel == "sms"
            )
        ).one()
    assert row.status == "pending"
    assert row.next_attempt_at == datetime(2026, 11, 30, 19, 30, tzinfo=UTC)
    sender = MemorySender()
    deliverer(engine, settings, sender).deliver_batch()
    assert len(sender.emails) == 1 and sender.sms == [], "the SMS waits for the window to end"


def test_deliver_sends_everything_due_and_records_provider_ids(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(n) for n in range(1, 21)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 21)], priority=Priority.urgent)
    sender = MemorySender()
    report = deliverer(engine, settings, sender).deliver_batch()
    assert report.claimed == 40
    assert report.outcomes == {("email", "sent"): 20, ("sms", "sent"): 20}
    assert len(sender.emails) == 20 and len(sender.sms) == 20
    assert sender.sms[0].transactional is True
    with transaction(engine) as session:
        ids = set(session.scalars(select(DeliveryLog.provider_message_id)))
        assert ids == set(sender.receipts)
        assert session.scalar(select(func.count()).where(DeliveryLog.sent_at.is_(None))) == 0
    assert deliverer(engine, settings, sender).deliver_batch().claimed == 0


def test_failures_are_classified_retried_or_failed(engine: Engine, settings: Settings) -> None:
    add_recipients(engine, [tech(1), tech(2), tech(3, phone="+12065550099")])
    send(engine, settings, ["tech:1", "tech:2", "tech:3"], priority=Priority.urgent)

    def fail(message: Any) -> DeliveryError | None:
        if getattr(message, "to", "") == "tech1@example.com":
            return DeliveryError(RATE_EXCEEDED, "Maximum sending rate exceeded.")
        if getattr(message, "to", "") == "tech2@example.com":
            return DeliveryError(ADDRESS_NOT_VERIFIED, "Email address is not verified.")
        return None

    sender = MemorySender(fail=fail, opted_out={"+12065550099"})
    report = deliverer(engine, settings, sender).deliver_batch()
    assert report.outcomes[("email", "pending_retry")] == 1
    assert report.outcomes[("email", "failed_permanent")] == 1
    assert report.outcomes[("sms", "failed_permanent")] == 1, "opted-out number is never sent"
    assert all(sms.phone != "+12065550099" for sms in sender.sms)
    samples = {(f.channel, f.address, f.error_code) for f in report.failures}
    assert samples == {
        ("email", "t***@example.com", "Throttling"),
        ("email", "t***@example.com", "MessageRejected"),
        ("sms", "+1***0099", "OptedOut"),
    }
    with transaction(engine) as session:
        retry = session.execute(
            select(DeliveryLog).where(DeliveryLog.status == "pending_retry")
        ).scalar_one()
        assert retry.error_class == "transient"
        assert retry.attempts == 0, "throttling is about the provider: no attempt is counted"
        assert retry.next_attempt_at is not None and retry.next_attempt_at > NOON
        assert "fix:" in (retry.error_message or "")


def test_transient_errors_end_failed_after_max_attempts(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"max_attempts": 3})
    add_recipients(engine, [tech(1, receive_sms=False)])
    send(engine, settings, ["tech:1"])
    sender = MemorySender(fail=lambda m: DeliveryError(SMTP_TEMPORARY, "451 mailbox busy"))
    later = [NOON]
    worker = deliverer(engine, settings, sender, clock=lambda: later[0])
    for _ in range(3):
        worker.deliver_batch()
        later[0] += timedelta(days=1)
    assert statuses(engine)[("email", "failed")] == 1


def test_config_error_stops_the_batch_and_returns_unsent_claims(
    engine: Engine, settings: Settings
) -> None:
    settings = settings.model_copy(update={"send_concurrency": 2})
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 11)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 11)])
    sender = MemorySender(fail=lambda m: DeliveryError(ACCOUNT_PAUSED, "Account sending paused"))
    report = deliverer(engine, settings, sender).deliver_batch()
    assert report.stopped is not None and "AccountSendingPaused" in report.stopped
    reached = len(sender.failures)
    assert 1 <= reached <= 2, "only the calls already in flight reached the provider"
    assert report.released == 10 - reached
    counts = statuses(engine)
    assert counts[("email", "pending")] == 10 - reached
    assert counts[("email", "pending_retry")] == reached
    with transaction(engine) as session:
        query = select(DeliveryLog.attempts).where(DeliveryLog.channel == "email")
        attempts = session.scalars(query).all()
    assert attempts == [0] * 10, "a paused account is not the messages' fault: no attempt counted"


def rows_of(engine: Engine, channel: str) -> list[Any]:
    with transaction(engine) as session:
        query = (
            select(DeliveryLog.status, DeliveryLog.attempts, DeliveryLog.next_attempt_at)
            .where(DeliveryLog.channel == channel)
            .order_by(DeliveryLog.id)
        )
        return list(session.execute(query).all())


def test_an_unverified_email_sender_stops_email_only_and_every_sms_goes(
    engine: Engine, settings: Settings
) -> None:
    """With NOTIFY_EMAIL_FROM unverified, every batch used to stop at the first email and give
    back everything, SMS included: 30 urgent SMS stayed pending through every run until the
    sender was fixed. The error is SES's, so it stops email only: every SMS goes in the same
    batch, the email rows go back without an attempt counted, the batch claims no more of
    them, and the report says email stopped and why."""
    settings = settings.model_copy(update={"send_concurrency": 2, "send_window": 8})
    add_recipients(engine, [tech(n) for n in range(1, 31)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 31)], priority=Priority.urgent)

    def unverified_sender(message: Any) -> DeliveryError | None:
        if hasattr(message, "to"):
            return DeliveryError(SENDER_NOT_VERIFIED, "Email address is not verified: ops@")
        return None

    sender = MemorySender(fail=unverified_sender)
    report = deliverer(engine, settings, sender).deliver_batch()
    assert len(sender.sms) == 30 and report.outcomes[("sms", "sent")] == 30
    assert {row.status for row in rows_of(engine, "sms")} == {"sent"}
    assert report.stopped is not None and report.stopped.startswith("email stopped: ")
    assert "MessageRejected (config)" in report.stopped and "Verify the sender" in report.stopped
    assert set(report.stopped_channels) == {"email"} and not report.halted
    reached = len(sender.failures)
    assert 1 <= reached <= 2, "only the email calls already in flight reached SES"
    emails = rows_of(engine, "email")
    assert {row.attempts for row in emails} == {0}, "the sender's fault, not the messages'"
    statuses_now = [row.status for row in emails]
    assert statuses_now.count("pending_retry") == reached
    assert statuses_now.count("pending") == 30 - reached
    untouched = [row for row in emails if row.status == "pending" and row.next_attempt_at == NOON]
    assert untouched, "once email stopped, the batch's later claims left email rows queued"
    assert report.claimed == 30 + reached + report.released
    assert report.due_after == 0, "the stopped channel's rows do not ask for another batch"


def test_the_breaker_on_sms_leaves_email_flowing(engine: Engine, settings: Settings) -> None:
    """An SNS outage (5xx on every call) opens the SMS circuit: SMS rows go back to the queue
    without an attempt counted while every email is sent."""
    settings = settings.model_copy(
        update={"send_concurrency": 2, "send_window": 8, "breaker_failures": 3}
    )
    add_recipients(engine, [tech(n) for n in range(1, 21)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 21)], priority=Priority.urgent)

    def sns_down(message: Any) -> DeliveryError | None:
        if hasattr(message, "phone"):
            return DeliveryError(PROVIDER_UNAVAILABLE, "503 Service Unavailable")
        return None

    sender = MemorySender(fail=sns_down)
    report = deliverer(engine, settings, sender).deliver_batch()
    assert len(sender.emails) == 20 and report.outcomes[("email", "sent")] == 20
    assert report.stopped is not None and report.stopped.startswith("sms stopped: circuit open")
    assert set(report.stopped_channels) == {"sms"} and not report.halted
    assert 3 <= len(sender.failures) <= 3 + 1, "the breaker's failures and a call in flight"
    sms = rows_of(engine, "sms")
    assert {row.status for row in sms} <= {"pending", "pending_retry"}
    assert {row.attempts for row in sms} == {0}


def test_when_both_channels_stop_the_batch_ends(engine: Engine, settings: Settings) -> None:
    """Credentials refused by SES and SNS alike: each channel stops at its first error and the
    batch ends there, giving every unsent row back, as a whole-batch stop did."""
    settings = settings.model_copy(update={"send_concurrency": 2, "send_window": 8})
    add_recipients(engine, [tech(n) for n in range(1, 21)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 21)], priority=Priority.urgent)
    sender = MemorySender(fail=lambda m: DeliveryError(ACCOUNT_PAUSED, "Account sending paused"))
    report = deliverer(engine, settings, sender).deliver_batch()
    assert report.halted and set(report.stopped_channels) == {"email", "sms"}
    assert report.stopped is not None
    assert "email stopped: " in report.stopped and "sms stopped: " in report.stopped
    assert len(sender.failures) <= 4, "each channel stopped at its first calls"
    assert report.claimed <= 8 + 2, "no claim after both stopped (a chunk may have been taken)"
    assert report.released + len(sender.failures) == report.claimed
    assert set(statuses(engine)) <= {("email", s) for s in ("pending", "pending_retry")} | {
        ("sms", s) for s in ("pending", "pending_retry")
    }
    assert report.due_after == 0
    skipped = deliverer(engine, settings, MemorySender()).deliver_batch(skip=["email", "sms"])
    assert skipped.claimed == 0, "a batch started with every channel stopped claims nothing"


def test_a_batch_started_after_a_channel_stopped_leaves_its_rows_queued(
    engine: Engine, settings: Settings
) -> None:
    """The batches a run starts after one stopped email claim SMS only; the email rows stay
    pending for the run after the fix, and are not counted as due for another batch."""
    add_recipients(engine, [tech(n) for n in range(1, 6)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 6)], priority=Priority.urgent)
    sender = MemorySender()
    report = deliverer(engine, settings, sender).deliver_batch(limit=3, skip=["email"])
    assert report.outcomes == {("sms", "sent"): 3} and sender.emails == []
    assert report.due_after == 2, "the SMS still due; the email rows are not counted"
    assert email_statuses(engine) == {"pending": 5}


def test_an_interruption_finishes_the_sends_in_flight_and_gives_back_the_rest(
    engine: Engine, settings: Settings
) -> None:
    """A command's Ctrl-C sets `interrupted`: the calls already with the provider are recorded
    as sent, no row is left `sending` (it would become `unknown` at lease end), the rest go back
    to the queue without an attempt counted, and the report says it was interrupted. They go
    back due now: they used to wait NOTIFY_RETRY_BASE_S (as after a config error), so the
    `notifyops deliver` the command suggests found nothing for ~30 s."""
    settings = settings.model_copy(update={"send_concurrency": 2, "send_window": 8})
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 31)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 31)])
    interrupted = threading.Event()

    def interrupt_at_the_fifth(message: Any) -> None:
        if len(sender.emails) >= 4:
            interrupted.set()

    sender = MemorySender(fail=interrupt_at_the_fifth)
    worker = deliverer(engine, settings, sender, interrupted=interrupted)
    report = worker.deliver_batch()
    assert report.stopped == INTERRUPTED
    reached = len(sender.emails)
    assert 5 <= reached <= 5 + 2, "only the calls already in flight reached the provider"
    counts = email_statuses(engine)
    assert counts == {"sent": reached, "pending": 30 - reached}, counts
    assert report.released + reached == report.claimed
    with transaction(engine) as session:
        query = select(DeliveryLog.attempts).where(DeliveryLog.status == "pending")
        assert set(session.scalars(query)) == {0}, "giving back counts no attempt"
    assert worker.deliver_batch().claimed == 0, "a batch started after it claims nothing"
    after = deliverer(engine, settings, sender).deliver_batch()  # the next command, same instant
    assert after.claimed == 30 - reached, "the rows given back are due at once"
    assert email_statuses(engine) == {"sent": 30} and len(sender.emails) == 30, "none twice"


def test_expired_leases_return_claims_and_mark_in_flight_unknown(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 5)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 5)])
    with transaction(engine) as session:
        rows = claim_due(
            session=session, owner="dead", limit=10, now=NOON, lease=timedelta(minutes=5)
        )
        mark_sending(session=session, owner="dead", ids=[rows[0].id], now=NOON)
    with transaction(engine) as session:
        early = rescue_expired(session=session, now=NOON + timedelta(minutes=4))
        late = rescue_expired(session=session, now=NOON + timedelta(minutes=6))
    assert (early.returned_to_pending, early.marked_unknown) == (0, 0)
    assert (late.returned_to_pending, late.marked_unknown) == (3, 1)
    assert email_statuses(engine) == {"pending": 3, "unknown": 1}


def test_updates_are_fenced_on_the_lease_owner(engine: Engine, settings: Settings) -> None:
    add_recipients(engine, [tech(1, receive_sms=False)])
    send(engine, settings, ["tech:1"])
    with transaction(engine) as session:
        (row,) = claim_due(
            session=session, owner="a", limit=5, now=NOON, lease=timedelta(minutes=5)
        )
        assert mark_sending(session=session, owner="b", ids=[row.id], now=NOON) == set()
        assert mark_sending(session=session, owner="a", ids=[row.id], now=NOON) == {row.id}
        record_outcomes(
            session=session, owner="b", outcomes=[Outcome(row.id, Status.sent, NOON, "stolen")]
        )
    assert email_statuses(engine) == {"sending": 1}


def test_a_providers_words_are_stored_as_it_said_them(engine: Engine, settings: Settings) -> None:
    """Outcomes go to PostgreSQL as array literals: quotes, backslashes, commas, braces, a
    literal NULL and accents in a provider's message and id come back unchanged."""
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 3)])
    send(engine, settings, ["tech:1", "tech:2"])
    said = 'Rejected: "bad {address}", path C:\\mail\\x, NULL, café'
    with transaction(engine) as session:
        first, second = claim_due(
            session=session, owner="a", limit=5, now=NOON, lease=timedelta(minutes=5)
        )
        mark_sending(session=session, owner="a", ids=[first.id, second.id], now=NOON)
        record_outcomes(
            session=session,
            owner="a",
            outcomes=[
                Outcome(
                    first.id,
                    Status.failed_permanent,
                    NOON,
                    error_code="Bad,{x}",
                    error_class="permanent",
                    error_message=said,
                ),
                Outcome(second.id, Status.sent, NOON, provider_message_id='id "1" \\ NULL'),
            ],
        )
    with engine.connect() as connection:
        stored = {
            row.id: row
            for row in connection.execute(
                select(
                    DeliveryLog.id,
                    DeliveryLog.error_code,
                    DeliveryLog.error_message,
                    DeliveryLog.provider_message_id,
                    DeliveryLog.sent_at,
                )
            )
        }
    assert (stored[first.id].error_code, stored[first.id].error_message) == ("Bad,{x}", said)
    assert stored[first.id].sent_at is None
    assert stored[second.id].provider_message_id == 'id "1" \\ NULL'
    assert stored[second.id].sent_at == NOON


def test_redrive_puts_unknown_rows_back_only_when_asked(engine: Engine, settings: Settings) -> None:
    from notify.outbox import redrive

    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 4)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 4)])
    with transaction(engine) as session:
        rows = claim_due(
            session=session, owner="dead", limit=10, now=NOON, lease=timedelta(minutes=5)
        )
        mark_sending(session=session, owner="dead", ids=[r.id for r in rows[:2]], now=NOON)
        rescue_expired(session=session, now=NOON + timedelta(hours=1))
    with transaction(engine) as session:
        assert redrive(session=session, status="unknown", now=NOON, dry_run=True) == 2
    assert email_statuses(engine) == {"pending": 1, "unknown": 2}
    with transaction(engine) as session:
        assert redrive(session=session, status="unknown", now=NOON, ids=[rows[0].id]) == 1
    assert email_statuses(engine) == {"pending": 2, "unknown": 1}
    with transaction(engine) as session:
        decision = session.scalar(select(DeliveryLog.decision).where(DeliveryLog.id == rows[0].id))
    assert decision is not None and decision.endswith("redriven from unknown")


def test_a_request_larger_than_a_chunk_is_stored_whole_and_in_order(
    engine: Engine, settings: Settings
) -> None:
    capped = settings.model_copy(update={"sms_daily_cap_usd": Decimal("0.03")})
    add_recipients(engine, [tech(n) for n in range(1, 9)])
    to = [f"tech:{n}" for n in (8, 1, 7, 2, 6, 3, 5, 4)]
    first = send(engine, capped, to, priority=Priority.urgent, idempotency_key="big", chunk=3)
    again = send(engine, capped, to, priority=Priority.urgent, idempotency_key="big", chunk=3)
    assert len(first.notification_ids) == 8 and again.notification_ids == first.notification_ids
    with transaction(engine) as session:
        order = session.scalars(select(Notification.recipient_id).order_by(Notification.id)).all()
        names = dict(session.execute(select(Recipient.id, Recipient.external_id)).tuples().all())
    assert [names[rid] for rid in order] == to
    counts = statuses(engine)
    assert counts[("sms", "pending")] == 4, "the daily cap carries across chunks (4 x $0.00645)"
    assert counts[("sms", "skipped")] == 4


def _later_then_now(
    engine: Engine, settings: Settings, catalog: TemplateCatalog, template: str
) -> None:
    """`template` sent urgent to tech:1 with sent_at "later", then to tech:2 with "now"."""
    add_recipients(engine, [tech(1), tech(2)])
    for n, sent_at in ((1, "later"), (2, "now")):
        request = SendRequest(
            template=template,
            to=(f"tech:{n}",),
            context={"sent_at": sent_at},
            priority=Priority.urgent,
        )
        with transaction(engine) as session:
            enqueue(session=session, request=request, catalog=catalog, settings=settings, now=NOON)


def test_an_sms_whose_template_renders_nothing_is_skipped_and_its_email_goes(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """A template whose SMS part says nothing for some contexts (an `if` around it): SNS would
    refuse the empty message (the in-memory sender and moto took it as sent); its SMS row is
    skipped saying why, and the email goes."""
    shutil.copytree(BUILTIN_DIR / "test_message", tmp_path / "maybe_sms")
    sms_part = tmp_path / "maybe_sms" / "sms.txt.j2"
    sms_part.write_text("{% if sent_at == 'now' %}texted at {{ sent_at }}{% endif %}\n")
    _later_then_now(engine, settings, TemplateCatalog(tmp_path), "maybe_sms")
    assert decisions(engine) == [
        ("email", "pending", "email: send"),
        ("sms", "skipped", "sms: the template's SMS text is empty for this context"),
        ("email", "pending", "email: send"),
        ("sms", "pending", "sms: send"),
    ]


def test_an_email_whose_template_renders_nothing_is_skipped_and_its_sms_goes(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """A template whose subject and text say nothing for some contexts: the email went out with
    an empty subject and body. Its row is skipped saying why; the SMS goes."""
    shutil.copytree(BUILTIN_DIR / "test_message", tmp_path / "maybe_email")
    for part in ("subject.txt.j2", "body.txt.j2"):
        (tmp_path / "maybe_email" / part).write_text(
            "{% if sent_at == 'now' %}at {{ sent_at }}{% endif %}  \n"
        )
    _later_then_now(engine, settings, TemplateCatalog(tmp_path), "maybe_email")
    assert decisions(engine) == [
        (
            "email",
            "skipped",
            "email: the template's email subject and text are empty for this context",
        ),
        ("sms", "pending", "sms: send"),
        ("email", "pending", "email: send"),
        ("sms", "pending", "sms: send"),
    ]


def test_an_sms_a_recipient_makes_longer_than_sns_takes_is_skipped_and_its_email_goes(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """The request's size check renders for its first recipient only: a template whose SMS names
    the recipient came out over SNS's 1,600 bytes for another one (here by one byte, the ë), which
    was stored pending with 24 parts priced into the daily cap and refused by SNS at send time."""
    shutil.copytree(BUILTIN_DIR / "test_message", tmp_path / "named_sms")
    (tmp_path / "named_sms" / "sms.txt.j2").write_text("{{ sent_at }} {{ recipient.name }}\n")
    add_recipients(engine, [tech(1, name="Bob"), tech(2, name="Zoë")])
    request = SendRequest(
        template="named_sms",
        to=("tech:1", "tech:2"),
        context={"sent_at": "a" * 1596},
        priority=Priority.urgent,
    )
    with transaction(engine) as session:
        enqueue(
            session=session,
            request=request,
            catalog=TemplateCatalog(tmp_path),
            settings=settings,
            now=NOON,
        )
    assert decisions(engine) == [
        ("email", "pending", "email: send"),
        ("sms", "pending", "sms: send"),
        ("email", "pending", "email: send"),
        (
            "sms",
            "skipped",
            "sms: the SMS text is 1,601 bytes (1,600 characters); SNS accepts at most 1,600 "
            "bytes (about 10 parts of 153 characters)",
        ),
    ]
