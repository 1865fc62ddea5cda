"""The pipelined deliverer: a sliding window of calls, the `sending` bound, the lease heartbeat,
the circuit breaker and the adaptive pacer. Real databases, in-memory senders, nothing patched."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from notify.db import DeliveryLog, Status, transaction, utcnow
from notify.delivery import BatchReport, Deliverer
from notify.errors import PROVIDER_UNAVAILABLE, RATE_EXCEEDED, DeliveryError
from notify.outbox import claim_sending
from notify.pacing import Pacer, TokenBucket, Unpaced
from notify.senders import Senders
from notify.senders.base import OutgoingEmail, OutgoingSms, SendReceipt
from notify.senders.memory import MemorySender
from notify.settings import Priority, Settings, load_settings
from tests.conftest import empty_tables, engine_for
from tests.test_dispatch import NOON, add_recipients, email_statuses, send, tech


def make(
    engine: Engine,
    settings: Settings,
    sender: MemorySender,
    *,
    owner: str = "pipeline",
    clock: Any = lambda: NOON,
    pacers: dict[str, Pacer] | None = None,
) -> Deliverer:
    return Deliverer(
        engine=engine,
        senders=Senders(email=sender, sms=sender),
        settings=settings,
        owner=owner,
        clock=clock,
        pacers=pacers or {"email": Unpaced(), "sms": Unpaced()},
    )


def emails_to(engine: Engine, settings: Settings, count: int) -> None:
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(count)])
    send(engine, settings, [f"tech:{n}" for n in range(count)])


def sending_now(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).where(DeliveryLog.status == Status.sending.value)
        return int(conn.scalar(query) or 0)


class WindowWatcher(MemorySender):
    """Counts the rows in `sending` (from its own connection) at every provider call."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.seen: list[int] = []

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        self.seen.append(sending_now(self.engine))
        return super().send_email(message)


def test_never_more_than_the_send_window_in_sending(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"send_concurrency": 3, "send_window": 8})
    emails_to(engine, settings, 40)
    watcher = WindowWatcher(engine)
    report = make(engine, settings, watcher).deliver_batch()
    assert report.outcomes == {("email", "sent"): 40}
    assert max(watcher.seen) <= 8, "the crash bound: at most NOTIFY_SEND_WINDOW rows in sending"
    assert email_statuses(engine) == {"sent": 40}


class StatusWatcher(MemorySender):
    """The delivery rows by status (from its own connection) at every provider call."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.seen: list[dict[str, int]] = []

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        with self.engine.connect() as conn:
            query = select(DeliveryLog.status, func.count()).group_by(DeliveryLog.status)
            self.seen.append({status: int(n) for status, n in conn.execute(query)})
        return super().send_email(message)


def test_a_batch_claims_as_it_goes_and_leaves_the_rest_pending(
    engine: Engine, settings: Settings
) -> None:
    """Rows go straight from pending to sending, a window's worth and then a chunk at a time:
    while the batch runs, the rows it has not reached are still pending (a kill -9 leaves them
    for any deliverer, not held under a lease), and no row is ever only `claimed`."""
    settings = settings.model_copy(update={"send_concurrency": 2, "send_window": 8})
    emails_to(engine, settings, 40)
    watcher = StatusWatcher(engine)
    report = make(engine, settings, watcher).deliver_batch(limit=40)
    assert report.claimed == 40 and report.outcomes == {("email", "sent"): 40}
    assert not any(seen.get("claimed") for seen in watcher.seen), watcher.seen[:3]
    assert watcher.seen[0].get("pending", 0) >= 40 - 8, "only the first window was claimed"
    assert all(seen.get("sending", 0) <= 8 for seen in watcher.seen)
    assert email_statuses(engine) == {"sent": 40}


def test_a_full_batch_says_whether_rows_are_still_due(engine: Engine, settings: Settings) -> None:
    """So a delivery run starts another batch only when there is something for it: a batch that
    took the last due rows says so, and no empty batch (a task run for nothing) follows it."""
    emails_to(engine, settings, 9)
    worker = make(engine, settings, MemorySender())
    first, second, third, last = (worker.deliver_batch(limit) for limit in (3, 4, 2, 4))
    assert (first.claimed, first.due_after, first.more_due) == (3, 3, True), "6 due, up to 3"
    assert (second.claimed, second.due_after) == (4, 2), "counted exactly below its limit"
    assert (third.claimed, third.more_due) == (2, False), "the last due rows: nothing after"
    assert (last.claimed, last.more_due) == (0, False)
    assert email_statuses(engine) == {"sent": 9}


class OneSlowCall(MemorySender):
    """The first message's call does not return until every other message has been sent."""

    def __init__(self, others: int) -> None:
        super().__init__()
        self.others = others
        self.slow: str | None = None
        self.others_done = threading.Event()
        self.lock = threading.Lock()

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        with self.lock:
            self.slow = self.slow or message.to
            slow = self.slow == message.to
        if slow:
            self.others_done.wait(timeout=20)
        receipt = super().send_email(message)
        if len(self.emails) >= self.others:
            self.others_done.set()
        return receipt


