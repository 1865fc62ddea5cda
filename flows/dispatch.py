"""dispatch-notifications: store a send request (render, decide, enqueue) and deliver it.

One flow run: the enqueue task, then the delivery tasks inline (no subflow), then the request's
own rows read back and one artifact written at the end (`dispatch-request`: what was stored,
what this run delivered, what happened to each row); a request stored in parts also gets
`dispatch-enqueue` as soon as its last part is stored (while the batches deliver). A request
larger than NOTIFY_ENQUEUE_PART recipients is stored in parts, each committed on its own, the
later ones while the first are delivered (flows/parts.py). Its parameters are top-level (a
Postgres-backed server keeps only top-level `position`s): what is required first, advanced last.
The run ends Failed (`Stopped`/`PartlyFailed`, see flows/states.py) when delivery did not go
through, with the summary as its result either way."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Annotated, Any, cast

from annotated_types import Len
from prefect import flow, get_run_logger
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import StringConstraints, ValidationError

from flows.artifacts import dispatch_artifact, enqueue_table
from flows.catalogue import TemplateName, described
from flows.delivery import deliver_due
from flows.events import delivery_events
from flows.logs import library_logs_in_run
from flows.naming import dispatch_run_name, rename
from flows.params import DeliverParams, DispatchParams
from flows.parts import LaterParts, due_rows, store_part
from flows.states import delivery_state, interrupted_storing
from notify.enqueue import Attribution, EnqueueResult, request_parts
from notify.errors import InputError
from notify.forms import field_errors
from notify.settings import Priority
from notify.summaries import DispatchSummary
from tasks.dispatch import prepare_delivery, request_rows
from tasks.resources import runtime
from tasks.run_info import deployment_name, flow_run_id

Text = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
# at least one id once split at commas, semicolons and white space (", ," holds none)
RecipientsText = Annotated[str, StringConstraints(min_length=1, pattern=r"[^,;\s]")]
Recipients = (
    RecipientsText | Annotated[list[Annotated[str, StringConstraints(min_length=1)]], Len(1)]
)
Key = Annotated[str, StringConstraints(max_length=150, pattern=r"\S")]  # spaces only: refused


def _dispatch(
    template: TemplateName,
    to: Recipients,
    context: dict[str, Any] = {},  # noqa: B006 (Prefect validates a copy; never mutated)
    priority: Priority | None = None,
    idempotency_key: Key | None = None,
    skip_unknown: bool = False,
    deliver: bool = True,
    delivery: DeliverParams | None = None,
) -> State[Any]:
    try:
        request = DispatchParams(
            template=template,
            to=cast(Any, to),
            context=dict(context),
            priority=priority,
            idempotency_key=idempotency_key,
            skip_unknown=skip_unknown,
            deliver=deliver,
        )
    except ValidationError as error:  # one line naming the field, as the form's own checks
        raise InputError(field_errors(error)) from None
    with library_logs_in_run():
        try:
            return _run(request, delivery or DeliverParams())
        except Exception:
            # a run that fails keeps its start name, and gets its tags: the runs list filtered
            # by template or priority shows the failures too
            with suppress(Exception):  # never in place of the error itself
                rename(None, _tags(request))
            raise


def _tags(request: DispatchParams) -> list[str]:
    priority = request.priority or runtime().catalog().info(request.template).priority
    return [f"template:{request.template}", f"priority:{priority}"]


def _run(request: DispatchParams, delivery_params: DeliverParams) -> State[Any]:
    logger = get_run_logger()
    run_id = flow_run_id()
    # a retried task must not enqueue twice: without a key, the key is this flow run
    send = request.send_request(default_key=f"flow-run:{run_id}" if run_id else None)
    attribution = Attribution(flow_run_id=run_id, deployment_name=deployment_name())
    # rescue and digests touch no row this request adds (they are not committed yet, and held
    # ones are not due now): they run beside the enqueue, before any claim, in a thread of the run
    with ThreadPoolExecutor(1, "prepare-delivery") as beside:
        run_context = contextvars.copy_context()  # the run's logger and client
        preparing = beside.submit(run_context.run, prepare_delivery) if request.deliver else None
        # a large request is stored in parts: the first (which checks the whole request) here,
        # the others while the first ones are delivered (flows/parts.py)
        first, *rest = request_parts(send, runtime().settings.enqueue_part)
        head = store_part(send, attribution, first)
        prepared = preparing.result() if preparing is not None else None

    def stored() -> None:  # what a request in parts stored, while its batches deliver
        enqueue_table(EnqueueResult.merged([head, *later.results]))

    later = LaterParts.of(
        send,
        attribution,
        rest,
        on_end=stored if rest else None,
        interrupted=runtime().interrupted,  # a Ctrl-C or SIGTERM: no further part is stored
    )
    delivered, own = None, None
    if prepared is not None:
        delivered, own = deliver_due(
            delivery_params, prepared, due_rows(head), later, head.request_id
        )
    else:
        later.store_all()
    enqueued = EnqueueResult.merged([head, *later.results])
    if own is None:  # no delivery read them: a task run of their own
        own = request_rows(enqueued.request_id)
    not_stored = later.not_stored if later.error is None else 0
    dispatch_artifact(enqueued, delivered, own, this_run=run_id, not_stored=not_stored)
    summary = DispatchSummary(
        enqueue=enqueued, delivery=delivered, request=own, not_stored=not_stored
    )
    logger.info("dispatch: %s", summary.model_dump_json(exclude={"enqueue": {"notification_ids"}}))
    count = f"{len(enqueued.notification_ids)} notification(s)"
    prefix = f"{request.template}: {count}; "
    if enqueued.duplicate:  # the counts are the first request's, not this run's sends
        prefix = (
            f"{request.template}: duplicate of request {enqueued.request_id} (same key): "
            f"nothing new stored, nothing sent twice; its {count}: "
        )
    state = delivery_state(delivered, summary, prefix=prefix, own=own)
    if not_stored:
        state = interrupted_storing(summary, key=enqueued.request_id, template=request.template)
        logger.warning("%s", state.message)
    if later.error is not None:  # the parts stored were delivered; the rest was not stored
        logger.error(
            "stored %d of the request's notifications, then a part failed; run the request "
            "again with idempotency_key=%s to store only the rest",
            len(enqueued.notification_ids),
            enqueued.request_id,
        )
        raise later.error
    if state.is_failed():
        logger.error("%s", state.message)
    # a stop, or failures of any request this run delivered (its own or others' due rows)
    delivery_events(delivered, template=request.template)
    key = request.idempotency_key or enqueued.request_id.removeprefix("flow-run:")[:8]
    again = "duplicate · " if enqueued.duplicate else ""
    rename(
        f"{request.template} · {key} · {len(request.to)} to · {again}{state.name}", _tags(request)
    )
    return state


_dispatch.__doc__ = f"""Send a template to recipients.

