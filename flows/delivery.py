"""The delivery loop both flows run: rescue expired leases and gather quiet-hours digests (the
dispatch flow does that beside its enqueue), then claim and deliver due rows a batch per task
until nothing is due, a batch stops or the run's budget is spent, and let the rows the digests
carry take their outcome. A plain function, not a flow: the dispatch flow calls it inline (no
subflow) and deliver-pending wraps it.
"""

from __future__ import annotations

import math

from prefect.runtime import flow_run

from flows.params import DeliverParams
from notify.delivery import BatchReport
from notify.summaries import DeliverySummary
from tasks.dispatch import Prepared, deliver_batch, finish_delivery, prepare_delivery
from tasks.resources import runtime


def deliver_due(params: DeliverParams, prepared: Prepared | None = None) -> DeliverySummary:
    """`prepared`: what a `prepare-delivery` the caller already ran did (the dispatch flow runs
    it beside its enqueue); without it, this runs it first."""
    limit = params.batch_size or runtime().settings.batch_size
    if prepared is None:
        prepared = prepare_delivery()  # rescue and quiet-hours digests, before any claim
    total, batches = BatchReport(), 0
    run = str(flow_run.id or "local")  # in the lease owner: the artifact names the run
    for wave in range(math.ceil(params.max_batches / params.parallel_batches)):
        futures = [
            deliver_batch.submit(f"{run}/{wave}-{i}", limit) for i in range(params.parallel_batches)
        ]
        reports = [future.result() for future in futures]
        for report in reports:
            total.add(report)
        batches += sum(1 for report in reports if report.claimed)
        # another wave only when a full batch saw rows still due at its end: no empty wave
        if not any(report.more_due for report in reports) or total.stopped:
            break
    left = finish_delivery(f":{run}/", follow=bool(prepared.gathered.digests or total.claimed))
    return DeliverySummary.of(
        total, batches=batches, rescued=prepared.rescued, left=left, gathered=prepared.gathered
    )
