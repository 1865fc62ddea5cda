"""Email failover: the SES API first, SES SMTP while the API has been refusing sends for too long.

`FailoverEmailSender` holds the API sender and the SMTP sender. A send goes through the API; when
the API answers with an error that proves it did NOT take the message (throttling, HTTP 5xx,
connection refused or timed out before the request was written: `not_accepted`) the failure
clock starts. Once the API has been failing like that for NOTIFY_EMAIL_FAILOVER_AFTER_S without
a success in between (and without a gap of STALE_AFTER between refusals), that same message, and
every later one, goes through SMTP. Every NOTIFY_EMAIL_FAILOVER_PROBE_S one send tries the API
first (a probe); the first API success switches email back to the API and stops the clock.

One message is never sent on both paths: SMTP only ever gets a message the API refused (the
error says it was not accepted) or one that was never offered to the API. An error after which
the API may have the message (a read timeout, a reset after the request was written:
`maybe_sent`) propagates unchanged (the row becomes `unknown`); so do permanent, quota and
configuration errors (SMTP is the same SES account: it would fail the same way).

The clock and the switch are kept in a `FailoverMemory`: in-process by default; the composition
root hands in one kept in the database (notify.fallback.MarkMemory), so a deliverer started
by the next scheduled run carries on where the last one stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from notify.errors import DeliveryError, ErrorClass
from notify.senders.base import EmailSender, OutgoingEmail, SendReceipt

ROUTE_SMTP = "smtp"  # SendReceipt.route of a message the failover sent through SES SMTP
# Refusals further apart than this (or twice the failover time) are not one outage: three times
# the deliver-pending schedule (every 5 minutes), so an outage seen by one scheduled run after
# another still adds up. At 5 minutes, refusals one schedule apart restarted the clock or not
# by a few seconds of start-up jitter, and on a quiet night email never failed over.
STALE_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class FailoverMarks:
    """What the failover remembers: since when the API refuses sends (None: it works), since when
    email goes through SMTP (None: through the API), and the last refusal (what, when)."""

    failing_since: datetime | None = None
    smtp_since: datetime | None = None
    last_error: str = ""
    last_refused: datetime | None = None


class FailoverMemory(Protocol):
    def load(self) -> FailoverMarks: ...

    def save(self, marks: FailoverMarks) -> None: ...


class InProcessMemory:
    """The failover's marks in this process only (a new process starts with the API)."""

    def __init__(self) -> None:
        self.marks = FailoverMarks()

    def load(self) -> FailoverMarks:
        return self.marks

    def save(self, marks: FailoverMarks) -> None:
        self.marks = marks


def not_accepted(error: DeliveryError) -> bool:
    """The API refused the message without taking it: throttled, 5xx, never reached.

    These are the transient provider-side kinds; `maybe_sent`, quota, config and permanent
    errors are not among them."""
    return error.kind.provider_side and error.error_class is ErrorClass.transient


class FailoverEmailSender:
    """An EmailSender: the SES API, or SES SMTP while the API is down (thread-safe)."""

    def __init__(
        self,
        api: EmailSender,
        smtp: EmailSender,
        *,
        after: timedelta,
        probe_every: timedelta,
        clock: Callable[[], datetime],
        memory: FailoverMemory | None = None,
    ) -> None:
        self.api, self.smtp = api, smtp
        self._after, self._probe_every, self._clock = after, probe_every, clock
        self._memory = memory or InProcessMemory()
        self._marks: FailoverMarks | None = None  # loaded on first use
        self._last_probe: datetime | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FailoverEmailSender(api={self.api!r}, smtp={self.smtp!r})"

    @property
    def on_smtp(self) -> bool:
        with self._lock:
            return self._load().smtp_since is not None

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        now = self._clock()
        if not self._try_api(now):
            return self._via_smtp(message)
        try:
            receipt = self.api.send_email(message)
        except DeliveryError as error:
            if not_accepted(error) and self._refused(now, error):
                return self._via_smtp(message)  # the API did not take it: SMTP sends it once
            raise
        self._worked()
        return receipt

    def close(self) -> None:
        try:
            self.api.close()
        finally:
            self.smtp.close()

    def _via_smtp(self, message: OutgoingEmail) -> SendReceipt:
        return replace(self.smtp.send_email(message), route=ROUTE_SMTP)

    def _load(self) -> FailoverMarks:
        if self._marks is None:
            self._marks = self._memory.load()
        return self._marks

    def _save(self, marks: FailoverMarks) -> None:
        self._marks = marks
        self._memory.save(marks)

    def _try_api(self, now: datetime) -> bool:
        """Through the API unless failed over; failed over, one send per probe interval."""
        with self._lock:
            marks = self._load()
            if marks.smtp_since is None:
                return True
            last = self._last_probe or marks.smtp_since
            if now - last < self._probe_every:
                return False
            self._last_probe = now
            return True

    def _refused(self, now: datetime, error: DeliveryError) -> bool:
        """Note a refusal; True when email goes (or now switches) through SMTP.

        Refusals further apart than `stale` (no refusal, and no success, in between: nobody sent)
        do not add up: the clock starts again. Each refusal is saved; there are few (the circuit
        breaker stops a batch after NOTIFY_BREAKER_FAILURES, and on SMTP only probes refuse)."""
        with self._lock:
            marks = self._load()
            since = marks.failing_since
            if (
                since is None
                or marks.last_refused is None
                or now - marks.last_refused > self._stale
            ):
                since = now
            switch = self._after > timedelta(0) and now - since >= self._after
            smtp_since = marks.smtp_since or (now if switch else None)
            last = f"{error.code}: {error.message}"[:200]
            self._save(FailoverMarks(since, smtp_since, last, now))
            return smtp_since is not None

    @property
    def _stale(self) -> timedelta:
        return max(2 * self._after, STALE_AFTER)

    def _worked(self) -> None:
        with self._lock:
            marks = self._load()
            if marks.failing_since is not None or marks.smtp_since is not None:
                self._save(FailoverMarks())
                self._last_probe = None
