"""deliver-pending: rescue expired leases, then claim and deliver due rows a batch at a time."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import delivery_table
from flows.params import DeliverParams
from notify.summaries import DeliverySummary
from tasks.dispatch import count_due, deliver_batch, rescue_expired_leases
from tasks.resources import settings


@flow(
    name="deliver-pending",
    description="Claim due delivery rows and send them through SES/SNS, a batch per task.",
    task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=8)),
    log_prints=False,
)
def deliver_pending(params: DeliverParams | None = None) -> DeliverySummary:
    params = params or DeliverParams()
    limit = params.batch_size or settings().batch_size
    summary = DeliverySummary()
    summary.rescued_to_pending, summary.rescued_unknown = rescue_expired_leases()
    due = count_due()
    progress = _progress(due)
    outcomes: Counter[tuple[str, str]] = Counter()
    run = str(flow_run.id or "local")[:8]
    for wave in range(math.ceil(params.max_batches / params.parallel_batches)):
        width = range(params.parallel_batches)
        futures = [deliver_batch.submit(f"{run}-{wave}-{i}", limit) for i in width]
        reports = [future.result() for future in futures]
        claimed = _fold(summary, outcomes, reports)
        summary.batches += sum(1 for report in reports if report["claimed"])
        if progress is not None:
            update_progress_artifact(progress, min(100.0, 100.0 * summary.claimed / max(due, 1)))
        if claimed == 0 or summary.stopped:
            break
    summary.outcomes = _nested(outcomes)
    summary.remaining_due = count_due()
    delivery_table(summary)
    get_run_logger().info("delivery: %s", summary.model_dump_json())
    return summary


def _progress(due: int) -> UUID | None:
    if not due:
        return None
    return cast(UUID, create_progress_artifact(0.0, description=f"Delivering {due} due rows"))


def _fold(
    summary: DeliverySummary, outcomes: Counter[tuple[str, str]], reports: list[dict[str, Any]]
) -> int:
    claimed = 0
    for report in reports:
        claimed += report["claimed"]
        summary.released += report["released"]
        summary.lost_lease += report["lost_lease"]
        summary.stopped = summary.stopped or report["stopped"]
        outcomes.update({(c, s): n for c, s, n in report["outcomes"]})
        summary.failures.extend(report["failures"][: 20 - len(summary.failures)])
    summary.claimed += claimed
    return claimed


def _nested(outcomes: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (channel, status), count in sorted(outcomes.items()):
        nested.setdefault(channel, {})[status] = count
    return nested


if __name__ == "__main__":
    print(deliver_pending().model_dump_json(indent=2))
