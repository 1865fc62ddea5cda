"""Ctrl-C during a command that delivers: stop sending, keep what was done.

The first Ctrl-C (or SIGTERM) sets the runtime's `interrupted` event: the run's deliverers finish
the provider calls in flight, record their outcomes, give every row they did not hand to a
provider back to the queue and end their batches; the run ends `Interrupted` and the command
prints what was sent, then exits 128 + the signal's number (130 for Ctrl-C). A second one quits
at once, as Python does (the deliverers' threads still give their rows back while the process
exits; only a kill leaves rows in flight to become `unknown` at lease end).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from notifyops.console import err

SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_SENDING = "finishing the sends in flight and returning the rest to the queue"


class Interruption:
    """Which signal asked the command to stop, if any."""

    def __init__(self, event: threading.Event, stopping: str = STOP_SENDING) -> None:
        self.event = event
        self.stopping = stopping  # what the command does once asked to stop
        self.signum: int | None = None

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number, the shell's convention, once a signal arrived."""
        return None if self.signum is None else 128 + self.signum

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: quit now
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()
        err.print(f"stopping: {self.stopping} (Ctrl-C again to quit at once)")


@contextmanager
def stop_sending_on_signal(
    event: threading.Event, stopping: str = STOP_SENDING
) -> Iterator[Interruption]:
    """For the block, Ctrl-C and SIGTERM set `event` instead of killing the command (signal
    handlers can only be set from the main thread: elsewhere the block runs as it is);
    `stopping` says on stderr what the command does then."""
    event.clear()  # a runtime outlives a command in one process (a test's, the standby's)
    interruption = Interruption(event, stopping)
    if threading.current_thread() is not threading.main_thread():
        yield interruption
        return
    previous: dict[signal.Signals, Any] = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, interruption.handle)
    try:
        yield interruption
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if interruption.signum is None and event.is_set():
        # while a flow runs, Prefect's own SIGTERM handler takes the signal; the flow stopped
        # its deliverers (flows.delivery.next_to_end)
        interruption.signum = signal.SIGTERM
    event.clear()  # the run is over: no deliverer of it is left to stop
