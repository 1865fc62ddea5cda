"""Provider pacing across workers through Prefect global concurrency limits.

A limit named `ses-send` / `sns-sms` with `slot_decay_per_second` = the provider rate behaves as a
shared token bucket. Taking one slot per message undershoots (7/s of 14/s measured), so a pacer
takes slots in bulk and hands them out locally through a token bucket at the same rate. A bulk
take never asks for more slots than the limit has: the server refuses such a take outright, and
the limit may be smaller than this process's rate (`deployments.setup` run again with a lower
NOTIFY_SES_RATE, or `auto`, while this worker still has the old one); every email then failed
as a transient error, an attempt counted each time.
Without a Prefect server (or without the limits) each process paces itself with a local bucket.
"""

from __future__ import annotations

import logging
import threading

from prefect.concurrency.sync import rate_limit
from prefect.settings import PREFECT_API_URL

from notify.bootstrap import Runtime
from notify.db import Channel
from notify.pacing import Pacer, TokenBucket

LIMIT_NAMES = {Channel.email.value: "ses-send", Channel.sms.value: "sns-sms"}
log = logging.getLogger(__name__)


class GlobalRateLimitPacer:
    """Takes `bulk` slots of a Prefect rate limit at a time; spends them at `rate` per second."""

    def __init__(
        self, limit_name: str, rate: float, bulk: int | None = None, slots: int | None = None
    ) -> None:
        """`slots`: the limit's size, the most one take may ask for."""
        self.limit_name = limit_name
        wanted = bulk or max(1, round(rate / 2))
        self.bulk = max(1, min(wanted, slots)) if slots is not None else wanted
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
    """Global limits when a Prefect server is configured (the environment, or the Prefect profile)
    and they exist, local buckets otherwise."""
    rates = runtime.provider_rates()
    slots = _limit_sizes() if PREFECT_API_URL.value() else None
    if slots is None:
        return {channel: TokenBucket(rate) for channel, rate in rates.items()}
    return {
        channel: GlobalRateLimitPacer(name, rates[channel], slots=slots[name])
        for channel, name in LIMIT_NAMES.items()
    }


def _limit_sizes() -> dict[str, int] | None:
    """Each global rate limit's size (its slots), or None when one is missing or the API does
    not answer."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return {
                name: int(client.read_global_concurrency_limit_by_name(name).limit)
                for name in LIMIT_NAMES.values()
            }
    except Exception:  # missing limit or unreachable API: pace locally
        log.info(
            "provider pacing is local to this process: no global rate limits %s on the server "
            "(python -m deployments.setup creates them)",
            " and ".join(LIMIT_NAMES.values()),
        )
        return None
