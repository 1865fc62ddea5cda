"""A deliverer process for the reliability tests.

    python -m tests.workers.deliver_worker DATABASE_URL OWNER LOG_FILE LATENCY_S BATCH CONCURRENCY \
        [WINDOW [LEASE_S]]

Delivers until nothing is due, with an in-memory provider that appends every message it accepts to
LOG_FILE (flushed per message, before the deliverer sees the receipt), so a test can count what a
provider received even from a process it killed.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import TextIO

from notify.db import make_engine, utcnow
from notify.delivery import Deliverer
from notify.pacing import Unpaced
from notify.senders import Senders
from notify.senders.base import OutgoingEmail, OutgoingSms, SendReceipt
from notify.senders.memory import MemorySender
from notify.settings import load_settings


class LoggingProvider(MemorySender):
    def __init__(self, log: TextIO, latency_s: float) -> None:
        super().__init__(latency_s=latency_s)
        self.log = log
        self.log_lock = threading.Lock()

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        receipt = super().send_email(message)
        return self._logged("email", message.to, receipt, message.delivery_id)

    def send_sms(self, message: OutgoingSms) -> SendReceipt:
        receipt = super().send_sms(message)
        return self._logged("sms", message.phone, receipt, message.delivery_id)

    def _logged(
        self, channel: str, address: str, receipt: SendReceipt, delivery_id: int | None
    ) -> SendReceipt:
        """One line per accepted message; the tag and the message id after it (what a provider's
        receipt would carry), so a test can play the receipts back."""
        line = [channel, address, delivery_id, receipt.provider_message_id]
        with self.log_lock:
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()
        return receipt


def main() -> None:
    url, owner, log_path, latency, batch, concurrency = sys.argv[1:7]
    extra = dict(zip(("send_window", "lease_seconds"), map(int, sys.argv[7:9]), strict=False))
    settings = load_settings(
        database_url=url,
        sender="memory",
        # the provider stands in for SES with event publishing: its sends have Send receipts
        ses_configuration_set="notifyops-receipts",
        batch_size=int(batch),
        send_concurrency=int(concurrency),
        **extra,
    )
    with open(log_path, "a", encoding="utf-8") as log:
        provider = LoggingProvider(log, float(latency))
        deliverer = Deliverer(
            engine=make_engine(url),
            senders=Senders(email=provider, sms=provider),
            settings=settings,
            owner=owner,
            clock=utcnow,
            pacers={"email": Unpaced(), "sms": Unpaced()},
        )
        while deliverer.deliver_batch().claimed:
            pass


if __name__ == "__main__":
    main()
