"""deliver-pending: rescue expired leases, then claim and deliver due rows a batch at a time
(every minute on a schedule, for what a dispatch left: retries, deferred rows, rescued claims)."""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import delivery_table
from flows.delivery import deliver_due
from flows.params import DeliverParams
from notify.summaries import DeliverySummary


@flow(
    name="deliver-pending",
    description="Claim due delivery rows and send them through SES/SNS, a batch per task.",
    task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=8)),
    log_prints=False,
)
def deliver_pending(params: DeliverParams | None = None) -> DeliverySummary:
    summary = deliver_due(params or DeliverParams())
    delivery_table(summary)
    get_run_logger().info("delivery: %s", summary.model_dump_json())
    return summary


if __name__ == "__main__":
    print(deliver_pending().model_dump_json(indent=2))
