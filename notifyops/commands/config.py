"""`notifyops config`: the effective settings, secrets masked."""

from __future__ import annotations

import typer

from notifyops.console import out, print_json, table


def config(
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the effective settings (environment NOTIFY_* over defaults), secrets masked."""
    from notify.alerts import parse_routing
    from notify.bootstrap import settings
    from notify.settings import ENV_PREFIX

    values = settings().masked()
    # in effect, every severity (a severity NOTIFY_ALERT_ROUTING leaves out keeps its default):
    # `P2=log` read as if P1, P3 and P4 went nowhere
    routing = parse_routing(values["alert_routing"])
    values["alert_routing"] = ";".join(
        f"{severity}={','.join(routes)}" for severity, routes in sorted(routing.items())
    )
    if json_output:
        print_json(values)
        return
    rows = [(f"{ENV_PREFIX}{name.upper()}", value) for name, value in values.items()]
    out.print(table("Effective settings", ["variable", "value"], rows))
