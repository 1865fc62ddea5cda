"""Storing planned chunks: COPY on Postgres, executemany INSERTs elsewhere (SQLite).

Both write in the caller's transaction and return the notification ids in the order of the chunk.
The idempotency key of a notification is `<request key>#<position in the request>`: unique in
the table, so a request is never stored twice (notify.enqueue makes a second, concurrent run of
the same key wait for the first and answer its rows).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from notify.bulk_insert import (
    NULL,
    copy_in,
    copy_supported,
    copy_time,
    copy_value,
    insert_many,
    insert_returning_ids,
    reserve_ids,
)
from notify.db import DELIVERY_LOGS, NOTIFICATIONS, Channel, session_factory
from notify.enqueue_plan import Outcome, Planned
from notify.rendering import RenderedMessage
from notify.settings import Priority

NOTIFICATION_COPY_COLUMNS = (
    "id",
    "recipient_id",
    "idempotency_key",
    "title",
    "message",
    "html",
    "sms_text",
    "priority",
    "template_name",
    "category",
    "context",
    "request_id",
    "flow_run_id",
    "deployment_name",
    "read",
    "created_at",
    "request_fingerprint",
)
LOG_COPY_COLUMNS = (
    "notification_id",
    "recipient_email",
    "recipient_phone",
    "channel",
    "status",
    "decision",
    "attempts",
    "segments",
    "cost",
    "created_at",
    "next_attempt_at",
)
_LOG_VALUE_COLUMNS = LOG_COPY_COLUMNS[3:]


@dataclass(frozen=True)
class RequestColumns:
    """The columns every notification of a request shares."""

    context: Mapping[str, Any]
    request_id: str
    flow_run_id: str | None
    deployment_name: str | None
    idempotency_key: str | None
    now: datetime
    fingerprint: str | None = None  # a keyed request's (SendRequest.fingerprint)


class ChunkStore(Protocol):
    """Stores a chunk in three steps: `reserve` (reads: the connection), `encode` (CPU only),
    `write` (the connection). With `overlaps`, `write` may run on a background thread while the
    caller decides the next chunk, the caller not touching the connection meanwhile."""

    overlaps: bool

    def reserve(self, connection: Connection, count: int) -> list[int] | None: ...

    def encode(
        self, planned: Sequence[Planned], ids: list[int] | None, positions: Sequence[int]
    ) -> Any:
        """`positions`: each recipient's place in the request (its notification's key)."""
        ...

    def write(self, connection: Connection, encoded: Any) -> list[int]:
        """Store an encoded chunk; the notification ids in the chunk's order."""
        ...


def store_for(connection: Connection, shared: RequestColumns) -> ChunkStore:
    return CopyStore(shared) if copy_supported(connection) else InsertStore(shared)


class ChunkWriter:
    """Writes encoded chunks one at a time, in order, on one background thread when the store
    overlaps (Postgres: the server parses a COPY while Python decides the next chunk), inline
    otherwise. Leaving the block always waits for the write in flight, so the caller's
    transaction is never rolled back or committed under a running COPY."""

    def __init__(self, store: ChunkStore, connection: Connection) -> None:
        self.store, self.connection = store, connection
        self.ids: list[int] = []
        self._pool = ThreadPoolExecutor(1, "enqueue-copy") if store.overlaps else None
        self._running: Future[list[int]] | None = None

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.wait()
            elif self._running is not None:
                wait([self._running])  # its own error, if any, is moot: the request failed
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def start(self, encoded: Any) -> None:
        """Write `encoded` (after the write in flight, which must have been waited for)."""
        if self._pool is None:
            self.ids += self.store.write(self.connection, encoded)
            return
        self._running = self._pool.submit(self.store.write, self.connection, encoded)

    def wait(self) -> None:
        """Until the write in flight is done (its error raised here); the connection is free."""
        if self._running is not None:
            running, self._running = self._running, None
            self.ids += running.result()


@contextmanager
def chunk_reader(session: Session, store: ChunkStore) -> Iterator[Session]:
    """The session that reads the chunks (recipients, conditions, reserved ids).

    When the store writes in the background (Postgres) and the caller's transaction has written
    nothing yet, the reads go through a second connection, so chunk k+1 is read while chunk k
    is written: the writing connection then only writes (measured: a request's reads were a
    third of the one connection's time). What the second connection sees is what the
    transaction sees (READ COMMITTED; the transaction's own rows are the chunks already written,
    other recipients than any chunk still to read, and every read names its recipients).
    Otherwise (SQLite, a bind that is not an engine, or a transaction that already wrote, e.g.
    the recipients it is about to send to) the caller's session reads, between writes."""
    bind = session.get_bind()
    if not (store.overlaps and isinstance(bind, Engine) and not _wrote(session)):
        yield session
        return
    with session_factory(bind)() as reads:
        yield reads


def _wrote(session: Session) -> bool:
    """Whether the session's transaction has written anything (an xid is assigned on the first
    write, PostgreSQL)."""
    return session.scalar(text("SELECT txid_current_if_assigned()")) is not None


def message_values(message: RenderedMessage, priority: Priority) -> dict[str, Any]:
    return {
        "title": message.subject[:300],
        "message": message.text,
        "html": message.html,
        "sms_text": message.sms,
        "priority": priority.value,
        "template_name": message.template_name,
        "category": message.category,
    }


