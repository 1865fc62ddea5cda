"""dispatch-notifications: store a send request (render, decide, enqueue) and deliver it."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import deployment, flow_run

from flows.artifacts import enqueue_table
from flows.deliver import deliver_pending
from flows.params import DeliverParams, DispatchParams
from notify.enqueue import Attribution, SendRequest
from notify.summaries import DispatchSummary
from tasks.dispatch import enqueue_notifications


@flow(
    name="dispatch-notifications",
    description="Render a template for a list of recipients, apply their preferences, store the "
    "notifications and deliver them through SES (email) and SNS (SMS).",
)
def dispatch_notifications(
    request: DispatchParams, delivery: DeliverParams | None = None
) -> DispatchSummary:
    run_id = str(flow_run.id) if flow_run.id else None
    send = SendRequest(
        template=request.template,
        to=request.recipients(),
        context=request.context,
        priority=request.priority,
        # a retried task must not enqueue twice: default the key to this flow run
        idempotency_key=request.idempotency_key or (f"flow-run:{run_id}" if run_id else None),
        skip_unknown=request.skip_unknown,
    )
    attribution = Attribution(flow_run_id=run_id, deployment_name=deployment.name)
    enqueued = enqueue_notifications(send, attribution)
    enqueue_table(enqueued)
    get_run_logger().info(
        "request %s: %d notifications (duplicate=%s) %s",
        enqueued.request_id,
        enqueued.notifications,
        enqueued.duplicate,
        enqueued.rows,
    )
    delivered = deliver_pending(delivery) if request.deliver else None
    return DispatchSummary(enqueue=enqueued, delivery=delivered)


if __name__ == "__main__":
    example = DispatchParams(
        template="test_message", to=["technician:101"], context={"sent_at": "now"}
    )
    print(dispatch_notifications(example).model_dump_json(indent=2))
