"""Recipient persistence: bulk upsert by external_id, listing, lookup by external ids."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from notify.db import RECIPIENTS, Recipient, Turn, dialect_of, take_turn, utcnow
from notify.roster import RecipientRow

UPSERT_CHUNK = 500
_UPDATABLE = (
    "name",
    "email",
    "phone",
    "timezone",
    "receive_email",
    "receive_sms",
    "quiet_hours_start",
    "quiet_hours_end",
    "updated_at",
)


@dataclass(frozen=True)
class UpsertCounts:
    created: int
    updated: int


def hold_roster(connection: Connection, *, to_change: bool) -> None:
    """Until the caller's transaction ends, keep a roster change and a store of messages apart.
    A store (enqueue) copies each recipient's address into its rows; a roster change (an import)
    then moves the waiting rows to the new addresses (notify.recheck.follow_addresses). Without
    this, a store that read the old address while an import was under way committed its rows
    after the import had moved the waiting ones, and they went to the old address.

    PostgreSQL: the roster's turn (`notify.db.take_turn`, `Turn.ROSTER`), shared by stores
    (they never wait for each other) and exclusive for a change: a change waits for the stores
    under way to commit, then moves their rows; a store that starts during a change waits for
    it, then reads the new addresses. SQLite: the caller takes the database's one write lock at
    once (a no-op write), before it reads a recipient."""
    take_turn(connection, Turn.ROSTER, shared=not to_change)
    if connection.dialect.name != "postgresql":  # SQLite's write lock, before any read
        connection.execute(text("UPDATE recipients SET id = id WHERE 0 = 1"))


def upsert_recipients(*, session: Session, rows: Sequence[RecipientRow]) -> UpsertCounts:
    """Insert new recipients and update existing ones (matched on external_id), in bulk. An update
    leaves the columns a row has as absent (the file did not give them) as they are stored. Holds
    the roster (`hold_roster`) until the caller's transaction ends."""
    hold_roster(session.connection(), to_change=True)
    counts = upsert_counts(session=session, rows=rows)
    for absent, group in _by_absent(rows).items():
        statement = _upsert_statement(session, keep=absent)
        for start in range(0, len(group), UPSERT_CHUNK):
            chunk = group[start : start + UPSERT_CHUNK]
            session.connection().execute(statement, [_values(row) for row in chunk])
    return counts


def _by_absent(rows: Sequence[RecipientRow]) -> dict[frozenset[str], list[RecipientRow]]:
    """Rows grouped by the columns they leave out (one group for a CSV file: its header)."""
    groups: dict[frozenset[str], list[RecipientRow]] = defaultdict(list)
    for row in rows:
        groups[row.absent].append(row)
    return groups


def upsert_counts(*, session: Session, rows: Sequence[RecipientRow]) -> UpsertCounts:
    """How many of these rows upsert_recipients would insert and how many it would update: reads
    which external ids exist and writes nothing (what `recipients import --dry-run` reports)."""
    known = known_external_ids(session=session, external_ids=[row.external_id for row in rows])
    created = sum(1 for row in rows if row.external_id not in known)
    return UpsertCounts(created=created, updated=len(rows) - created)


def _values(row: RecipientRow) -> dict[str, Any]:
    now = utcnow()
    return {**row.as_values(), "created_at": now, "updated_at": now}


def _upsert_statement(session: Session, *, keep: frozenset[str] = frozenset()) -> Any:
    """INSERT ... ON CONFLICT (external_id) DO UPDATE, executed as executemany (compiled once); the
    update leaves the `keep` columns alone."""
    dialect = dialect_of(session)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RECIPIENTS)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[Recipient.external_id],
        set_={column: getattr(excluded, column) for column in _UPDATABLE if column not in keep},
    )


def _existing_ids(session: Session, external_ids: list[str]) -> set[str]:
    query = select(Recipient.external_id).where(Recipient.external_id.in_(external_ids))
    return set(session.scalars(query))


def list_recipients(
    *, session: Session, limit: int = 100, offset: int = 0, search: str | None = None
) -> list[Recipient]:
    return list(
        session.scalars(
            _filtered(search).order_by(Recipient.external_id).limit(limit).offset(offset)
        )
    )


def count_recipients(*, session: Session, search: str | None = None) -> int:
    query = select(func.count()).select_from(_filtered(search).subquery())
    return int(session.scalar(query) or 0)


def _filtered(search: str | None) -> Select[Recipient]:
    """Recipients whose external_id or name contains `search` literally (case-insensitive):
    `%` and `_` are characters to find, not wildcards."""
    query = select(Recipient)
    text = (search or "").strip()
    if text:
        pattern = f"%{escape_like(text.lower())}%"
        query = query.where(
            func.lower(Recipient.external_id).like(pattern, escape=LIKE_ESCAPE)
            | func.lower(Recipient.name).like(pattern, escape=LIKE_ESCAPE)
        )
    return query


LIKE_ESCAPE = "\\"


def escape_like(text: str) -> str:
    """`text` with LIKE's wildcards (and the escape character itself) escaped."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return text


def recipients_by_external_id(
    *, session: Session, external_ids: Iterable[str]
) -> dict[str, Recipient]:
    wanted = list(dict.fromkeys(name.strip() for name in external_ids))
    found: dict[str, Recipient] = {}
    for start in range(0, len(wanted), UPSERT_CHUNK):
        chunk = wanted[start : start + UPSERT_CHUNK]
        query = select(Recipient).where(Recipient.external_id.in_(chunk))
        found.update((r.external_id, r) for r in session.scalars(query))
    return found


def known_external_ids(*, session: Session, external_ids: Iterable[str]) -> set[str]:
    """Which of these external ids exist (ids only, so a million of them stay cheap); ids are
    compared without leading and trailing spaces, as the importer stores them."""
    wanted = [name.strip() for name in external_ids]
    known: set[str] = set()
    for start in range(0, len(wanted), UPSERT_CHUNK):
        known |= _existing_ids(session, wanted[start : start + UPSERT_CHUNK])
    return known


def unreachable_external_ids(*, session: Session, external_ids: Iterable[str]) -> list[str]:
    """Which of these recipients no message can reach, as stored: no email address or email
    off, and no phone number or SMS off (`receive_sms` defaults to false, so a roster of phone
    numbers alone reaches nobody); sorted."""
    wanted = list(dict.fromkeys(name.strip() for name in external_ids))
    r = Recipient
    email = r.email.is_not(None) & r.receive_email.is_(True)
    sms = r.phone.is_not(None) & r.receive_sms.is_(True)
    found: list[str] = []
    for start in range(0, len(wanted), UPSERT_CHUNK):
        chunk = wanted[start : start + UPSERT_CHUNK]
        query = select(r.external_id).where(r.external_id.in_(chunk), ~(email | sms))
        found.extend(session.scalars(query))
    return sorted(found)
