"""Deliver claimed rows: a window at a time, `sending` committed before the provider calls and each
outcome committed right after, so a crash leaves at most one window `unknown`.

`deliver_batch` is one claim: it is what a Prefect task runs. A config error (bad credentials,
paused account) or a quota error stops the batch and gives its unsent claims back to the queue
instead of burning every message on the same failure.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from notify.db import Channel, Status, transaction
from notify.errors import (
    FIX_SEPARATOR,
    OPTED_OUT,
    DeliveryError,
    ErrorClass,
    classify_exception,
)
from notify.masking import mask_address
from notify.outbox import (
    ClaimedRow,
    Outcome,
    claim_due,
    mark_sending,
    record_outcomes,
    release_claims,
    rescue_expired,
)
from notify.pacing import Pacer, TokenBucket
from notify.policies import next_status_after_failure, retry_delay
from notify.senders import Senders, ses_rate
from notify.senders.base import OutgoingEmail, OutgoingSms, SendReceipt
from notify.settings import Settings

Clock = Callable[[], datetime]
TRANSACTIONAL = {"high", "urgent"}


MAX_FAILURE_SAMPLES = 20


@dataclass(frozen=True)
class FailureSample:
    """One failed send, address masked (it goes into artifacts and logs)."""

    channel: str
    address: str
    status: str
    error_code: str
    error_class: str


@dataclass
class BatchReport:
    """What one claim-and-deliver did. `outcomes` counts (channel, status)."""

    claimed: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    released: int = 0
    lost_lease: int = 0
    stopped: str | None = None
    failures: list[FailureSample] = field(default_factory=list)

    def add(self, other: BatchReport) -> None:
        self.claimed += other.claimed
        self.outcomes.update(other.outcomes)
        self.released += other.released
        self.lost_lease += other.lost_lease
        self.stopped = self.stopped or other.stopped
        self.failures.extend(other.failures[: MAX_FAILURE_SAMPLES - len(self.failures)])


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

    def rescue(self) -> tuple[int, int]:
        with transaction(self.engine) as session:
            counts = rescue_expired(session=session, now=self.clock())
        return counts.returned_to_pending, counts.marked_unknown

    def deliver_batch(self, limit: int | None = None) -> BatchReport:
        with transaction(self.engine) as session:
            rows = claim_due(
                session=session,
                owner=self.owner,
                limit=limit or self.settings.batch_size,
                now=self.clock(),
                lease=timedelta(seconds=self.settings.lease_seconds),
            )
        report = BatchReport(claimed=len(rows))
        with ThreadPoolExecutor(max_workers=self.settings.send_concurrency) as pool:
            for start, window in _windows(rows, self.settings.send_concurrency):
                if not self._deliver_window(pool, window, report):
                    report.released = self._release([r.id for r in rows[start + len(window) :]])
                    break
        return report

    def _deliver_window(
        self, pool: ThreadPoolExecutor, window: Sequence[ClaimedRow], report: BatchReport
    ) -> bool:
        with transaction(self.engine) as session:
            held = mark_sending(
                session=session, owner=self.owner, ids=[r.id for r in window], now=self.clock()
            )
        report.lost_lease += len(window) - len(held)
        mine = [row for row in window if row.id in held]
        results = list(pool.map(self._send_one, mine))
        outcomes = [self._outcome(row, result) for row, result in zip(mine, results, strict=True)]
        with transaction(self.engine) as session:
            record_outcomes(session=session, owner=self.owner, outcomes=outcomes)
        report.outcomes.update(
            (row.channel, o.status.value) for row, o in zip(mine, outcomes, strict=True)
        )
        room = MAX_FAILURE_SAMPLES - len(report.failures)
        report.failures.extend(_samples(mine, outcomes)[:room])
        stopper = next((r for r in results if isinstance(r, DeliveryError) and _stops(r)), None)
        if stopper is not None:
            report.stopped = str(stopper)
        return stopper is None

    def _send_one(self, row: ClaimedRow) -> SendReceipt | DeliveryError:
        try:
            if row.channel == Channel.sms.value:
                return self._send_sms(row)
            return self._send_email(row)
        except DeliveryError as error:
            return error
        except Exception as error:  # a sender bug must not lose the row's outcome
            return classify_exception(error)

    def _send_email(self, row: ClaimedRow) -> SendReceipt:
        message = OutgoingEmail(
            to=row.recipient_email or "",
            subject=row.subject,
            text=row.text,
            html=row.html,
            sender=self.settings.email_from,
        )
        self.pacers[Channel.email.value].acquire()
        return self.senders.email.send_email(message)

    def _send_sms(self, row: ClaimedRow) -> SendReceipt:
        phone = row.recipient_phone or ""
        if self.senders.sms.is_opted_out(phone):
            raise DeliveryError(OPTED_OUT, "the number opted out of SMS (checked before sending)")
        body = row.sms_text or row.subject
        message = OutgoingSms(phone=phone, body=body, transactional=row.priority in TRANSACTIONAL)
        self.pacers[Channel.sms.value].acquire()
        return self.senders.sms.send_sms(message)

    def _outcome(self, row: ClaimedRow, result: SendReceipt | DeliveryError) -> Outcome:
        now = self.clock()
        if isinstance(result, SendReceipt):
            return Outcome(row.id, Status.sent, now, provider_message_id=result.provider_message_id)
        attempts = row.attempts + 1
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
        )

    def _backoff(self, attempts: int, error: DeliveryError) -> timedelta:
        if error.error_class is ErrorClass.quota:
            return timedelta(seconds=self.settings.retry_max_s)
        return retry_delay(
            attempts,
            base_s=self.settings.retry_base_s,
            max_s=self.settings.retry_max_s,
            jitter=0.2,
            rng=self.rng,
        )

    def _release(self, ids: list[int]) -> int:
        if not ids:
            return 0
        later = self.clock() + timedelta(seconds=self.settings.retry_base_s)
        with transaction(self.engine) as session:
            return release_claims(session=session, owner=self.owner, ids=ids, next_attempt_at=later)


def _samples(rows: Sequence[ClaimedRow], outcomes: Sequence[Outcome]) -> list[FailureSample]:
    return [
        FailureSample(
            channel=row.channel,
            address=mask_address(row.recipient_email or row.recipient_phone) or "",
            status=outcome.status.value,
            error_code=outcome.error_code or "",
            error_class=outcome.error_class or "",
        )
        for row, outcome in zip(rows, outcomes, strict=True)
        if outcome.status != Status.sent
    ]


def _stops(error: DeliveryError) -> bool:
    return error.stops_batch or error.error_class is ErrorClass.quota


def _windows(rows: Sequence[ClaimedRow], size: int) -> Iterator[tuple[int, Sequence[ClaimedRow]]]:
    for start in range(0, len(rows), size):
        yield start, rows[start : start + size]


def local_pacers(settings: Settings) -> dict[str, Pacer]:
    """One token bucket per provider at the configured rates (this process only)."""
    return {
        Channel.email.value: TokenBucket(ses_rate(settings)),
        Channel.sms.value: TokenBucket(settings.sns_rate),
    }