def test_a_slow_call_does_not_hold_back_the_others(engine: Engine, settings: Settings) -> None:
    """A sliding window: while one call hangs, the other sender keeps taking the next rows."""
    settings = settings.model_copy(update={"send_concurrency": 2, "send_window": 8})
    emails_to(engine, settings, 12)
    sender = OneSlowCall(others=11)
    report = make(engine, settings, sender).deliver_batch()
    assert sender.others_done.is_set(), "11 messages went out while the first call was in flight"
    assert report.outcomes == {("email", "sent"): 12}
    assert sender.emails[-1].to == sender.slow


def test_a_batch_that_outlives_its_lease_keeps_it(postgres_url: str) -> None:
    """Lease 5 s; the pacer (4/s) keeps rows in `sending` for ~8 s. A second deliverer runs
    rescue and claims all along: no row becomes unknown, nothing is sent twice."""
    engine = engine_for(postgres_url)
    empty_tables(engine)
    settings = load_settings(
        database_url=postgres_url,
        sender="memory",
        lease_seconds=5,
        send_concurrency=2,
        send_window=32,
    )
    emails_to(engine, settings, 48)
    slow, other = MemorySender(), MemorySender()
    paced = TokenBucket(4, burst=1)
    first = make(
        engine, settings, slow, owner="slow", clock=utcnow, pacers={"email": paced, "sms": paced}
    )
    second = make(engine, settings, other, owner="other", clock=utcnow)
    done = threading.Event()
    rescued: list[tuple[int, int]] = []

    def rescue_and_claim() -> None:
        while not done.wait(0.3):
            rescued.append(second.rescue())
            second.deliver_batch()

    thread = threading.Thread(target=rescue_and_claim)
    thread.start()
    try:
        report = first.deliver_batch(32)
    finally:
        done.set()
        thread.join()
    second.deliver_batch()
    assert report.outcomes == {("email", "sent"): 32} and report.lost_lease == 0
    assert sum(unknown for _, unknown in rescued) == 0
    addresses = Counter(m.to for m in slow.emails + other.emails)
    assert [a for a, n in addresses.items() if n > 1] == [], "nothing sent twice"
    assert email_statuses(engine) == {"sent": 48}
    engine.dispose()


class Storm(MemorySender):
    """Answers 5xx to every call while `raging`."""

    def __init__(self) -> None:
        super().__init__(fail=self._fail)
        self.raging = True
        self.calls = 0

    def _fail(self, message: OutgoingEmail | OutgoingSms) -> DeliveryError | None:
        self.calls += 1
        return (
            DeliveryError(PROVIDER_UNAVAILABLE, "503 Service Unavailable") if self.raging else None
        )


def test_a_provider_storm_opens_the_breaker_and_fails_nothing(
    engine: Engine, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={
            "send_concurrency": 2,
            "send_window": 8,
            "breaker_failures": 4,
            "max_attempts": 2,
            "batch_size": 20,
        }
    )
    emails_to(engine, settings, 30)
    storm = Storm()
    now = [NOON]
    worker = make(engine, settings, storm, clock=lambda: now[0])
    stormy = []
    for _ in range(4):
        now[0] += timedelta(hours=2)
        stormy.append(worker.deliver_batch())
    assert all(r.stopped and "circuit open" in r.stopped for r in stormy), [
        r.stopped for r in stormy
    ]
    assert all(r.released > 0 for r in stormy), "unsent rows went back to the queue"
    assert storm.calls <= 4 * (4 + 2), (
        "each stormy batch stops after K failures (+ calls in flight)"
    )
    assert "failed" not in email_statuses(engine)

    storm.raging = False
    total = BatchReport()
    for _ in range(10):
        now[0] += timedelta(hours=2)
        report = worker.deliver_batch()
        total.add(report)
        if report.claimed == 0:
            break
    assert email_statuses(engine) == {"sent": 30}, "everything delivered after the storm"
    with transaction(engine) as session:
        query = select(DeliveryLog.attempts).where(DeliveryLog.channel == "email")
        attempts = session.scalars(query).all()
    assert set(attempts) == {1}, "the storm cost no attempts: only the delivered send counted"


def test_token_bucket_never_goes_past_the_rate_in_any_second() -> None:
    """A provider at 10/s rejects an 11th call within a second: a dispatch that starts after an
    idle spell must not spend a saved-up second's worth of tokens on top of the rate."""
    ticks = [100.0]  # long idle before the first call

    def sleep(seconds: float) -> None:
        ticks[0] += seconds

    bucket = TokenBucket(10, clock=lambda: ticks[0], sleep=sleep)
    sent_at = []
    for _ in range(50):
        bucket.acquire()
        sent_at.append(ticks[0])
    busiest = max(sum(1 for t in sent_at if start <= t < start + 1.0) for start in sent_at)
    assert busiest <= 11, f"{busiest} calls within one second at 10/s"
    assert sent_at[-1] - sent_at[0] == pytest.approx(4.9), "and the rate itself is kept"


