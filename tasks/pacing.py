"""Provider pacing across workers through Prefect global concurrency limits.

A limit named `ses-send` / `sns-sms` with `slot_decay_per_second` = the provider rate behaves as a
shared token bucket. Taking one slot per message undershoots (7/s of 14/s measured), so a pacer
takes slots in bulk and hands them out locally through a token bucket at the same rate.
Without a Prefect server (or without the limits) each process paces itself with a local bucket.
"""

from __future__ import annotations

import logging
import os
import threading

from prefect.concurrency.sync import rate_limit

from notify.bootstrap import Runtime
from notify.db import Channel
from notify.pacing import Pacer, TokenBucket

LIMIT_NAMES = {Channel.email.value: "ses-send", Channel.sms.value: "sns-sms"}
log = logging.getLogger(__name__)


class GlobalRateLimitPacer:
    """Takes `bulk` slots of a Prefect rate limit at a time; spends them at `rate` per second."""

    def __init__(self, limit_name: str, rate: float, bulk: int | None = None) -> None:
        self.limit_name = limit_name
        self.bulk = bulk or max(1, round(rate / 2))
        self._local = TokenBucket(rate)
        self._slots = 0
        self._lock = threading.Lock()

    def acquire(self, tokens: int = 1) -> None:
        with self._lock:
            while self._slots < tokens:
                rate_limit(self.limit_name, occupy=self.bulk, strict=True)
                self._slots += self.bulk
            self._slots -= tokens
        self._local.acquire(tokens)


def pacers_for(runtime: Runtime) -> dict[str, Pacer]:
    """Global limits when a Prefect server is configured and they exist, local buckets otherwise."""
    rates = runtime.provider_rates()
    if not os.environ.get("PREFECT_API_URL") or not _limits_exist():
        return {channel: TokenBucket(rate) for channel, rate in rates.items()}
    return {
        channel: GlobalRateLimitPacer(name, rates[channel]) for channel, name in LIMIT_NAMES.items()
    }


def _limits_exist() -> bool:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            for name in LIMIT_NAMES.values():
                client.read_global_concurrency_limit_by_name(name)
    except Exception:  # missing limit or unreachable API: pace locally
        log.info(
            "provider pacing is local to this process: no global rate limits %s on the server "
            "(python -m deployments.setup creates them)",
            " and ".join(LIMIT_NAMES.values()),
        )
        return False
    return True
