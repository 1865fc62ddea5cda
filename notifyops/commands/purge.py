"""`notifyops purge`: stale queued rows become `purged` (runbook section 4, emergency only)."""

from __future__ import annotations

import typer

from notifyops.action_output import ACTOR, JSON, YES, show


def purge_command(
    older_than: str = typer.Option(
        ..., "--older-than", help="Purge pending rows created longer ago than this: 24h, 90m, 7d."
    ),
    channel: str | None = typer.Option(None, help="Only email or sms."),
    template: str | None = typer.Option(None, help="Only this template."),
    priority: str | None = typer.Option(None, help="Only low, normal, high or urgent."),
    recipient: str | None = typer.Option(None, help="Only this recipient (external id)."),
    yes: bool = YES,
    actor: str | None = ACTOR,
    json_output: bool = JSON,
) -> None:
    """Mark stale pending / pending_retry rows `purged`: final, never sent, never deleted.

    Without --yes it only counts, per channel, status, template, priority and recipient, and
    shows a sample. Emergency only: every row is a message someone asked for.
    """
    from notify.actions.audit_trail import Actor
    from notify.actions.purge import PurgeRequest, purge
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notifyops.commands.audit import parse_window
    from notifyops.params import build

    hours = parse_window(older_than, "--older-than").total_seconds() / 3600
    request = build(
        PurgeRequest,
        options={"older_than_hours": "--older-than"},
        older_than_hours=hours,
        channel=channel,
        template=template,
        priority=priority,
        recipient=recipient,
    )
    here = runtime()
    with transaction(here.engine()) as session:
        result = purge(
            session=session,
            request=request,
            now=utcnow(),
            actor=Actor.from_cli(actor),
            apply=yes,
            catalog=here.catalog(),
        )
    if yes:
        summary = f"{result.purged} row(s) purged (operator action {result.action_id})"
    else:
        summary = f"{result.matched} row(s) would be purged; add --yes to do it"
    show(result, as_json=json_output, summary=summary)
