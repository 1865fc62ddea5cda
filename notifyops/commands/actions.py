"""`notifyops actions`: the audit trail of operator actions (who ran what, when, what changed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from notifyops.action_output import JSON
from notifyops.console import out, print_json, table

if TYPE_CHECKING:
    from notify.actions.audit_trail import ActionRecord


def actions_command(
    action: str | None = typer.Option(
        None, help="Only purge, redrive, mute, unmute, decide-unknown or acknowledge-receipts."
    ),
    limit: int = typer.Option(20, min=1, max=1_000, help="How many, newest first."),
    json_output: bool = JSON,
) -> None:
    """Recent operator actions: who (OS user, --actor, flow run), when, filters, counts."""
    from notify.actions.audit_trail import ACTIONS, recent_actions
    from notify.bootstrap import runtime
    from notify.db import transaction
    from notify.errors import InputError

    if action is not None and action not in ACTIONS:
        raise InputError(f"--action: {action!r} is not an operator action ({', '.join(ACTIONS)})")
    with transaction(runtime().engine()) as session:
        found = recent_actions(session=session, limit=limit, action=action)
    if json_output:
        print_json({"actions": found})
        return
    columns = ["id", "when (UTC)", "action", "applied", "actor", "flow run", "key", "counts"]
    rows = [_row(a) for a in found]
    out.print(table(f"Operator actions ({len(rows)})", columns, rows))


def _row(a: ActionRecord) -> list[object]:
    from notify.actions.view import cell

    flat = {k: v for k, v in a.counts.items() if not isinstance(v, dict)}
    when = f"{a.created_at:%Y-%m-%d %H:%M:%S}"
    return [a.id, when, a.action, a.applied, a.actor, a.flow_run_id, a.key, cell(flat)]
