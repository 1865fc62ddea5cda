"""Top-level commands that are not a group: config."""

from __future__ import annotations

import typer

from notify.console import out, print_json, table
from notify.settings import ENV_PREFIX, get_settings


def register(app: typer.Typer) -> None:
    from notify.commands.demo import demo

    app.command("config")(config)
    app.command("demo")(demo)


def config(
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the effective settings (environment NOTIFY_* over defaults), secrets masked."""
    values = get_settings().masked()
    if json_output:
        print_json(values)
        return
    rows = [(f"{ENV_PREFIX}{name.upper()}", value) for name, value in values.items()]
    out.print(table("Effective settings", ["variable", "value"], rows))
