"""dispatch-notifications: store a send request (render, decide, enqueue) and deliver it.

One flow run: the enqueue task, then the delivery tasks inline (no subflow), artifacts written
once at the end, so a dispatch costs a handful of API calls whatever its size."""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.runtime import deployment, flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import delivery_table, enqueue_table
from flows.delivery import deliver_due
from flows.params import DeliverParams, DispatchParams
from notify.enqueue import Attribution
from notify.summaries import DispatchSummary
from tasks.dispatch import enqueue_notifications


@flow(
    name="dispatch-notifications",
    description="Render a template for a list of recipients, apply their preferences, store the "
    "notifications and deliver them through SES (email) and SNS (SMS).",
    task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=8)),
)
def dispatch_notifications(
    request: DispatchParams, delivery: DeliverParams | None = None
) -> DispatchSummary:
    run_id = str(flow_run.id) if flow_run.id else None
    # a retried task must not enqueue twice: without a key, the key is this flow run
    send = request.send_request(default_key=f"flow-run:{run_id}" if run_id else None)
    attribution = Attribution(flow_run_id=run_id, deployment_name=deployment.name)
    enqueued = enqueue_notifications(send, attribution)
    delivered = deliver_due(delivery or DeliverParams()) if request.deliver else None
    enqueue_table(enqueued)
    if delivered is not None:
        delivery_table(delivered)
    summary = DispatchSummary(enqueue=enqueued, delivery=delivered)
    get_run_logger().info(
        "dispatch: %s", summary.model_dump_json(exclude={"enqueue": {"notification_ids"}})
    )
    return summary


if __name__ == "__main__":
    example = DispatchParams(
        template="test_message", to=["technician:101"], context={"sent_at": "now"}
    )
    print(dispatch_notifications(example).model_dump_json(indent=2))
