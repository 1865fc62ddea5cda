"""Alembic environment: the URL comes from notify.settings (NOTIFY_DATABASE_URL) unless the caller
set `sqlalchemy.url` on the Config (as `notifyops db upgrade` does)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from notify.db import Base, make_engine
from notify.settings import load_settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or load_settings().database_url


# SQLite cannot reflect expression indexes (created_at DESC), so autogenerate would report them as
# changed on every run there; Postgres compares them for real.
EXPRESSION_INDEXES = {"ix_notifications_history", "uq_delivery_logs_notification_channel"}


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    dialect = context.get_context().dialect
    sqlite = dialect is not None and dialect.name == "sqlite"
    return not (sqlite and type_ == "index" and name in EXPRESSION_INDEXES)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,
        include_object=_include_object,
        # Alembic commits after each migration on SQLite, taking its DDL for non-transactional
        transactional_ddl=True if sqlite else None,
    )
    if not sqlite:
        with context.begin_transaction():
            # `notifyops db upgrade` gives up on a table another process holds rather than stop
            # every query on it while it waits (notify.migrate.LOCK_WAIT_S)
            lock_wait_ms = config.attributes.get("lock_wait_ms")
            if lock_wait_ms is not None:
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_wait_ms)}")
            context.run_migrations()
        return
    # A batch migration on SQLite copies a table and drops the old one. With foreign keys on (as
    # notify.db.make_engine opens every connection), dropping `notifications` (0008) or
    # `delivery_logs` (0006) deleted every row referencing it, ON DELETE CASCADE: an upgrade
    # from 0007 or older emptied the delivery log. SQLite ignores the pragma inside a
    # transaction, hence the commits around it.
    # And in one transaction, as on PostgreSQL: the driver's own transaction handling begins one
    # only before an INSERT, UPDATE or DELETE, so a migration that failed (a downgrade the data
    # does not allow, an interrupted upgrade) left the DDL before it done and the revision
    # unmoved: a schema that is no revision.
    _sqlite_foreign_keys(connection, on=False)
    driver = connection.connection.driver_connection
    handling = getattr(driver, "isolation_level", None)
    try:
        driver.isolation_level = None  # type: ignore[union-attr]
        with context.begin_transaction():
            connection.exec_driver_sql("BEGIN")
            before = _broken_foreign_keys(connection)
            context.run_migrations()
            # checked before the commit, so a migration that broke rows changes nothing; rows
            # broken before it (deleted with foreign keys off, e.g. in the sqlite3 shell) are no
            # migration's doing and do not stop the upgrade (they stopped every later one)
            after = _broken_foreign_keys(connection)
            added = {
                key: n - before.get(key, 0) for key, n in after.items() if n > before.get(key, 0)
            }
            if added:
                raise RuntimeError(
                    "the migrations would leave rows whose foreign key is broken (table -> "
                    f"referenced table: rows): {added}; nothing was changed"
                )
    finally:
        driver.isolation_level = handling  # type: ignore[union-attr]
        _sqlite_foreign_keys(connection, on=True)


def _broken_foreign_keys(connection: Connection) -> dict[str, int]:
    """`table -> referenced table`: how many rows reference no row there (SQLite)."""
    counts: dict[str, int] = {}
    for table, _rowid, parent, _fkid in connection.exec_driver_sql("PRAGMA foreign_key_check"):
        key = f"{table} -> {parent}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    if connection.in_transaction():
        connection.commit()
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
