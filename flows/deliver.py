"""deliver-pending: rescue expired leases, then claim and deliver due rows a batch at a time, for
what a dispatch left: retries, rows deferred by quiet hours, rescued claims. A dispatch delivers
its own rows inline, so this runs every 5 minutes (not every minute) and, when nothing is due and
no lease has expired, ends after one query as `NothingDue`: no tasks, no artifact."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import delivery_table
from flows.delivery import deliver_due
from flows.events import delivery_events
from flows.logs import library_logs_in_run
from flows.naming import counted, rename
from flows.params import DeliverParams
from flows.states import delivery_state
from notify.summaries import DeliverySummary
from tasks.dispatch import idle

NOTHING_DUE = "NothingDue"


@flow(
    name="deliver-pending",
    description="Claim due delivery rows and send them through SES/SNS, a batch per task.",
    task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=8)),
    log_prints=False,
)
def deliver_pending(params: DeliverParams | None = None) -> State[Any]:
    nothing = idle()
    if nothing is not None:
        return Completed(name=NOTHING_DUE, message=_nothing_due(nothing), data=nothing)
    with library_logs_in_run():
        summary, _ = deliver_due(params or DeliverParams())
        delivery_table(summary)
        state = delivery_state(summary, summary)
        rename(counted("deliver-pending", _by_status(summary), str(state.name)))
        logger = get_run_logger()
        logger.info("delivery: %s", summary.model_dump_json())
        if state.is_failed():
            logger.error("%s", state.message)
            delivery_events(summary)
    return state


def _nothing_due(summary: DeliverySummary) -> str:
    if not summary.waiting_later or summary.next_due_at is None:
        return "nothing due"
    return (
        f"nothing due; {summary.waiting_later} waiting for a later time, the next due at "
        f"{summary.next_due_at:%Y-%m-%d %H:%M:%S} UTC"
    )


def _by_status(summary: DeliverySummary) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for statuses in summary.outcomes.values():
        totals.update(statuses)
    # rows a stopped deliverer left in flight, made `unknown` by this run's rescue
    return {**totals, "unknown": totals["unknown"] + summary.rescued_unknown}


if __name__ == "__main__":
    print(deliver_pending(return_state=True))