def test_token_bucket_slows_down_on_throttling_and_recovers() -> None:
    ticks = [0.0]
    bucket = TokenBucket(10, clock=lambda: ticks[0], sleep=lambda s: None)
    bucket.slow_down()
    bucket.slow_down()  # the same second: one halving
    assert bucket.rate == 5
    ticks[0] = 1.5
    bucket.slow_down()
    assert bucket.rate == 2.5
    for _ in range(1000):
        bucket.recover()
    assert bucket.rate == 10, "back to the configured rate, never above"
    for n in range(20):
        ticks[0] = 10.0 + 2 * n
        bucket.slow_down()
    assert bucket.rate == 0.5, "never below 5% of the configured rate"


def test_throttling_slows_the_deliverers_pacer(engine: Engine, settings: Settings) -> None:
    emails_to(engine, settings, 3)
    sender = MemorySender(fail=lambda m: DeliveryError(RATE_EXCEEDED, "Maximum sending rate"))
    bucket = TokenBucket(1000)
    make(engine, settings, sender, pacers={"email": bucket, "sms": bucket}).deliver_batch()
    assert bucket.rate < 1000


class BrokenPacer:
    """Paces nothing and fails after each successful send (a bug in our own code)."""

    def acquire(self, tokens: int = 1) -> None:
        return None

    def slow_down(self) -> None:
        return None

    def recover(self) -> None:
        raise RuntimeError("bug after the send")


def test_a_bug_after_a_send_stops_the_batch_and_leaves_the_row_unknown(
    engine: Engine, settings: Settings
) -> None:
    settings = settings.model_copy(update={"send_concurrency": 1})
    emails_to(engine, settings, 5)
    sender = MemorySender()
    broken = BrokenPacer()
    report = make(engine, settings, sender, pacers={"email": broken, "sms": broken}).deliver_batch()
    assert report.stopped is not None and "bug after the send" in report.stopped
    assert len(sender.emails) == 1, "the batch stopped after the first send"
    assert email_statuses(engine) == {"unknown": 1, "pending": 4}


@pytest.mark.parametrize("configuration_set", [None, "notifyops-receipts"])
def test_each_attempt_records_whether_ses_publishes_its_events(
    engine: Engine, settings: Settings, configuration_set: str | None
) -> None:
    """The receipts put an `unknown` email back in the queue only when its attempt would have
    had a Send receipt (the configuration set on the send): the claim records it on the row."""
    add_recipients(engine, [tech(1), tech(2)])
    send(engine, settings, ["tech:1", "tech:2"], priority=Priority.urgent)
    configured = settings.model_copy(update={"ses_configuration_set": configuration_set})
    Deliverer(
        engine=engine,
        senders=Senders(email=MemorySender(), sms=MemorySender()),
        settings=configured,
        owner="probe",
        clock=utcnow,
        pacers={"email": Unpaced(), "sms": Unpaced()},
    ).deliver_batch()
    with engine.connect() as conn:
        recorded = set(conn.scalars(select(DeliveryLog.send_events)))
    assert recorded == {configuration_set is not None}


def test_a_claim_reads_the_content_its_channel_sends(engine: Engine, settings: Settings) -> None:
    """An email row comes with the title, text and HTML; an SMS row with its SMS text (and the
    title), not the email's text and HTML; each provider gets what it got before."""
    add_recipients(engine, [tech(1)])
    send(engine, settings, ["tech:1"], priority=Priority.urgent)  # urgent: SMS goes out too
    with engine.connect() as conn:
        claimed = claim_sending(conn, owner="probe", limit=10, now=NOON, lease=timedelta(minutes=5))
        conn.rollback()
    rows = {row.channel: row for row in claimed}
    assert set(rows) == {"email", "sms"}
    email, sms = rows["email"], rows["sms"]
    assert email.text and email.html and "R-100" in email.html and email.sms_text is None
    assert sms.sms_text and "R-100" in sms.sms_text
    assert (sms.text, sms.html) == ("", None)
    assert sms.subject == email.subject
    sender = MemorySender()
    make(engine, settings, sender).deliver_batch()
    assert [m.body for m in sender.sms] == [sms.sms_text]
    assert [(m.text, m.html) for m in sender.emails] == [(email.text, email.html)]


@pytest.mark.parametrize("session_sort", ["on", "off"])
def test_a_claim_leaves_the_sessions_sort_setting_as_it_found_it(
    postgres_url: str, session_sort: str
) -> None:
    """The claim turns the planner's sort off for its own statement only: the rest of the
    transaction runs with whatever the session had, `off` included."""
    engine = engine_for(postgres_url)
    empty_tables(engine)
    emails_to(engine, load_settings(database_url=postgres_url, sender="memory"), 3)
    with engine.connect() as conn:
        conn.execute(text(f"SET enable_sort = {session_sort}"))
        try:
            lease = timedelta(minutes=5)
            rows = claim_sending(conn, owner="probe", limit=2, now=utcnow(), lease=lease)
            assert len(rows) == 2
            assert conn.execute(text("SHOW enable_sort")).scalar_one() == session_sort
        finally:  # the pooled connection goes back with the server's default
            conn.rollback()
            conn.execute(text("RESET enable_sort"))
