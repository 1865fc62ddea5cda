"""Operator commands: `notifyops redrive` and `notifyops serve`."""

from __future__ import annotations

import typer

from notify.console import out, print_json
from notify.database import open_database
from notify.db import transaction, utcnow
from notify.errors import InputError
from notify.outbox import REDRIVABLE, redrive
from notify.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("redrive")(redrive_command)
    app.command("serve")(serve)


def redrive_command(
    status: str = typer.Option("unknown", help=f"Rows to redrive: {', '.join(REDRIVABLE)}."),
    channel: str | None = typer.Option(None, help="Only email or sms."),
    row_id: list[int] = typer.Option([], "--id", help="Only these delivery_logs ids (repeatable)."),
    yes: bool = typer.Option(False, "--yes", help="Do it (without it, only count)."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Put unknown or failed delivery rows back in the queue (an operator's decision).

    `unknown` rows may already have reached the provider: check the provider's delivery logs
    first, since redriving them can send a message twice. Without --yes it only counts.
    """
    if status not in REDRIVABLE:
        raise InputError(f"--status: must be one of {', '.join(REDRIVABLE)}")
    if channel not in (None, "email", "sms"):
        raise InputError("--channel: must be email or sms")
    with transaction(open_database(get_settings())) as session:
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


def serve() -> None:
    """Run every scheduled deployment of prefect.yaml on this machine, without a work pool.

    Run it from the repository root; Ctrl-C stops it.
    """
    import importlib
    import os

    from notify.commands.flowrun import PREFECT_DEFAULTS

    for variable, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    raise typer.Exit(importlib.import_module("deployments.serve").main([]))
