"""Open the configured database for a command: one engine per process, schema checked."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from notify.db import make_engine
from notify.errors import NotifyError
from notify.migrate import current_revision, head_revision
from notify.settings import Settings


class DatabaseNotReady(NotifyError):
    """The database cannot be reached or is not at the newest schema."""


_AT_HEAD: set[str] = set()


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    return make_engine(url)


def open_database(settings: Settings) -> Engine:
    """The engine for NOTIFY_DATABASE_URL, after checking the schema is at the newest migration."""
    url = settings.database_url
    if url in _AT_HEAD:  # checked once per process: tasks call this for every batch
        return _engine(url)
    safe = make_url(url).render_as_string(hide_password=True)
    try:
        revision = current_revision(url)
    except OperationalError as error:
        first_line = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DatabaseNotReady(f"cannot open the database {safe}: {first_line}") from None
    if revision != head_revision():
        raise DatabaseNotReady(
            f"the database {safe} is at revision {revision or 'none'}, not the newest: "
            "run `notifyops db upgrade`"
        )
    _AT_HEAD.add(url)
    return _engine(url)
