"""Bring a database to the newest schema with the packaged Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from notify.db import make_engine
from notify.schema import current_revision

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str) -> str:
    """Run every pending migration; return the revision the database is at now."""
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    try:
        return current_revision(engine) or "base"
    finally:
        engine.dispose()
