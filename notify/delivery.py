"""Deliver claimed rows as a pipeline: the provider calls never wait for a commit.

One `deliver_batch` is one claim (what a Prefect task runs), on one database connection held for
the whole batch, with plain rows (SQLAlchemy Core), no ORM objects:

- the batch (up to `limit` rows) is claimed as it goes, straight from due into `sending`
  (SKIP LOCKED): a window's worth first, then a chunk (a quarter window) whenever the window has
  room, each committed before any of its rows is handed to a provider; never more than
  `NOTIFY_SEND_WINDOW` rows are in `sending` at once: that is the crash bound (a kill -9 leaves at
  most that many rows `unknown`; the rows the batch had not reached are still `pending`). A row is
  written twice (claim, outcome). The claim reads the due index in key order with the planner's
  sort off (`outbox.claim_sending`), so stale statistics right after a large enqueue cannot turn
  each chunk into a sort of every due row. Measured against claiming the whole batch at once
  (`claimed`, then moved to `sending` a chunk at a time) in alternating runs: 20% faster for
  10,000 messages, 40-50% for 100,000 right after their enqueue;
- `NOTIFY_SEND_CONCURRENCY` sender threads keep that many provider calls in flight continuously (a
  sliding window: a finished call takes the next row at once, there is no per-window barrier);
- outcomes are group-committed every `GROUP_COMMIT_S` (or `window / 2` outcomes) in one UPDATE
  (joined to the outcomes as arrays on PostgreSQL, an executemany on SQLite: `outbox.record_rows`)
  fenced on the lease owner and the `sending` status, in the same transaction as the next
  claim: the room the outcomes free is claimed in the commit that records them. Recording on a
  second connection in a second thread (claims and outcomes committing side by side) was slower
  at the default window (1.37 s against 1.16 s for 10,000 messages, alternating library runs:
  the claims then wait for the outcomes' own commit before the room opens) and faster only with a
  window of 1,024 (0.97 s against 1.09 s), a crash bound twice as large; a delivery run gets that
  overlap from its parallel batches, each on its own connection;
- quiet hours are held again before a claim, at most every `recheck.QUIET_RECHECK_S` of the
  batch's clock (the run held them before its first claim): a long batch does not send the SMS
  whose recipient's window opened while it ran (`BatchReport.held_quiet`);
- the lease is a heartbeat: every `lease / 3` the deliverer extends `lease_expires_at` on the rows
  it still holds (fenced on the owner), so a batch that outlives NOTIFY_LEASE_SECONDS (a slow
  provider rate) is never rescued from under it.

A config error (bad credentials, paused account, unverified sender) or a quota error stops its
channel (SES or SNS: the error is that provider's); so does the circuit breaker
(NOTIFY_BREAKER_FAILURES consecutive provider-side failures on one channel: 5xx, throttling,
connection failures). A stopped channel's rows the batch did not hand to a provider go back to the
queue without counting an attempt (in the next commit, so they leave the window), its rows are
claimed no more (`BatchReport.stopped_channels`, which a run hands to the batches it starts
next), and the other channel goes on; `BatchReport.stopped` says why, naming the channel. With
every channel stopped the batch ends (`halted`), as it does on an interruption
(`Deliverer.interrupted`, set by a command's Ctrl-C): the calls in flight finish and are
recorded, nothing more is claimed or handed over (`INTERRUPTED`), and the rows given back are
due at once (a provider's refusal gives them back NOTIFY_RETRY_BASE_S later). Failures on the
provider's side never count as an attempt (a provider outage cannot exhaust a message's attempts);
a failure that may have reached the provider (read timeout, reset after writing) is `unknown`,
never retried automatically. Throttling slows an adaptive pacer down; successes speed it back up.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from notify.db import Channel, Status, transaction
from notify.digest import DigestsWhileClaiming
from notify.errors import (
    FIX_SEPARATOR,
    MAYBE_SENT,
    OPTED_OUT,
    DeliveryError,
    ErrorClass,
    classify_exception,
)
from notify.fallback import FallbackPolicy, after_outcomes, route_note
from notify.marks import email_sending_paused
from notify.masking import mask_address
from notify.outbox import (
    ClaimedRow,
    Outcome,
    claim_sending,
    due_up_to,
    extend_leases,
    record_rows,
    rescue_expired,
    unsend_rows,
)
from notify.pacing import AdaptivePacer, Pacer, TokenBucket
from notify.policies import next_status_after_failure, retry_delay
from notify.recheck import QUIET_RECHECK_S, hold_quiet_hours
from notify.senders import Senders, ses_rate
from notify.senders.base import OutgoingEmail, OutgoingSms, SendReceipt
from notify.settings import Settings

Clock = Callable[[], datetime]
TRANSACTIONAL = {"high", "urgent"}
MAX_FAILURE_SAMPLES = 20
GROUP_COMMIT_S = 0.025  # outcomes wait at most this long for their commit
CHUNKS_PER_WINDOW = 4  # `sending` is committed a quarter window at a time
NOT_SENT = None  # a worker's answer for a row it did not hand to the provider (batch stopped)
CHANNELS = frozenset(channel.value for channel in Channel)
INTERRUPTED = (
    "interrupted: the sends in flight finished and were recorded; rows not handed to a provider "
    "went back to the queue (`notifyops deliver` or the deliver-pending schedule sends them)"
)


@dataclass(frozen=True)
class FailureSample:
    """One failed send, address masked (it goes into artifacts and logs)."""

    channel: str
    address: str
    status: str
    error_code: str
    error_class: str
    fix: str = ""  # the runbook's, for this error as the provider worded it


@dataclass
class BatchReport:
    """What one claim-and-deliver did. `outcomes` counts (channel, status)."""

    claimed: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    released: int = 0
    lost_lease: int = 0
    stopped: str | None = None  # why the batch, or a channel of it, stopped (naming the channel)
    # channel -> why its provider refused (config, quota, open circuit): its rows stay queued and
    # the batches a run starts next leave them alone; the other channel goes on
    stopped_channels: dict[str, str] = field(default_factory=dict)
    halted: bool = False  # the whole batch stopped (interrupted, every channel stopped, a bug)
    failures: list[FailureSample] = field(default_factory=list)
    paused: str | None = None  # a channel the guardrail paused: its rows were left pending
    # rows still due when the batch ended (counted up to the batch's limit: a batch's worth or
    # more is waiting), after it claimed something: rows its claims left (its limit reached),
    # or that came due meanwhile (retries, quiet hours ending)
    due_after: int = 0
    # due SMS held back while the batch ran, their recipient's quiet hours having begun since
    # the run's own check (notify.recheck.QUIET_RECHECK_S)
    held_quiet: int = 0
    # digests the batch gathered before its claims (a recipient's quiet window ended while it
    # ran) and the held rows they carry
    digests: int = 0
    carried: int = 0

    @property
    def more_due(self) -> bool:
        return self.due_after > 0

    def add(self, other: BatchReport) -> None:
        self.claimed += other.claimed
        self.due_after = max(self.due_after, other.due_after)
        self.outcomes.update(other.outcomes)
        self.released += other.released
        self.lost_lease += other.lost_lease
        self.held_quiet += other.held_quiet
        self.digests += other.digests
        self.carried += other.carried
        fresh = {
            c: why for c, why in other.stopped_channels.items() if c not in self.stopped_channels
        }
        self.stopped_channels.update(fresh)
        if self.stopped is None:
            self.stopped = other.stopped
        elif fresh and not self.halted:  # another channel stopped in another batch
            self.stopped = "; ".join([self.stopped, *fresh.values()])
        self.halted = self.halted or other.halted or set(self.stopped_channels) >= CHANNELS
        self.paused = self.paused or other.paused
        self.failures.extend(other.failures[: MAX_FAILURE_SAMPLES - len(self.failures)])


Result = tuple[ClaimedRow, Outcome | None]


class _Gate:
    """Whether the batch goes on, and on which channels: a config or quota error or the circuit
    breaker stops the channel whose provider answered so (`closed`); an interruption, a bug or
    every channel stopped stops the whole batch (`stopped`).

    Thread-safe; sender threads consult it before every provider call, so an interruption
    (`interrupted` set) stops the next call, not the next cycle."""

    def __init__(self, breaker_failures: int, interrupted: threading.Event | None = None) -> None:
        self._limit = breaker_failures
        self._streak: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._interrupted = interrupted
        self.reason: str | None = None
        self.channels: dict[str, str] = {}  # a stopped channel -> why
        self.closed: frozenset[str] = frozenset()  # the stopped channels (replaced, never changed)

    @property
    def stopped(self) -> bool:
        if self._stopped.is_set():
            return True
        if self._interrupted is not None and self._interrupted.is_set():
            self.stop(INTERRUPTED)
            return True
        return False

    def closes(self, channel: str) -> bool:
        """Whether a row of `channel` must not be handed to its provider now."""
        return channel in self.closed or self.stopped

    def stop(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
        self._stopped.set()

    def stop_channel(self, channel: str, reason: str) -> None:
        """`channel`'s provider refuses every message (config, quota, open circuit): its rows
        stay queued; the batch ends only once every channel has stopped."""
        with self._lock:
            if channel in self.channels:
                return
            self.channels[channel] = reason
            self.closed = frozenset(self.channels)
            if self.reason is None:
                self.reason = reason
            elif not self._stopped.is_set():
                self.reason = f"{self.reason}; {reason}"
            everything = self.closed >= CHANNELS
        if everything:
            self._stopped.set()

    def observe(self, channel: str, result: SendReceipt | DeliveryError) -> None:
        if isinstance(result, SendReceipt):
            if self._streak[channel]:
                with self._lock:
                    self._streak[channel] = 0
            return
        if result.stops_batch or result.error_class is ErrorClass.quota:
            self.stop_channel(channel, f"{channel} stopped: {result}")
            return
        if not result.kind.provider_side:
            return
        with self._lock:
            self._streak[channel] += 1
            streak = self._streak[channel]
        if streak >= self._limit:
            self.stop_channel(
                channel,
                f"{channel} stopped: circuit open: the {channel} provider failed {streak} times "
                f"in a row (last: {result.code}: {result.message[:200]}); unsent rows returned "
                "to the queue without counting an attempt — fix: check the provider's status "
                "(AWS Health Dashboard, the SMTP endpoint); delivery resumes on the next run",
            )


@dataclass
class _Pipeline:
    """The state of one batch, owned by the coordinating thread."""

    to_claim: int = 0  # rows the batch may still claim (0: its limit reached, or none due)
    # channels whose rows stay queued: paused by the reputation guardrail, stopped in this batch
    # or, before it, in its run
    skip: frozenset[str] = frozenset()
    ready: queue.SimpleQueue[ClaimedRow | None] = field(default_factory=queue.SimpleQueue)
    results: queue.SimpleQueue[Result] = field(default_factory=queue.SimpleQueue)
    sending: int = 0  # rows committed `sending` whose outcome is not committed yet
    handed: int = 0  # rows on `ready` or with a sender, not yet back in `results`
    done: list[tuple[ClaimedRow, Outcome]] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)  # `sending` rows never handed over
    quiet_checked: datetime | None = None  # when quiet hours were last held (the batch's clock)
    # the batch's clock when it last looked for held rows come due (DigestsWhileClaiming); its
    # claims take no row due after it, so none of them is claimed before a gather saw it
    digests_seen: datetime | None = None


@dataclass
class Deliverer:
    """Everything a delivery run needs, passed in (tests hand in memory senders, a fixed clock)."""

    engine: Engine
    senders: Senders
    settings: Settings
    owner: str
    clock: Clock
    pacers: Mapping[str, Pacer]
    rng: random.Random = field(default_factory=random.Random)
    fallback: FallbackPolicy | None = None  # SMS -> email fallback (notify.fallback); None: off
    # set when the process is asked to stop (a command's Ctrl-C): the batch ends as if stopped
    interrupted: threading.Event | None = None
    # quiet-hours digests gathered before each claim (None: NOTIFY_QUIET_HOURS_DIGEST off, or a
    # caller that gathers on its own)
    digests: DigestsWhileClaiming | None = None
    _adaptive: dict[str, AdaptivePacer] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # once, not per message: isinstance against a runtime-checkable protocol costs ~8 us
        self._adaptive = {c: p for c, p in self.pacers.items() if isinstance(p, AdaptivePacer)}

    def rescue(self) -> tuple[int, int]:
        with transaction(self.engine) as session:
            counts = rescue_expired(session=session, now=self.clock())
        return counts.returned_to_pending, counts.marked_unknown

    def deliver_batch(self, limit: int | None = None, skip: Collection[str] = ()) -> BatchReport:
        """Claim and deliver up to `limit` due rows; rows of the `skip` channels (stopped earlier
        in the run) stay queued."""
        report = BatchReport()
        if self.interrupted is not None and self.interrupted.is_set():
            report.stopped = INTERRUPTED  # started after the interruption: claims nothing
            report.halted = True
            return report
        line = _Pipeline(quiet_checked=self.clock())  # the run held them before its first claim
        limit = limit or self.settings.batch_size
        with self.engine.connect() as conn:
            paused = email_sending_paused(conn)  # the reputation guardrail's pause
            line.skip = frozenset(skip) | ({Channel.email.value} if paused else set())
            line.to_claim = limit
            self._gather_digests(conn, line, report)
            sending = self._claim(conn, line, min(limit, self._window))
            conn.commit()
            report.paused = f"email paused (rows left pending): {paused}" if paused else None
            report.claimed = len(sending)
            self._queue(line, sending)
            if report.claimed:
                self._run(conn, line, report)
            left_out = _left_out(line.skip)
            # one that claimed nothing ends the run; a stopped channel's rows are not counted
            if report.claimed and not report.halted and left_out is not None:
                report.due_after = due_up_to(
                    conn, most=limit, now=self.clock(), skip_channel=left_out
                )
        return report

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    @property
    def _window(self) -> int:
        return max(1, self.settings.send_window)

    # --- the coordinating thread -----

    def _run(self, conn: Connection, line: _Pipeline, report: BatchReport) -> None:
        gate = _Gate(self.settings.breaker_failures, self.interrupted)
        count = min(self.settings.send_concurrency, self._window, report.claimed)
        senders = [
            threading.Thread(target=self._sender, args=(line, gate), daemon=True)
            for _ in range(count)
        ]
        for thread in senders:
            thread.start()
        try:
            self._coordinate(conn, line, gate, report)
        except BaseException:
            gate.stop("the batch failed")  # no further provider calls
            _join(line, senders)
            self._salvage(line)
            raise
        _join(line, senders)
        report.halted = gate.stopped  # before the reason: an interruption now sets both
        report.stopped = gate.reason
        report.stopped_channels = dict(gate.channels)
        line.skip |= gate.closed
        report.released += self._give_back(conn, line)

    def _salvage(self, line: _Pipeline) -> None:
        """The batch failed (its connection died): on a fresh connection, record the outcomes
        this deliverer knows and give back the rows it never handed to a provider, so a rescue
        turns into `unknown` only rows whose outcome nobody knows. Best effort, for a while."""
        self._collect(line, timeout=0.0)  # every handed row is back: the senders are joined
        deadline = time.monotonic() + min(30.0, self.settings.lease_seconds / 3)
        while True:
            try:
                with self.engine.connect() as fresh:
                    if line.done:
                        record_rows(fresh, owner=self.owner, outcomes=[o for _, o in line.done])
                        after_outcomes(
                            fresh,
                            owner=self.owner,
                            done=line.done,
                            policy=self.fallback,
                            now=self.clock(),
                        )
                        fresh.commit()
                        line.done = []
                    self._give_back(fresh, line)
                return
            except Exception:  # the database is still away: retry, then leave it to the rescue
                if time.monotonic() >= deadline:
                    return
                time.sleep(1.0)

    def _coordinate(
        self, conn: Connection, line: _Pipeline, gate: _Gate, report: BatchReport
    ) -> None:
        """One transaction per cycle: the outcomes collected so far, the next rows moved to
        `sending` into the room they free, and the heartbeat, committed together before the
        new rows are handed to the senders (so `sending` never exceeds the window)."""
        last_commit = last_beat = time.monotonic()
        beat_every = self.settings.lease_seconds / 3
        while line.handed or line.done or line.unsent or (line.to_claim and not gate.stopped):
            if line.to_claim and not gate.stopped:  # before this cycle's claim
                report.held_quiet += self._hold_quiet_hours(conn, line)
                self._gather_digests(conn, line, report)
            self._collect(line, timeout=GROUP_COMMIT_S)
            now = time.monotonic()
            flush = bool(line.done) and (
                now - last_commit >= GROUP_COMMIT_S
                or line.handed == 0
                or len(line.done) >= self._window // 2
            )
            recorded: list[tuple[ClaimedRow, Outcome]] = []
            returned: list[int] = []
            marked: list[ClaimedRow] = []
            beat = now - last_beat >= beat_every
            try:
                recorded = self._record(conn, line, report) if flush else []
                returned = self._return_unsent(conn, line, report)
                line.skip |= gate.closed
                marked = [] if gate.stopped else self._mark(conn, line, report)
                if beat:
                    extend_leases(conn, owner=self.owner, until=self.clock() + self._lease)
                    last_beat = now
                if recorded or returned or marked or beat:
                    conn.commit()
            except BaseException:  # nothing of this cycle was stored: keep it for the salvage
                line.done[:0] = recorded
                line.sending += len(recorded)
                line.unsent[:0] = returned
                line.sending += len(returned)
                # rows claimed in this cycle were never handed over: pending again if the commit
                # failed, given back by the salvage if it went through after all
                line.unsent.extend(row.id for row in marked)
                raise
            if flush:
                last_commit = now
                self._count(recorded, report)
            self._queue(line, marked)

    @property
    def _chunk(self) -> int:
        return max(1, self._window // CHUNKS_PER_WINDOW)

    def _mark(self, conn: Connection, line: _Pipeline, report: BatchReport) -> list[ClaimedRow]:
        """Claim due rows straight into `sending`, as many as the window has room for (at least
        a chunk, or what the batch may still claim), uncommitted."""
        room = self._window - line.sending
        if not line.to_claim or room < min(self._chunk, line.to_claim):
            return []
        rows = self._claim(conn, line, min(room, line.to_claim))
        report.claimed += len(rows)
        return rows

    def _hold_quiet_hours(self, conn: Connection, line: _Pipeline) -> int:
        """Every QUIET_RECHECK_S of the batch's clock, before a claim: due SMS whose recipient's
        quiet hours began since are held to the window's end (`notify.recheck`), committed at
        once (a cycle's transaction holds no write uncommitted when the next one starts, and the
        hold's turn is not kept while the batch waits for its sends). A long batch (SMS paced,
        a backlog) would otherwise send them inside the window it had not reached when the run
        checked."""
        now = self.clock()
        last = line.quiet_checked
        if last is not None and now - last < timedelta(seconds=QUIET_RECHECK_S):
            return 0
        line.quiet_checked = now
        held = hold_quiet_hours(conn, now=now, wait=False)
        conn.commit()
        return held

    def _gather_digests(self, conn: Connection, line: _Pipeline, report: BatchReport) -> None:
        """Before a claim, with no write of the batch pending: held SMS whose quiet window ended
        since the last look join their recipient's digest (committed), so no claim takes them
        one by one."""
        if self.digests is None:
            return
        now = self.clock()
        gathered = self.digests.gather(conn, seen=line.digests_seen, now=now)
        if not gathered.raced:  # one that gave up (rows lost to another deliverer) looks again
            line.digests_seen = now
        report.digests += gathered.digests
        report.carried += gathered.carried

    def _claim(self, conn: Connection, line: _Pipeline, wanted: int) -> list[ClaimedRow]:
        """Up to `wanted` due rows into `sending` (none of the `skip` channels); fewer means
        nothing more is due, and the batch claims no more."""
        left_out = _left_out(line.skip)
        if left_out is None:  # every channel stopped or paused
            line.to_claim = 0
            return []
        now = self.clock()
        if line.digests_seen is not None:  # a row due since then waits for the next look
            now = min(now, line.digests_seen)
        rows = claim_sending(
            conn,
            owner=self.owner,
            limit=wanted,
            now=now,
            lease=self._lease,
            skip_channel=left_out,
            # SES publishes a Send event for each email it takes through the configuration set
            send_events=bool(self.settings.ses_configuration_set),
        )
        line.to_claim = line.to_claim - len(rows) if len(rows) == wanted else 0
        return rows

    @staticmethod
    def _queue(line: _Pipeline, rows: Sequence[ClaimedRow]) -> None:
        """Rows committed as `sending`, handed to the sender threads."""
        line.sending += len(rows)
        line.handed += len(rows)
        for row in rows:
            line.ready.put(row)

    def _collect(self, line: _Pipeline, timeout: float) -> None:
        """Wait up to `timeout` for the first result, then take every result already there."""
        try:
            item = line.results.get(timeout=timeout) if line.handed else None
        except queue.Empty:
            return
        while item is not None:
            line.handed -= 1
            row, outcome = item
            if outcome is NOT_SENT:
                line.unsent.append(row.id)
            else:
                line.done.append((row, outcome))
            try:
                item = line.results.get_nowait()
            except queue.Empty:
                item = None

    def _record(
        self, conn: Connection, line: _Pipeline, report: BatchReport
    ) -> list[tuple[ClaimedRow, Outcome]]:
        """The collected outcomes as one UPDATE (uncommitted); their rows leave the window."""
        done = line.done
        held = record_rows(conn, owner=self.owner, outcomes=[outcome for _, outcome in done])
        after_outcomes(conn, owner=self.owner, done=done, policy=self.fallback, now=self.clock())
        line.done = []  # only once the UPDATE went through: a failure keeps them for the salvage
        report.lost_lease += len(done) - held
        line.sending -= len(done)
        return done

    @staticmethod
    def _count(done: Sequence[tuple[ClaimedRow, Outcome]], report: BatchReport) -> None:
        report.outcomes.update((row.channel, outcome.status.value) for row, outcome in done)
        room = MAX_FAILURE_SAMPLES - len(report.failures)
        if room > 0:
            report.failures.extend(_samples(done)[:room])

    def _return_unsent(self, conn: Connection, line: _Pipeline, report: BatchReport) -> list[int]:
        """Rows never handed to a provider (their channel or the batch stopped) back to the
        queue, uncommitted: they leave the window, the other channel's rows take their room."""
        returned = line.unsent
        if returned:
            report.released += self._unsend(conn, returned)
            line.unsent = []
            line.sending -= len(returned)
        return returned

    def _give_back(self, conn: Connection, line: _Pipeline) -> int:
        """Rows never handed to a provider (the batch stopped) go back to the queue."""
        if not line.unsent:
            return 0
        returned = self._unsend(conn, line.unsent)
        conn.commit()
        line.unsent = []
        return returned

    def _unsend(self, conn: Connection, ids: Sequence[int]) -> int:
        """Back to `pending`: due now after an interruption (nothing is wrong with them, and the
        command says `notifyops deliver` sends them), after NOTIFY_RETRY_BASE_S when a provider
        refused (config, quota, open circuit: trying again at once would meet the same)."""
        now = self.clock()
        interrupted = self.interrupted is not None and self.interrupted.is_set()
        due = now if interrupted else now + timedelta(seconds=self.settings.retry_base_s)
        return unsend_rows(conn, owner=self.owner, ids=ids, next_attempt_at=due)

    # --- the sender threads -----

    def _sender(self, line: _Pipeline, gate: _Gate) -> None:
        """A sender thread: every row it takes comes back on `results`, whatever happens."""
        while (row := line.ready.get()) is not None:
            try:
                line.results.put((row, self._deliver_one(row, gate)))
            except Exception as error:  # our bug after the call: the provider may have it
                gate.stop(f"deliverer error: {error!r}")
                line.results.put((row, self._outcome(row, DeliveryError(MAYBE_SENT, repr(error)))))

    def _deliver_one(self, row: ClaimedRow, gate: _Gate) -> Outcome | None:
        if gate.closes(row.channel):
            return NOT_SENT
        result = self._send_one(row, gate)
        if result is NOT_SENT:
            return NOT_SENT
        gate.observe(row.channel, result)
        self._adapt(row.channel, result)
        return self._outcome(row, result)

    def _send_one(self, row: ClaimedRow, gate: _Gate) -> SendReceipt | DeliveryError | None:
        try:
            if row.channel == Channel.sms.value:
                return self._send_sms(row, gate)
            return self._send_email(row, gate)
        except DeliveryError as error:
            return error
        except Exception as error:  # a sender bug must not lose the row's outcome
            return classify_exception(error)

    def _send_email(self, row: ClaimedRow, gate: _Gate) -> SendReceipt | None:
        message = OutgoingEmail(
            to=row.recipient_email or "",
            subject=row.subject,
            text=row.text,
            html=row.html,
            sender=self.settings.email_from,
            delivery_id=row.id,  # tagged on the send: a receipt finds its row by it
        )
        self.pacers[Channel.email.value].acquire()
        if gate.closes(Channel.email.value):  # stopped while this thread waited for its turn
            return NOT_SENT
        return self.senders.email.send_email(message)

    def _send_sms(self, row: ClaimedRow, gate: _Gate) -> SendReceipt | None:
        phone = row.recipient_phone or ""
        if self.senders.sms.is_opted_out(phone):
            raise DeliveryError(OPTED_OUT, "the number opted out of SMS (checked before sending)")
        body = row.sms_text or row.subject
        message = OutgoingSms(
            phone=phone,
            body=body,
            transactional=row.priority in TRANSACTIONAL,
            delivery_id=row.id,
        )
        self.pacers[Channel.sms.value].acquire()
        if gate.closes(Channel.sms.value):
            return NOT_SENT
        return self.senders.sms.send_sms(message)

    def _adapt(self, channel: str, result: SendReceipt | DeliveryError) -> None:
        pacer = self._adaptive.get(channel)
        if pacer is None:
            return
        if isinstance(result, SendReceipt):
            pacer.recover()
        elif result.kind.throttle:
            pacer.slow_down()

    def _outcome(self, row: ClaimedRow, result: SendReceipt | DeliveryError) -> Outcome:
        now = self.clock()
        if isinstance(result, SendReceipt):
            return Outcome(
                row.id,
                Status.sent,
                now,
                provider_message_id=result.provider_message_id,
                note=route_note(result.route),
            )
        counted = _about_the_message(result)
        attempts = row.attempts + 1 if counted else row.attempts
        status = next_status_after_failure(
            result.error_class.value, attempts, self.settings.max_attempts
        )
        retry_at = now + self._backoff(attempts, result) if status == Status.pending_retry else None
        return Outcome(
            row.id,
            status,
            now,
            error_code=result.code,
            error_class=result.error_class.value,
            error_message=f"{result.message}{FIX_SEPARATOR}{result.fix}"[:1000],
            next_attempt_at=retry_at,
            count_attempt=counted,
        )

    def _backoff(self, attempts: int, error: DeliveryError) -> timedelta:
        if error.error_class is ErrorClass.quota:
            return timedelta(seconds=self.settings.retry_max_s)
        return retry_delay(
            max(attempts, 1),
            base_s=self.settings.retry_base_s,
            max_s=self.settings.retry_max_s,
            jitter=0.2,
            rng=self.rng,
        )


