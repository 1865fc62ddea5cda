"""The delivery loop both flows run: rescue expired leases and gather quiet-hours digests (the
dispatch flow does that beside its enqueue), then claim and deliver due rows a batch per task
until nothing is due, delivery stops (an interruption, every channel stopped) or the run's budget
is spent, and let the rows the digests carry take their outcome. A channel a batch stopped (its
provider refused: config, quota, open circuit) is left out by the batches started after it: the
other channel's due rows still go, and a stopped channel's rows never start another batch. A
plain function, not a flow: the dispatch flow calls it inline (no subflow) and deliver-pending
wraps it.
"""

from __future__ import annotations

import math
from typing import Any

from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectFuture, as_completed

from flows.params import DeliverParams
from flows.parts import LaterParts
from notify.delivery import BatchReport
from notify.request_report import RequestReport
from notify.summaries import DeliverySummary
from tasks.dispatch import Prepared, deliver_batch, finish_delivery, prepare_delivery
from tasks.resources import runtime
from tasks.run_info import flow_run_id


def batches_to_start(report: BatchReport, *, others_running: bool, limit: int, window: int) -> int:
    """After a batch ends, how many more to start: none when no row was due at its end, nor
    while other batches run and fewer than a batch's worth is due (they claim those next, and
    the next one to end counts again); otherwise one per window of due rows (a batch claims a
    window first: one more would find nothing, an empty task run)."""
    if not report.more_due or (others_running and report.due_after < limit):
        return 0
    return math.ceil(report.due_after / window)


def next_to_end(waiting: list[PrefectFuture[Any]]) -> PrefectFuture[Any]:
    """The first of `waiting` to end. A SIGTERM while delivering (a cancel from the UI, a `kill`,
    the shell's own) stops the deliverers as a command's Ctrl-C does: the calls in flight finish
    and are recorded, the rest go back to the queue and the run ends `Interrupted`. Prefect turns
    the signal into `TerminationSignal` in this thread; left to propagate, it ended the run
    Crashed while its batches kept sending, or left up to a window of rows per batch `unknown`
    when the process died. A second SIGTERM ends the run at once, as before."""
    try:
        return next(as_completed(waiting))
    except TerminationSignal:
        runtime().interrupted.set()
        return next(as_completed(waiting))


def deliver_due(
    params: DeliverParams,
    prepared: Prepared | None = None,
    expected: int | None = None,
    incoming: LaterParts | None = None,
    request_id: str | None = None,
) -> tuple[DeliverySummary, RequestReport | None]:
    """`prepared`: what a `prepare-delivery` the caller already ran did (the dispatch flow runs
    it beside its enqueue); without it, this runs it first. `expected`: the rows the caller
    knows are due (a dispatch's own): fewer first batches when they fit (one for a small send);
    a batch that ends with rows still due starts those they need (`batches_to_start`).
    `incoming`: a request's later parts, stored while this delivers (started after the first
    batches); each part that lands brings the run back to `parallel_batches`, and the run goes
    on until the last part is stored and delivered. `request_id`: a dispatch's request, whose
    own rows come back with the summary, read once every outcome is in."""
    limit = params.batch_size or runtime().settings.batch_size
    window = max(1, runtime().settings.send_window)
    if prepared is None:
        prepared = prepare_delivery()  # rescue and quiet-hours digests, before any claim
    total, batches = BatchReport(), 0
    run = flow_run_id() or "local"  # in the lease owner: the artifact names the run
    submitted = 0

    def submit() -> PrefectFuture[BatchReport]:
        nonlocal submitted
        submitted += 1
        return deliver_batch.submit(f"{run}/{submitted}", limit, sorted(total.stopped_channels))

    first = params.parallel_batches
    if expected is not None:
        first = min(first, max(1, math.ceil(expected / limit)))

    unclaimed = False  # a part landed after every running batch had made its claim

    def top_up(most: int) -> None:
        nonlocal unclaimed
        started = 0
        while (
            started < most
            and not total.halted
            and len(running) < params.parallel_batches
            and submitted < params.max_batches
        ):
            running.append(submit())
            started += 1
            unclaimed = False  # this batch claims after the landing

    # up to `parallel_batches` in flight, topped up as each ends (no wave waits for its slowest)
    running = [submit() for _ in range(min(first, params.max_batches))]
    if incoming is not None:
        incoming.start()
    while running or (incoming is not None and incoming.running is not None):
        waiting: list[PrefectFuture[Any]] = list(running)
        if incoming is not None and incoming.running is not None:
            waiting.append(incoming.running)
        ended = next_to_end(waiting)
        if incoming is not None and ended is incoming.running:
            if incoming.take():  # a part landed: its rows are due
                unclaimed = True
                top_up(params.parallel_batches)
            incoming.settle()  # after the top-up: the batches never wait for its API call
            continue
        running.remove(ended)
        report = ended.result()
        total.add(report)
        batches += 1 if report.claimed else 0
        # rows still due that the running batches may not take, or a part landed that no batch
        # has claimed from yet
        more = batches_to_start(report, others_running=bool(running), limit=limit, window=window)
        top_up(params.parallel_batches if unclaimed else more)
    if incoming is not None:
        incoming.settle()  # the feed ended without a part landing here (none left, or a failure)
    follow = bool(prepared.gathered.digests or total.claimed)
    finished = finish_delivery(f":{run}/", follow=follow, request_id=request_id)
    summary = DeliverySummary.of(
        total,
        batches=batches,
        rescued=prepared.rescued,
        left=finished.left,
        gathered=prepared.gathered,
        held_first=prepared.rechecked.held,
    )
    return summary, finished.request
