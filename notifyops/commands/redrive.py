"""`notifyops redrive`: put unknown or failed delivery rows back in the queue."""

from __future__ import annotations

import typer

from notifyops.console import out, print_json


def redrive_command(
    status: str = typer.Option(
        "unknown", help="Rows to redrive: unknown, failed, failed_permanent or pending_retry."
    ),
    channel: str | None = typer.Option(None, help="Only email or sms."),
    row_id: list[int] = typer.Option(
        [], "--id", min=1, max=2**31 - 1, help="Only these delivery_logs ids (repeatable)."
    ),
    yes: bool = typer.Option(False, "--yes", help="Do it (without it, only count)."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Put unknown or failed delivery rows back in the queue (an operator's decision).

    `unknown` rows may already have reached the provider: check the provider's delivery logs
    first, since redriving them can send a message twice. Without --yes it only counts.
    """
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notify.errors import InputError
    from notify.outbox import REDRIVABLE, redrive

    if status not in REDRIVABLE:
        raise InputError(f"--status: must be one of {', '.join(REDRIVABLE)}")
    if channel not in (None, "email", "sms"):
        raise InputError("--channel: must be email or sms")
    with transaction(runtime().engine()) as session:
        count = redrive(
            session=session,
            status=status,
            now=utcnow(),
            channel=channel,
            ids=row_id,
            dry_run=not yes,
        )
    if json_output:
        print_json({"status": status, "rows": count, "redriven": yes})
    elif yes:
        out.print(f"{count} {status} row(s) back to pending; `notifyops deliver` sends them")
    else:
        out.print(f"{count} {status} row(s) would be redriven; add --yes to do it")
