"""Open the configured database: an engine, after checking the schema is at the newest migration.

The check reads `alembic_version` and compares it with the newest revision found in the packaged
migration files, without importing Alembic (commands start faster; `db upgrade` imports it).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, OperationalError, ProgrammingError

from notify.db import make_engine
from notify.errors import NotifyError
from notify.masking import mask_url

VERSIONS = Path(__file__).with_name("migrations") / "versions"
_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?([\w-]+)['\"]?", re.M)


class DatabaseNotReady(NotifyError):
    """The database cannot be reached or is not at the newest schema."""


class DatabaseUnreachable(DatabaseNotReady):
    """The database cannot be reached (refused, timed out, no such file): health reports it as a
    P1 finding where any other command stops."""


@cache
def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """The packaged migrations' revisions, and the ones another migration names as its parent."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS.glob("*.py"):
        for kind, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            (revisions if kind == "revision" else parents).add(value)
    return frozenset(revisions), frozenset(parents)


@cache
def head_revision() -> str | None:
    """The newest migration: the one revision no other migration names as its parent."""
    revisions, parents = _revisions()
    heads = sorted(revisions - parents)
    return heads[-1] if heads else None


def newer_than_code(safe_url: str, revision: str | None) -> DatabaseNotReady | None:
    """The error for a database at a revision none of the packaged migrations is: a newer
    notifyops upgraded it (the code was rolled back, or an old worker still runs). None when the
    revision is known (or the schema is missing). `db upgrade` cannot help there: it knows no
    way from that revision."""
    if revision is None or revision in _revisions()[0]:
        return None
    return DatabaseNotReady(
        f"the database {safe_url} is at revision {revision}, which this notifyops does not know "
        f"(its newest is {head_revision()}): a newer notifyops upgraded it. Run that version; to "
        f"go back to this one, first downgrade the database with the newer code "
        f"(`alembic downgrade {head_revision()}`, see docs/RUNBOOK.md, Upgrading notifyops)"
    )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError) as missing:
            if _unreachable(missing):
                raise
            return None


def _unreachable(error: OperationalError | ProgrammingError) -> bool:
    message = str(error.orig).lower()
    return "no such table" not in message and "does not exist" not in message


def missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite `url` names when it does not exist yet in an existing directory (None:
    it exists, its directory does not, or the URL is another database, in memory, or a `file:`
    URI)."""
    parsed = make_url(url)
    name = parsed.database or ""
    in_memory = name in ("", ":memory:") or name.startswith("file:")
    if parsed.get_backend_name() != "sqlite" or in_memory:
        return None
    path = Path(name)
    # no such directory: SQLite cannot open it either (unreachable, as health reports it)
    return path if path.parent.is_dir() and not path.exists() else None


def open_database(url: str) -> Engine:
    """An engine for `url`; DatabaseNotReady (one line, password masked) when it cannot be used.
    A SQLite file that does not exist is not created (a mistyped path would leave an empty file
    behind): only `db upgrade` creates the database."""
    safe = mask_url(url)
    missing = missing_sqlite_file(url)
    if missing is not None:  # unreachable: health reports it as its P1 finding
        raise DatabaseUnreachable(
            f"the database {safe} does not exist (no file {missing}): run `notifyops db upgrade` "
            "to create it, or set NOTIFY_DATABASE_URL to the existing one"
        )
    engine = make_engine(url)
    try:
        revision = current_revision(engine)
    except DatabaseError as error:  # unreachable, refused, or a file that is no SQLite database
        engine.dispose()
        first_line = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        message = f"cannot open the database {safe}: {mask_url(first_line)}"
        raise DatabaseUnreachable(message) from None
    if revision != head_revision():
        engine.dispose()
        newer = newer_than_code(safe, revision)
        if newer is not None:
            raise newer
        raise DatabaseNotReady(
            f"the database {safe} is at revision {revision or 'none'}, not the newest "
            f"({head_revision()}): run `notifyops db upgrade`"
        )
    return engine


def database_name(url: str) -> str:
    return make_url(url).database or ""