@dataclass
class CopyStore:
    """Reserve ids from the sequence, then COPY notifications and delivery rows."""

    shared: RequestColumns
    _message: tuple[RenderedMessage, Priority, str] | None = None
    _logs: dict[Outcome, tuple[tuple[bool, str], ...]] = field(default_factory=dict)
    _fields: dict[int, tuple[Any, str]] = field(default_factory=dict)
    _suffix: str = ""
    _key: str | None = None

    def __post_init__(self) -> None:
        s = self.shared
        context = json.dumps(dict(s.context))
        tail = (s.request_id, s.flow_run_id, s.deployment_name, False, s.now, s.fingerprint)
        self._suffix = "\t".join(copy_value(v) for v in (context, *tail)) + "\n"
        self._key = copy_value(s.idempotency_key) if s.idempotency_key else None

    overlaps = True

    def reserve(self, connection: Connection, count: int) -> list[int] | None:
        return reserve_ids(connection, "notifications", "id", count)

    def encode(
        self, planned: Sequence[Planned], ids: list[int] | None, positions: Sequence[int]
    ) -> tuple[list[int], str, str]:
        assert ids is not None and len(ids) == len(planned)
        notes, logs = [], []
        suffix, key = self._suffix, self._key
        for nid, item, position in zip(ids, planned, positions, strict=True):
            recipient = item.recipient
            idem = NULL if key is None else f"{key}#{position}"
            middle = self._message_part(item.message, item.priority)
            notes.append(f"{nid}\t{recipient.id}\t{idem}\t{middle}\t{suffix}")
            for sms, tail in self._log_parts(item.outcome):
                if sms:
                    logs.append(f"{nid}\t{NULL}\t{copy_value(recipient.phone)}\t{tail}")
                else:
                    logs.append(f"{nid}\t{copy_value(recipient.email)}\t{NULL}\t{tail}")
        return ids, "".join(notes), "".join(logs)

    def write(self, connection: Connection, encoded: tuple[list[int], str, str]) -> list[int]:
        ids, notes, logs = encoded
        copy_in(connection, "notifications", NOTIFICATION_COPY_COLUMNS, notes)
        copy_in(connection, "delivery_logs", LOG_COPY_COLUMNS, logs)
        return ids

    def _message_part(self, message: RenderedMessage, priority: Priority) -> str:
        cached = self._message
        if cached is not None and cached[0] is message and cached[1] is priority:
            return cached[2]
        values = message_values(message, priority).values()
        part = "\t".join(self._field(n, value) for n, value in enumerate(values))
        self._message = (message, priority, part)
        return part

    def _field(self, position: int, value: Any) -> str:
        """A message column encoded, reusing the encoding when the string is the one before
        (parts of a personal template that do not name the recipient)."""
        last = self._fields.get(position)
        if last is not None and last[0] is value:
            return last[1]
        encoded = copy_value(value)
        self._fields[position] = (value, encoded)
        return encoded

    def _log_parts(self, outcome: Outcome) -> tuple[tuple[bool, str], ...]:
        parts = self._logs.get(outcome)
        if parts is None:
            parts = self._logs[outcome] = tuple(
                (channel == Channel.sms, _log_tail(values)) for channel, values in outcome.logs
            )
        return parts


def _log_tail(values: Mapping[str, Any]) -> str:
    fields = []
    for column in _LOG_VALUE_COLUMNS:
        value = values[column]
        fields.append(copy_time(value) if isinstance(value, datetime) else copy_value(value))
    return "\t".join(fields) + "\n"


@dataclass
class InsertStore:
    """executemany INSERTs: notifications with RETURNING id (in order), then delivery rows."""

    shared: RequestColumns

    overlaps = False

    def reserve(self, connection: Connection, count: int) -> list[int] | None:
        return None  # ids come back from INSERT ... RETURNING

    def encode(
        self, planned: Sequence[Planned], ids: list[int] | None, positions: Sequence[int]
    ) -> tuple[Sequence[Planned], list[dict[str, Any]]]:
        s = self.shared
        common = {
            "context": dict(s.context),
            "request_id": s.request_id,
            "flow_run_id": s.flow_run_id,
            "deployment_name": s.deployment_name,
            "read": False,
            "created_at": s.now,
            "request_fingerprint": s.fingerprint,
        }
        key = s.idempotency_key
        notes = [
            {
                **message_values(item.message, item.priority),
                **common,
                "recipient_id": item.recipient.id,
                "idempotency_key": f"{key}#{position}" if key else None,
            }
            for item, position in zip(planned, positions, strict=True)
        ]
        return planned, notes

    def write(
        self, connection: Connection, encoded: tuple[Sequence[Planned], list[dict[str, Any]]]
    ) -> list[int]:
        planned, notes = encoded
        ids = insert_returning_ids(connection, NOTIFICATIONS, notes)
        rows = [
            {
                **values,
                "notification_id": nid,
                "recipient_email": None if channel == Channel.sms else item.recipient.email,
                "recipient_phone": item.recipient.phone if channel == Channel.sms else None,
            }
            for nid, item in zip(ids, planned, strict=True)
            for channel, values in item.outcome.logs
        ]
        insert_many(connection, DELIVERY_LOGS, rows)
        return ids
