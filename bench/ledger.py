"""The benchmark's provider: the library's in-memory sender plus a ledger line per message.

The ledger is a CSV file per process (`ledger-<pid>.csv` in the run directory), written and
flushed under a lock before the caller gets its receipt, so the accounting sees every message
the provider accepted, from any process. The sender keeps nothing in memory (the in-memory
sender's lists would dominate the peak RSS of a million-message run).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import TextIO

from bench.common import csv_line
from notify.pacing import Pacer, TokenBucket, Unpaced
from notify.senders.base import OutgoingEmail, OutgoingSms, SendReceipt
from notify.senders.memory import MemorySender


class LedgerSender(MemorySender):
    """An EmailSender and SmsSender with `latency_s` per call; records receipts in the ledger."""

    def __init__(self, ledger_dir: Path, *, latency_s: float = 0.0) -> None:
        super().__init__(latency_s=latency_s)
        self.ledger_dir = ledger_dir
        self._ledger: TextIO | None = None
        self._ledger_pid = 0
        self._ledger_lock = threading.Lock()

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        return self._accept("email", message.to, message.subject)

    def send_sms(self, message: OutgoingSms) -> SendReceipt:
        return self._accept("sms", message.phone, message.body)

    def close(self) -> None:
        with self._ledger_lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None
        super().close()

    def _accept(self, channel: str, address: str, body: str) -> SendReceipt:
        if self.latency_s:
            time.sleep(self.latency_s)
        line = csv_line(channel, address, body, repr(time.time()))
        with self._ledger_lock:
            ledger = self._open()
            ledger.write(line)
            ledger.flush()
        return SendReceipt(provider_message_id=f"mem-{uuid.uuid4()}")

    def _open(self) -> TextIO:
        pid = os.getpid()
        if self._ledger is None or self._ledger_pid != pid:  # a forked child gets its own file
            path = self.ledger_dir / f"ledger-{pid}.csv"
            self._ledger = path.open("a", encoding="utf-8")
            self._ledger_pid = pid
        return self._ledger


def pacers_for(rate: float | None) -> dict[str, Pacer]:
    """A token bucket per provider at `rate`, or none."""
    if rate is None:
        return {"email": Unpaced(), "sms": Unpaced()}
    return {"email": TokenBucket(rate), "sms": TokenBucket(rate)}
