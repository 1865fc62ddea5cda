"""Provider pacing: a thread-safe token bucket per provider (SES has no rate-limit headers).

`Pacer` is the protocol the deliverer uses, so a pacer backed by Prefect global concurrency limits
(shared across workers) can stand in for the local bucket without the deliverer knowing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Pacer(Protocol):
    def acquire(self, tokens: int = 1) -> None: ...


class TokenBucket:
    """`rate` tokens per second, bursts of up to `burst`; acquire() blocks until a token is due.

    Waiters reserve their token under the lock and sleep outside it, so callers are served in
    order and the long-run rate never exceeds `rate`.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self, tokens: int = 1) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= tokens
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class Unpaced:
    """No pacing (the in-memory sender at full speed)."""

    def acquire(self, tokens: int = 1) -> None:
        return None
