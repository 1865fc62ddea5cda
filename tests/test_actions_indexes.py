"""Index check (runbook section 6): declared indexes missing or invalid on the database checked.
Each test works on a database of its own, since it breaks the schema on purpose."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from notify.actions.indexes import IndexState, declared_indexes, missing_indexes
from notify.db import Base, make_engine
from notify.migrate import upgrade_database
from tests.conftest import IN_CI, POSTGRES_ADMIN_URL, _admin_engine
from tests.factories import AS_OF, Rows


def _postgres_scratch() -> Iterator[str]:
    name = f"notifyops_idx_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL not reachable: {error.orig}")
        pytest.skip(f"PostgreSQL not reachable: {error.orig}")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def scratch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A freshly migrated database of this test's own."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'scratch.db'}"])
    else:
        urls = _postgres_scratch()
    url = next(urls)
    upgrade_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    next(urls, None)  # drops the Postgres database


def test_a_migrated_database_has_every_declared_index(scratch: Engine) -> None:
    declared = {name for _, name, _ in declared_indexes()}
    assert {"ix_notifications_history", "ix_delivery_logs_due", "uq_recipients_external_id"} <= (
        declared
    )
    assert missing_indexes(scratch) == []
    with scratch.connect() as connection:  # health passes its session's connection
        assert missing_indexes(connection) == []


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_a_migrated_database_indexes_only_the_rows_the_models_declare(scratch: Engine) -> None:
    """The migrations and notify/db.py agree on which indexes are partial: an index that holds
    every row where the models meant only some costs each write an entry it did not need."""
    dialect = scratch.dialect.name
    declared: dict[str | None, bool] = {}
    found: dict[str | None, bool] = {}
    inspector = inspect(scratch)
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            if index.expressions and all(hasattr(e, "name") for e in index.expressions):
                declared[index.name] = index.dialect_options[dialect]["where"] is not None
        for reflected in inspector.get_indexes(table.name):
            found[reflected["name"]] = f"{dialect}_where" in reflected.get("dialect_options", {})
    assert {name: found.get(name) for name in declared} == declared
    assert declared["ix_delivery_logs_channel_sent"] and declared["ix_delivery_logs_due"]
    assert declared["ix_delivery_logs_status_lease"] is (dialect == "postgresql")


def test_a_dropped_index_is_reported_missing_with_the_fix(scratch: Engine) -> None:
    with scratch.begin() as connection:
        connection.execute(text("DROP INDEX ix_notifications_history"))
        connection.execute(text("DROP INDEX ix_delivery_logs_due"))
    problems = missing_indexes(scratch)
    assert [(p.table, p.index, p.state) for p in problems] == [
        ("delivery_logs", "ix_delivery_logs_due", IndexState.missing),
        ("notifications", "ix_notifications_history", IndexState.missing),
    ]
    # the database is at the newest migration (every command refuses one that is not), so
    # `notifyops db upgrade` would change nothing: the fix is the statement that recreates it
    assert all("db upgrade" not in p.fix for p in problems)
    assert problems[0].fix.startswith("CREATE INDEX ix_delivery_logs_due ON delivery_logs ")
    upgrade_database(scratch.url.render_as_string(hide_password=False))
    assert len(missing_indexes(scratch)) == 2, "an upgrade at head recreates nothing"
    with scratch.begin() as connection:
        for problem in problems:
            connection.execute(text(problem.fix.split(";")[0]))
    assert missing_indexes(scratch) == []


@pytest.mark.parametrize("scratch", ["postgres"], indirect=True)  # a PostgreSQL state
def test_an_invalid_postgres_index_is_reported(scratch: Engine) -> None:
    rows = Rows()
    who = rows.recipient("technician:1")
    rows.many(2, who, created_at=AS_OF)  # same channel and sent_at twice
    rows.insert(scratch)
    with scratch.begin() as connection:
        connection.execute(text("DROP INDEX ix_delivery_logs_channel_sent"))
    autocommit = scratch.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection, pytest.raises(DBAPIError):
        connection.execute(  # fails on the duplicates and leaves an invalid index behind
            text(
                "CREATE UNIQUE INDEX CONCURRENTLY ix_delivery_logs_channel_sent "
                "ON delivery_logs (channel, sent_at)"
            )
        )
    (problem,) = missing_indexes(scratch)
    assert (problem.index, problem.state) == ("ix_delivery_logs_channel_sent", IndexState.invalid)
    assert "REINDEX" in problem.fix
