"""`notifyops db`: schema management."""

from __future__ import annotations

import typer

from notify.console import out, print_json
from notify.migrate import head_revision, upgrade_database
from notify.settings import get_settings

app = typer.Typer(
    help="Database schema: bring any database to the newest migration.", no_args_is_help=True
)


@app.command("upgrade")
def upgrade(
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Apply every pending migration to NOTIFY_DATABASE_URL (SQLite or Postgres)."""
    settings = get_settings()
    revision = upgrade_database(settings.database_url)
    result = {
        "database": settings.masked()["database_url"],
        "revision": revision,
        "head": head_revision(),
    }
    if json_output:
        print_json(result)
    else:
        out.print(f"database {result['database']} is at revision {revision} (head)")
