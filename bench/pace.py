"""The host's pace beside each run: the CPU time a fixed piece of pure-Python work takes.

On a shared virtual machine the same code runs at speeds that change every few seconds to tens
of seconds (measured: 0.76 ms, 1.25 ms and 1.5 ms for this module's work, with no CPU steal
at any of them; every peer moves with it, Celery and the library included). A run of a second
or two lands on one speed; a run of a minute averages several. So the ratio of a short peer to
a long one says as much about when each ran as about the peers. The parent of each run
(bench/scenario.py) times the work every PACE_EVERY_S while the run's subprocess lives; the
run's pace is the median over its timed window (`host_pace_ms`: lower is faster), so a ratio
can be read with the paces its two peers ran at. Over 14 runs of one 10,000-message dispatch
through the flows, the pace and the rate correlated at -0.77 (9,042 msg/s at 0.82 ms, 6,132 at
1.39 ms); the rate moved by about 0.7 of the pace's change (part of a run waits on I/O, which
the pace does not slow), so the pace says when a ratio is the host's, not by how much exactly.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

WORK = 20_000  # about 0.8-1.3 ms on a 2-core EPYC guest
PACE_EVERY_S = 0.25  # under 0.5% of one core in the parent


def pace_ms() -> float:
    """The CPU time of the fixed work now, in milliseconds: the thread's own CPU clock, so a
    sample waiting for a core the run keeps busy does not count the wait (measured beside two
    busy loops on 2 cores: wall time up to 5.6 ms, CPU time at most 1.6 ms)."""
    started = time.thread_time()
    sum(i * i for i in range(WORK))
    return (time.thread_time() - started) * 1000


Sample = tuple[float, float]  # (time.monotonic() when taken, pace in ms)


def during(samples: Sequence[Sample], start: float, end: float) -> float | None:
    """The median pace of the samples taken in [start, end] (time.monotonic(): one clock for
    every process of the machine), or of the sample nearest the window when none fell in it."""
    inside = [pace for at, pace in samples if start <= at <= end]
    if inside:
        return round(statistics.median(inside), 3)
    if not samples:
        return None
    middle = (start + end) / 2
    return round(min(samples, key=lambda sample: abs(sample[0] - middle))[1], 3)
