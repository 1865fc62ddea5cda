"""Run names and tags that say what ran: a dispatch is named by its template, recipients and
request key and tagged `template:<name>` and `priority:<p>`; a check is renamed at the end with
its severity and tagged `severity:<P>`; a deliver-pending run that delivered and a receipts run
that received anything are renamed with their counts (an idle one keeps Prefect's name, its
state's name, `NothingDue` or `NotSetUp`, says it). Renaming is one API call; without an API it
is skipped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect.runtime import flow_run

MAX_NAME = 120


def recipients_in(value: Any) -> int:
    from flows.params import split_recipients

    return len(split_recipients(value))


def dispatch_run_name() -> str:
    """`repair_assigned → 5 recipients (key R-9)`, from the run's parameters, at its start."""
    params = flow_run.parameters or {}
    count = recipients_in(params.get("to"))
    key = params.get("idempotency_key")
    name = f"{params.get('template', 'dispatch')} → {count} recipient{'s' if count != 1 else ''}"
    return (name + (f" (key {key})" if key else ""))[:MAX_NAME]


def rename(name: str | None, tags: Sequence[str] = ()) -> None:
    """Give the current run a final name (None: keep its name) and add tags (kept: the ones it
    already has)."""
    run_id = flow_run.id
    if not run_id:
        return
    from prefect.client.orchestration import get_client

    current = list(flow_run.tags or [])
    merged = current + [tag for tag in tags if tag not in current]
    with get_client(sync_client=True) as client:
        client.update_flow_run(run_id, name=None if name is None else name[:MAX_NAME], tags=merged)


def counted(flow_name: str, counts: Mapping[str, int], state: str) -> str:
    """`deliver-pending · 120 sent, 2 failed · Completed`: the non-zero counts, largest first."""
    shown = sorted(((n, what) for what, n in counts.items() if n), key=lambda c: (-c[0], c[1]))
    said = ", ".join(f"{n:,} {what}" for n, what in shown) or "nothing"
    return f"{flow_name} · {said} · {state}"
