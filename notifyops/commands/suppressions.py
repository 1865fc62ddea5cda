"""`notifyops suppressions list`: who is muted on which channel, until when, and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from notifyops.action_output import JSON, utc_minute
from notifyops.console import out, print_json, table

if TYPE_CHECKING:
    from notify.actions.suppressions import SuppressionView

app = typer.Typer(
    help="Suppressions: mutes by operators (recipients mute) and by loop detection.",
    no_args_is_help=True,
)


@app.command("list")
def list_command(
    recipient: str | None = typer.Option(None, help="Only this recipient (external id)."),
    channel: str | None = typer.Option(None, help="Only email or sms."),
    include_expired: bool = typer.Option(
        False, "--all", help="Also expired and lifted ones (the whole history)."
    ),
    limit: int = typer.Option(200, min=1, max=10_000, help="How many to show, newest first."),
    json_output: bool = JSON,
) -> None:
    """Active suppressions, newest first (addresses masked); --all for the history."""
    from notify.actions.suppressions import list_suppressions
    from notify.bootstrap import runtime
    from notify.db import Channel, transaction, utcnow
    from notify.errors import InputError

    if channel not in (None, "email", "sms"):
        raise InputError("--channel: must be email or sms")
    with transaction(runtime().engine()) as session:
        found = list_suppressions(
            session=session,
            now=utcnow(),
            recipient=recipient,
            channel=Channel(channel) if channel else None,
            include_expired=include_expired,
            limit=limit,
        )
    if json_output:
        print_json({"suppressions": found})
        return
    columns = ["id", "recipients", "channel", "address", "title", "until", "active", "by", "reason"]
    rows = [_row(s) for s in found]
    what = "Suppressions" if include_expired else "Active suppressions"
    out.print(table(f"{what} ({len(rows)})", columns, rows))


def _row(s: SuppressionView) -> list[object]:
    owners = ", ".join(s.recipients)
    until = utc_minute(s.until) if s.until else "(no end)"
    return [s.id, owners, s.channel, s.address_masked, s.title, until, s.active, s.source, s.reason]
