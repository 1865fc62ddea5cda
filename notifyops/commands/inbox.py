"""`notifyops inbox RECIPIENT`: the in-app notification history and unread count;
`notifyops inbox mark-read RECIPIENT (--id N | --all)`."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from notifyops.action_output import JSON
from notifyops.console import out, print_json, table


class _ShowByDefault(TyperGroup):
    """`inbox RECIPIENT ...` means `inbox show RECIPIENT ...`."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_ShowByDefault,
    help="The in-app inbox: `inbox RECIPIENT` lists notifications, `inbox mark-read` marks them.",
    no_args_is_help=True,
)
RECIPIENT = typer.Argument(..., help="External id, e.g. technician:123.")


@app.command("show")
def show_command(
    recipient: str = RECIPIENT,
    unread: bool = typer.Option(False, "--unread", help="Only unread notifications."),
    limit: int = typer.Option(20, min=1, max=500, help="How many, newest first."),
    json_output: bool = JSON,
) -> None:
    """A recipient's notifications, newest first, and the unread count."""
    from notify.actions.inbox import inbox, unread_count
    from notify.bootstrap import runtime
    from notify.db import transaction

    with transaction(runtime().engine()) as session:
        items = inbox(session=session, recipient=recipient, unread_only=unread, limit=limit)
        count = unread_count(session=session, recipient=recipient)
    if json_output:
        print_json({"recipient": recipient, "unread": count, "notifications": items})
        return
    rows: list[list[Any]] = [
        [i.id, f"{i.created_at:%Y-%m-%d %H:%M}", "" if i.read else "●", i.priority, i.title]
        for i in items
    ]
    title = f"Inbox of {recipient}: {count} unread"
    out.print(table(title, ["id", "created (UTC)", "unread", "priority", "title"], rows))


@app.command("mark-read")
def mark_read_command(
    recipient: str = RECIPIENT,
    row_id: list[int] = typer.Option(
        [], "--id", min=1, max=2**31 - 1, help="Notification id (repeatable)."
    ),
    all_unread: bool = typer.Option(False, "--all", help="Every unread notification."),
    json_output: bool = JSON,
) -> None:
    """Mark notifications read (--id N ... or --all).

    An id that is not one of this recipient's notifications refuses the command (exit 2) and
    nothing is marked.
    """
    from notify.actions.inbox import mark_read, unread_count
    from notify.bootstrap import runtime
    from notify.db import transaction
    from notify.errors import InputError

    if row_id and all_unread:
        raise InputError("--id and --all: give one, not both")
    if not row_id and not all_unread:
        raise InputError("mark-read: give --id N (repeatable) or --all")
    with transaction(runtime().engine()) as session:
        changed = mark_read(session=session, recipient=recipient, ids=row_id, all_unread=all_unread)
        left = unread_count(session=session, recipient=recipient)
    if json_output:
        print_json({"recipient": recipient, "marked_read": changed, "unread": left})
    else:
        out.print(f"{changed} notification(s) marked read; {left} unread left")
