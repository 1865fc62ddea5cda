"""`notifyops demo`: the main job on embedded defaults, end to end."""

from __future__ import annotations

from pathlib import Path

import typer

from notify.console import out
from notify.db import transaction
from notify.migrate import upgrade_database
from notify.recipients import upsert_recipients
from notify.roster import parse_roster_file
from notify.settings import get_settings

SAMPLE_ROSTER = Path(__file__).resolve().parents[1] / "samples" / "roster.csv"


def demo(
    roster: Path = typer.Option(SAMPLE_ROSTER, help="Recipient file (CSV or JSON Lines)."),
) -> None:
    """Import a sample roster (a few bad rows included) into NOTIFY_DATABASE_URL and list it."""
    from notify.commands.recipients import list_command
    from notify.database import open_database

    settings = get_settings()
    revision = upgrade_database(settings.database_url)
    out.print(f"database {settings.masked()['database_url']} at revision {revision}")
    parsed = parse_roster_file(roster)
    with transaction(open_database(settings)) as session:
        counts = upsert_recipients(session=session, rows=parsed.rows)
    out.print(
        f"roster {roster.name}: {counts.created} new, {counts.updated} updated, "
        f"{len(parsed.errors)} rejected rows"
    )
    for error in parsed.errors:
        out.print(f"  line {error.line} {error.column}: {error.reason}")
    list_command(limit=50, offset=0, search=None, json_output=False)
