"""Bring a database to the newest schema with the packaged Alembic migrations."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import OperationalError

from notify.db import make_engine
from notify.masking import mask_url
from notify.schema import DatabaseNotReady, current_revision, newer_than_code

MIGRATIONS = Path(__file__).with_name("migrations")
# How long `db upgrade` waits on PostgreSQL for a table another process holds (a delivery run's
# transaction) before giving up. Waiting longer stops delivery: each query on the table queues
# behind the waiting ALTER TABLE or CREATE INDEX.
LOCK_WAIT_S = 10.0
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired
_LOCKED_TABLE = re.compile(r"\b(?:ALTER TABLE|INDEX \w+ ON|DELETE FROM|UPDATE)\s+\"?(\w+)", re.I)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str, *, lock_wait_s: float = LOCK_WAIT_S) -> str:
    """Run every pending migration; return the revision the database is at now. A database at a
    revision newer than the packaged migrations is refused (DatabaseNotReady naming it), changed
    in nothing; so is an upgrade that waited `lock_wait_s` for a table on PostgreSQL (the whole
    upgrade is one transaction there: rolled back)."""
    engine = make_engine(url)
    try:
        newer = newer_than_code(mask_url(url), current_revision(engine))
    finally:
        engine.dispose()
    if newer is not None:
        raise newer
    config = alembic_config(url)
    config.attributes["lock_wait_ms"] = max(1, round(lock_wait_s * 1000))
    try:
        command.upgrade(config, "head")
    except OperationalError as error:
        if getattr(error.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
            raise
        found = _LOCKED_TABLE.search(error.statement or "")
        table = f"the table {found.group(1)}" if found else "a table"
        raise DatabaseNotReady(
            f"the upgrade waited {lock_wait_s:g} s for {table}, which another process is using "
            "(a delivery or check run), and changed nothing: pause the work pool, let the "
            "running flow runs end (docs/RUNBOOK.md, Upgrading notifyops) and run it again"
        ) from None
    engine = make_engine(url)
    try:
        return current_revision(engine) or "base"
    finally:
        engine.dispose()