def _left_out(skip: frozenset[str]) -> str | None:
    """The channel a claim leaves out ("" for none) when rows of `skip` stay queued; None when
    that is every channel (nothing to claim). Two channels: a claim leaves out at most one."""
    if skip >= CHANNELS:
        return None
    return next(iter(skip & CHANNELS), "")


def _about_the_message(error: DeliveryError) -> bool:
    """Whether a failure counts as an attempt: not when the provider or our setup failed."""
    if error.kind.provider_side:
        return False
    return error.error_class not in (ErrorClass.config, ErrorClass.quota)


def _samples(done: Sequence[tuple[ClaimedRow, Outcome]]) -> list[FailureSample]:
    return [
        FailureSample(
            channel=row.channel,
            address=mask_address(row.recipient_email or row.recipient_phone) or "",
            status=outcome.status.value,
            error_code=outcome.error_code or "",
            error_class=outcome.error_class or "",
            fix=(outcome.error_message or "").partition(FIX_SEPARATOR)[2],
        )
        for row, outcome in done
        if outcome.status != Status.sent
    ]


def local_pacers(settings: Settings) -> dict[str, Pacer]:
    """One adaptive token bucket per provider at the configured rates (this process only)."""
    return {
        Channel.email.value: TokenBucket(ses_rate(settings)),
        Channel.sms.value: TokenBucket(settings.sns_rate),
    }


def _join(line: _Pipeline, senders: Sequence[threading.Thread]) -> None:
    """Stop the sender threads once they have finished what they were handed."""
    for _ in senders:
        line.ready.put(None)
    for thread in senders:
        thread.join()
