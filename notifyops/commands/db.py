"""`notifyops db`: schema management."""

from __future__ import annotations

import typer

from notifyops.console import out, print_json

app = typer.Typer(
    help="Database schema: bring any database to the newest migration.", no_args_is_help=True
)


@app.command("upgrade")
def upgrade(
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Apply every pending migration to NOTIFY_DATABASE_URL (SQLite or Postgres)."""
    from notify.bootstrap import settings as current_settings
    from notify.migrate import upgrade_database
    from notify.schema import head_revision

    settings = current_settings()
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
