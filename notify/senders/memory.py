"""An in-memory sender for tests and benchmarks: records what was sent, fails on request.

Like SNS, sending to an opted-out phone succeeds; `is_opted_out` is how callers find out.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

from notify.errors import DeliveryError
from notify.senders.base import OutgoingEmail, OutgoingSms, SendReceipt

Outgoing = OutgoingEmail | OutgoingSms
FailHook = Callable[[Outgoing], DeliveryError | None]
M = TypeVar("M", OutgoingEmail, OutgoingSms)


class MemorySender:
    """Both an EmailSender and an SmsSender; thread-safe."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        fail: FailHook | None = None,
        opted_out: Iterable[str] = (),
    ) -> None:
        self.latency_s = latency_s
        self.fail = fail
        self.opted_out = frozenset(opted_out)
        self.emails: list[OutgoingEmail] = []
        self.sms: list[OutgoingSms] = []
        self.receipts: dict[str, Outgoing] = {}  # provider message id -> message
        self.failures: list[tuple[Outgoing, DeliveryError]] = []
        self.closed = False
        self._lock = threading.Lock()

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        return self._send(message, self.emails)

    def send_sms(self, message: OutgoingSms) -> SendReceipt:
        return self._send(message, self.sms)

    def is_opted_out(self, phone: str) -> bool:
        return phone in self.opted_out

    def close(self) -> None:
        self.closed = True

    def _send(self, message: M, sent: list[M]) -> SendReceipt:
        if self.latency_s:
            time.sleep(self.latency_s)
        error = self.fail(message) if self.fail else None
        if error is not None:
            with self._lock:
                self.failures.append((message, error))
            raise error
        receipt = SendReceipt(provider_message_id=f"mem-{uuid.uuid4()}")
        with self._lock:
            sent.append(message)
            self.receipts[receipt.provider_message_id] = message
        return receipt
