"""Provider pacing: a thread-safe token bucket per provider (SES has no rate-limit headers).

`Pacer` is the protocol the deliverer uses, so a pacer backed by Prefect global concurrency limits
(shared across workers) can stand in for the local bucket without the deliverer knowing.

A pacer that is also an `AdaptivePacer` (the local `TokenBucket`) adapts to throttling: the
deliverer calls `slow_down()` when the provider throttles (the rate halves, at most once per
second, never below `min_fraction` of the configured rate) and `recover()` after each success (the
rate climbs back by 1% of the configured rate per success, never above it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable


class Pacer(Protocol):
    def acquire(self, tokens: int = 1) -> None: ...


@runtime_checkable
class AdaptivePacer(Protocol):
    def slow_down(self) -> None: ...

    def recover(self) -> None: ...


class TokenBucket:
    """`rate` tokens per second, bursts of up to `burst`; acquire() blocks until a token is due.

    Waiters reserve their token under the lock and sleep outside it, so callers are served in
    order and the long-run rate never exceeds `rate`. The default burst is one token: SES and SNS
    reject calls above the account's per-second rate, so a bucket that saved a second's worth of
    tokens while idle would start every dispatch at twice the rate and draw throttling errors.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        min_fraction: float = 0.05,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.configured_rate = rate
        self._floor = rate * min_fraction
        self._slowed_at = float("-inf")
        self.burst = burst if burst is not None else 1.0
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

    def slow_down(self) -> None:
        """The provider throttled: halve the rate (once per second at most)."""
        with self._lock:
            now = self._clock()
            if now - self._slowed_at < 1.0:
                return
            self._slowed_at = now
            self.rate = max(self._floor, self.rate / 2)

    def recover(self) -> None:
        """A send went through: climb back towards the configured rate."""
        if self.rate >= self.configured_rate:
            return
        with self._lock:
            self.rate = min(self.configured_rate, self.rate + self.configured_rate / 100)


class Unpaced:
    """No pacing (the in-memory sender at full speed)."""

    def acquire(self, tokens: int = 1) -> None:
        return None