Args:
    template: Which template to send (the catalogue, including NOTIFY_TEMPLATES_DIR).
    to: Recipient external ids, e.g. technician:101. Paste them as one text (separated by commas
        or new lines) or give a list. Required.
    context: The template's variables as JSON, e.g. {{"repair_id": "R-1"}}. Each template needs:
        {described()}. `recipient` (name, external_id) is added for you.
    priority: Override the template's priority (low, normal, high, urgent): SMS goes out at
        high and urgent; urgent ignores quiet hours.
    idempotency_key: The same key again is a no-op answering the first request (re-submitting
        the form sends nothing twice). Empty: this flow run is the key.
    skip_unknown: Advanced. Send to the known recipients and report the unknown ones (default:
        an unknown recipient refuses the whole request).
    deliver: Advanced. Deliver right after storing (off: the deliver-pending schedule sends).
    delivery: Advanced. How much this run may deliver (batch size, batches, parallel claims).
"""

dispatch_notifications = flow(
    name="dispatch-notifications",
    description="Render a template for a list of recipients, apply their preferences, store the "
    "notifications and deliver them through SES (email) and SNS (SMS).",
    task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=8)),
    flow_run_name=dispatch_run_name,
)(_dispatch)


if __name__ == "__main__":
    example = DispatchParams(
        template="test_message", to=["technician:101"], context={"sent_at": "now"}
    )
    print(dispatch_notifications(**example.flow_parameters()))
