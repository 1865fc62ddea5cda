"""Index check (runbook section 6, "Verify indexes exist"): the indexes and unique constraints the
models declare (notify/db.py; the migrations create the same ones) against what the database has.

A declared index is `missing` when the database has no index of that name, `invalid` when
PostgreSQL has it but marked it invalid (a failed CREATE INDEX CONCURRENTLY: it is maintained on
every write but never used by a query). Names are read from the catalogue (`pg_index`,
`sqlite_master`), which also sees expression indexes such as the history index's created_at DESC.
"""

from __future__ import annotations

import warnings
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Dialect, Engine, MetaData, UniqueConstraint, inspect, text
from sqlalchemy.exc import SAWarning
from sqlalchemy.schema import CreateIndex

from notify.db import Base

_POSTGRES_INDEXES = text(
    """
    SELECT c.relname AS name, t.relname AS table_name, i.indisvalid AS valid
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace s ON s.oid = c.relnamespace
    WHERE s.nspname = current_schema()
    """
)
_SQLITE_INDEXES = text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")


class IndexState(StrEnum):
    missing = "missing"
    invalid = "invalid"


class IndexProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    table: str
    index: str
    state: IndexState
    fix: str


class _Found(BaseModel):
    valid: dict[tuple[str, str], bool]  # (table, index) -> valid
    unique_constraints: set[tuple[str, str]]


def declared_indexes(metadata: MetaData | None = None) -> list[tuple[str, str, bool]]:
    """(table, name, is_unique_constraint) for every declared index and unique constraint."""
    declared: list[tuple[str, str, bool]] = []
    for table in (metadata or Base.metadata).sorted_tables:
        declared += [(table.name, str(index.name), False) for index in table.indexes]
        declared += [
            (table.name, str(c.name), True)
            for c in table.constraints
            if isinstance(c, UniqueConstraint)
        ]
    return sorted(declared)


def missing_indexes(
    engine: Engine | Connection, metadata: MetaData | None = None
) -> list[IndexProblem]:
    """Declared indexes the database lacks or holds invalid; [] when all are there and valid.

    Takes an Engine (opens a connection) or a Connection (health passes its session's)."""
    if isinstance(engine, Connection):
        found = _found(engine, metadata or Base.metadata)
    else:
        with engine.connect() as connection:
            found = _found(connection, metadata or Base.metadata)
    dialect = engine.dialect
    problems = []
    for table, name, constraint in declared_indexes(metadata):
        state = _state(found, table, name, constraint)
        if state is not None:
            fix = _fix(state, name, _create_statement(metadata or Base.metadata, name, dialect))
            problems.append(IndexProblem(table=table, index=name, state=state, fix=fix))
    return problems


def _state(found: _Found, table: str, name: str, constraint: bool) -> IndexState | None:
    valid = found.valid.get((table, name))
    if valid is None and constraint and (table, name) in found.unique_constraints:
        return None  # SQLite keeps a unique constraint's index under an automatic name
    if valid is None:
        return IndexState.missing
    return None if valid else IndexState.invalid


def _found(connection: Connection, metadata: MetaData) -> _Found:
    if connection.dialect.name == "postgresql":
        rows = connection.execute(_POSTGRES_INDEXES)
        return _Found(valid={(t, n): bool(v) for n, t, v in rows}, unique_constraints=set())
    valid = {(t, n): True for n, t in connection.execute(_SQLITE_INDEXES)}
    return _Found(valid=valid, unique_constraints=_unique_constraints(connection, metadata))


def _unique_constraints(connection: Connection, metadata: MetaData) -> set[tuple[str, str]]:
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    with warnings.catch_warnings():  # SQLite cannot reflect expression indexes: they are listed
        warnings.simplefilter("ignore", SAWarning)  # by name in sqlite_master all the same
        return {
            (table.name, str(c["name"]))
            for table in metadata.sorted_tables
            if table.name in existing
            for c in inspector.get_unique_constraints(table.name)
            if c.get("name")
        }


def _create_statement(metadata: MetaData, name: str, dialect: Dialect) -> str:
    """The CREATE INDEX statement of a declared index (a unique constraint: a unique index of its
    name and columns), for this database."""
    for table in metadata.sorted_tables:
        for index in table.indexes:
            if index.name == name:
                return str(CreateIndex(index).compile(dialect=dialect))
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint) and constraint.name == name:
                columns = ", ".join(column.name for column in constraint.columns)
                return f"CREATE UNIQUE INDEX {name} ON {table.name} ({columns})"
    raise LookupError(name)


def _fix(state: IndexState, name: str, create: str) -> str:
    """What to run. Not `notifyops db upgrade`: a database the check can read is at the newest
    migration already (every command refuses one that is not), so an upgrade changes nothing."""
    if state is IndexState.invalid:
        return f"REINDEX INDEX CONCURRENTLY {name}; (or DROP INDEX {name}; then {create})"
    return f"{create}; (on a busy PostgreSQL, CREATE INDEX CONCURRENTLY)"
