"""Bring a database to the newest schema with the packaged Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from notify.db import make_engine
from notify.masking import mask_url
from notify.schema import current_revision, newer_than_code

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str) -> str:
    """Run every pending migration; return the revision the database is at now. A database at a
    revision newer than the packaged migrations is refused (DatabaseNotReady naming it), changed
    in nothing."""
    engine = make_engine(url)
    try:
        newer = newer_than_code(mask_url(url), current_revision(engine))
    finally:
        engine.dispose()
    if newer is not None:
        raise newer
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    try:
        return current_revision(engine) or "base"
    finally:
        engine.dispose()
