"""The benchmark's provider: the library's in-memory sender plus a ledger line per message.

The ledger is a CSV file per process (`ledger-<pid>.csv` in the run directory): each line is
written with one unbuffered `os.write` (O_APPEND, no lock: the kernel appends each write whole)
before the caller gets its receipt, so the accounting sees every message the provider accepted,
from any process, even one killed with kill -9. The sender keeps nothing in memory (the in-memory
sender's lists would dominate the peak RSS of a million-message run). The stand-in costs every
peer alike and as little as it can (5.3 us a message on one thread: no csv writer, no buffered
file to flush, a counter for the message ids), since a real provider's cost is its latency, which
the paced scenarios model.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from pathlib import Path

from bench.common import csv_line
from notify.pacing import Pacer, TokenBucket, Unpaced
from notify.senders.base import OutgoingEmail, OutgoingSms, SendReceipt
from notify.senders.memory import MemorySender


class LedgerSender(MemorySender):
    """An EmailSender and SmsSender with `latency_s` per call; records receipts in the ledger."""

    def __init__(self, ledger_dir: Path, *, latency_s: float = 0.0) -> None:
        super().__init__(latency_s=latency_s)
        self.ledger_dir = ledger_dir
        self._ledger: int | None = None  # a file descriptor, opened O_APPEND
        self._ledger_pid = 0
        self._ledger_lock = threading.Lock()
        self._ids = itertools.count()  # next() on a count is atomic under the GIL
        self._id_prefix = ""  # set by _open, once per process (before the first receipt)

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        return self._accept("email", message.to, message.subject)

    def send_sms(self, message: OutgoingSms) -> SendReceipt:
        return self._accept("sms", message.phone, message.body)

    def close(self) -> None:
        with self._ledger_lock:
            if self._ledger is not None:
                os.close(self._ledger)
                self._ledger = None
        super().close()

    def _accept(self, channel: str, address: str, body: str) -> SendReceipt:
        if self.latency_s:
            time.sleep(self.latency_s)
        line = ledger_line(channel, address, body, repr(time.time()))
        ledger = self._ledger
        if ledger is None or self._ledger_pid != os.getpid():
            ledger = self._open()
        os.write(ledger, line)  # one write to an O_APPEND file: lines never interleave
        return SendReceipt(provider_message_id=f"{self._id_prefix}{next(self._ids)}")

    def _open(self) -> int:
        with self._ledger_lock:  # the first call in a process (or a forked child) opens its file
            pid = os.getpid()
            if self._ledger is None or self._ledger_pid != pid:
                path = self.ledger_dir / f"ledger-{pid}.csv"
                self._ledger_pid = pid
                self._id_prefix = f"mem-{uuid.uuid4().hex[:12]}-"  # a forked child's own ids
                self._ledger = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            return self._ledger


_CSV_SPECIAL = frozenset(',"\r\n')


def ledger_line(*values: str) -> bytes:
    """One CSV line, UTF-8: what `csv_line` writes, without a csv writer per line (a value is
    quoted only when it holds a comma, a quote or a line break)."""
    if any(not _CSV_SPECIAL.isdisjoint(value) for value in values):
        return csv_line(*values).encode()
    return (",".join(values) + "\n").encode()


def pacers_for(rate: float | None) -> dict[str, Pacer]:
    """A token bucket per provider at `rate`, or none."""
    if rate is None:
        return {"email": Unpaced(), "sms": Unpaced()}
    return {"email": TokenBucket(rate), "sms": TokenBucket(rate)}
