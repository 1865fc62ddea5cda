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
    from sqlalchemy.exc import DatabaseError, ProgrammingError

    from notify.bootstrap import settings as current_settings
    from notify.masking import mask_url
    from notify.migrate import upgrade_database
    from notify.schema import DatabaseNotReady, head_revision

    settings = current_settings()
    try:
        revision = upgrade_database(settings.database_url)
    except DatabaseError as error:
        reason = mask_url(str(error.orig or error).strip().splitlines()[0])
        where = mask_url(settings.database_url)
        if "already exists" in reason:  # PostgreSQL rolls the whole upgrade back
            made = "nothing was created" if where.startswith("postgresql") else "stopped there"
            raise DatabaseNotReady(
                f"the database {where} already holds a table of another application ({reason}), "
                f"and {made}: give notifyops a database of its own"
            ) from None
        if isinstance(error, ProgrammingError):
            raise
        raise DatabaseNotReady(f"cannot open the database {where}: {reason}") from None
    result = {
        "database": settings.masked()["database_url"],
        "revision": revision,
        "head": head_revision(),
    }
    if json_output:
        print_json(result)
    else:
        out.print(f"database {result['database']} is at revision {revision} (head)")
