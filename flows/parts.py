"""A large keyed request stored in parts while its first parts are delivered.

The dispatch flow stores the first part (which checks the whole request) inline, then the later
parts one after another, each an `enqueue-notifications` task run committing its own transaction,
while the delivery batches send what is already stored: storing and sending overlap instead of
taking turns. A part that fails ends the feed; the parts stored before it are delivered, and the
same request run again with the same idempotency key stores only what is missing. So does an
interruption (a command's Ctrl-C, a SIGTERM): the part being stored is committed, no further part
is started, and the run says how many recipients were not stored (`not_stored`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from prefect.futures import PrefectFuture
from prefect.utilities.annotations import quote

from notify.db import Status
from notify.enqueue import Attribution, EnqueueResult, SendRequest
from tasks.dispatch import enqueue_notifications


def due_rows(result: EnqueueResult) -> int:
    """The rows a stored part made due now (pending, any channel)."""
    return sum(by_status.get(Status.pending.value, 0) for by_status in result.rows.values())


def store_part(send: SendRequest, attribution: Attribution, part: range) -> EnqueueResult:
    """One part, inline. Quoted: Prefect would otherwise walk every recipient of the request
    looking for futures to resolve (there are none in it)."""
    return enqueue_notifications(cast(SendRequest, quote(send)), attribution, _bounds(part))


@dataclass
class LaterParts:
    """The parts after the first, stored one at a time in the background. `on_end` runs once,
    in the caller's thread, when the caller settles a feed that has ended (every part stored, or
    one failed): the flow writes what was stored while the batches still deliver, instead of
    after them, and only once it has started the batches the last part needs (an API call can
    take a few hundred ms on a busy server; the batches do not wait for it)."""

    send: SendRequest
    attribution: Attribution
    parts: deque[range]
    results: list[EnqueueResult] = field(default_factory=list)
    error: BaseException | None = None
    running: PrefectFuture[EnqueueResult] | None = None
    on_end: Callable[[], None] | None = None
    interrupted: threading.Event | None = None  # once set, no further part is started

    @classmethod
    def of(
        cls,
        send: SendRequest,
        attribution: Attribution,
        parts: Sequence[range],
        on_end: Callable[[], None] | None = None,
        interrupted: threading.Event | None = None,
    ) -> LaterParts:
        return cls(send, attribution, deque(parts), on_end=on_end, interrupted=interrupted)

    @property
    def stopping(self) -> bool:
        return self.interrupted is not None and self.interrupted.is_set()

    @property
    def not_stored(self) -> int:
        """Recipients of the parts never started (one failed, or the run was interrupted)."""
        return sum(len(part) for part in self.parts)

    def start(self) -> None:
        """Submit the next part, if any (none failed, no interruption); otherwise the feed has
        ended."""
        self.running = None
        if self.parts and self.error is None and not self.stopping:
            part = self.parts.popleft()
            quoted = cast(SendRequest, quote(self.send))
            self.running = enqueue_notifications.submit(quoted, self.attribution, _bounds(part))

    def take(self) -> int:
        """The running part has ended: keep its answer (or its error, which ends the feed),
        start the next one, and return the rows it made due."""
        assert self.running is not None
        try:
            result = self.running.result()
        except Exception as error:  # after the task's own retries
            self.error, self.running = error, None
            return 0
        self.results.append(result)
        self.start()
        return due_rows(result)

    def store_all(self) -> None:
        """Store every remaining part, one after another (a dispatch that does not deliver),
        until an interruption."""
        while self.parts and not self.stopping:
            self.results.append(store_part(self.send, self.attribution, self.parts.popleft()))
        self.settle()

    @property
    def ended(self) -> bool:
        """No part is being stored and none will be: all stored, one failed, or the run was
        interrupted."""
        return self.running is None and (not self.parts or self.error is not None or self.stopping)

    def settle(self) -> None:
        """Once the feed has ended: run `on_end` (once)."""
        hook = self.on_end if self.ended else None
        if hook is not None:
            self.on_end = None
            hook()


def _bounds(part: range) -> tuple[int, int]:
    return part.start, part.stop
