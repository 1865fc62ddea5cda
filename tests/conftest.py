"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from NOTIFY_TEST_POSTGRES_URL (default: the local server, user postgres). Each test
session creates its own database and drops it afterwards. Without PostgreSQL the Postgres half is
skipped locally, but fails under CI=true: in CI a missing database is an error, not a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import prefect.main  # noqa: F401  (see below)
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from notify.bootstrap import Runtime, using
from notify.db import Base, make_engine
from notify.migrate import upgrade_database
from notify.settings import Settings, load_settings

pytest_plugins = ["tests.aws_fixtures"]

# Prefect sets up its logging when `prefect.main` is first imported: its console handler (on the
# root logger) writes to the sys.stderr of that moment. Imported here, that is pytest's
# session-long capture. Imported first inside a test (the CLI and `flows` import Prefect lazily),
# it was that test's capsys stream, closed when the test ended: every later test whose logs
# reached the root logger printed a "Logging error" traceback (tests/test_alerts.py then
# tests/test_secrets.py, run alone in that order).

POSTGRES_ADMIN_URL = os.environ.get(
    "NOTIFY_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# the `notifyops` processes tests start run their commands themselves, never in a standby that a
# developer keeps running (tests/test_standby.py starts its own)
os.environ["NOTIFY_STANDBY"] = "off"


def _admin_engine() -> Engine:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"notifyops_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error.orig}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'notifyops.db'}"
    upgrade_database(url)
    return url


_ENGINES: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def empty_tables(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database: the test runs once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    empty_tables(engine_for(url))
    return url


@pytest.fixture
def engine(db_url: str) -> Engine:
    return engine_for(db_url)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, sender="memory")


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Environment for running `notifyops` in-process against the test database."""
    for name in list(os.environ):
        if name.startswith("NOTIFY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NOTIFY_DATABASE_URL", db_url)
    monkeypatch.setenv("NOTIFY_SENDER", "memory")
    monkeypatch.chdir(tmp_path)
    with using(Runtime(load_settings())):
        yield db_url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for engine in _ENGINES.values():
        engine.dispose()


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect API for the whole session (it costs ~20 s to start)."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_LOGGING_LEVEL, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_LOGGING_LEVEL: "WARNING"}),
    ):
        yield


@pytest.fixture
def flow_env(prefect_harness: None, cli_env: str) -> str:
    """Flows run against the test database with the in-memory sender."""
    return cli_env
