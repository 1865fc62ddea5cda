"""The data model (SQLAlchemy 2 typed models) and the engine/session factory.

Column names follow the runbook's system (`delivery_logs.channel`, `status`, `error_message`,
`recipient_phone`, `cost`, `created_at`, the notification's `title`) so its queries port one to one.
Times are stored as UTC and always come back timezone-aware.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Channel(StrEnum):
    email = "email"
    sms = "sms"


class Status(StrEnum):
    pending = "pending"
    claimed = "claimed"
    sending = "sending"
    sent = "sent"
    delivered = "delivered"
    pending_retry = "pending_retry"
    failed_permanent = "failed_permanent"
    failed = "failed"
    skipped = "skipped"
    unknown = "unknown"
    purged = "purged"  # an operator's purge of a stale queued row (final; never sent)
    # A row deferred by quiet hours that a digest row carries (notify.digest): never sent on its
    # own; once the digest has an outcome the row takes the digest's status.
    carried = "carried"
    # From provider receipts (notify.receipts), after `sent` (or resolving `unknown`):
    bounced = "bounced"
    complained = "complained"
    undelivered = "undelivered"


DUE_STATUSES = (Status.pending.value, Status.pending_retry.value)
FINAL_STATUSES = (
    Status.sent,
    Status.delivered,
    Status.failed_permanent,
    Status.failed,
    Status.skipped,
    Status.purged,
)
FAILED_STATUSES = (Status.failed.value, Status.failed_permanent.value)
# Accepted by the provider; receipts move a row only among these (sent -> delivered, bounced,
# complained, undelivered), so no audit tells them apart and an SMS among them was paid for.
ACCEPTED_STATUSES = (
    Status.sent.value,
    Status.delivered.value,
    Status.bounced.value,
    Status.complained.value,
    Status.undelivered.value,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; returns aware UTC datetimes on SQLite and Postgres alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The partial index of quiet-hours rows (notify.digest's candidates); the pattern is
# policies.QUIET_HOURS_LIKE (db.py sits below policies.py, so it is spelled out; a test compares).
QUIET_INDEX_WHERE = "status = 'pending' AND decision LIKE '%: deferred to % (quiet hours %'"
DUE_INDEX_WHERE = f"status IN ({', '.join(repr(status) for status in DUE_STATUSES)})"
# Rows the common outcomes leave out of the (status, lease) index on PostgreSQL: most of a busy
# table is sent or delivered, and a row taking either outcome then adds no entry to it.
SETTLED_STATUSES = ("sent", "delivered")
LEASE_INDEX_WHERE = f"status NOT IN ({', '.join(repr(status) for status in SETTLED_STATUSES)})"


UNMATCHED_TAGGED_WHERE = "state = 'unmatched' AND delivery_id IS NOT NULL"


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index of the rows matching `where` only, on PostgreSQL and SQLite alike: the other
    rows pay nothing for it on each write."""
    return Index(
        name,
        *columns,
        unique=unique,
        postgresql_where=text(where),
        sqlite_where=text(where),
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Recipient(Base):
    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    receive_email: Mapped[bool] = mapped_column(Boolean, default=True)
    receive_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    quiet_hours_start: Mapped[str | None] = mapped_column(String(5))
    quiet_hours_end: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Notification(Base):
    """A message to one recipient; also the in-app notification feed."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "ix_notifications_history",
            "recipient_id",
            "read",
            text("created_at DESC"),
        ),
        Index("ix_notifications_recipient_title", "recipient_id", "title", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    template_name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    sms_text: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    category: Mapped[str] = mapped_column(String(50), default="general")
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_id: Mapped[str | None] = mapped_column(String(200), index=True)  # the key, whole
    # what the keyed request asked for (SendRequest.fingerprint): its key refuses another request
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    deployment_name: Mapped[str | None] = mapped_column(String(200))
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeliveryLog(Base):
    """One row per notification and channel (and a fallback row per row it replaces): the outbox
    and the audit trail."""

    __tablename__ = "delivery_logs"
    __table_args__ = (
        # One row per notification and channel, plus fallback rows (replaces_id set: an email
        # replacing an SMS that could not go, notify.fallback), at most one per replaced row.
        Index(
            "uq_delivery_logs_notification_channel",
            "notification_id",
            "channel",
            text("coalesce(replaces_id, 0)"),
            unique=True,
        ),
        partial_index("ix_delivery_logs_due", "next_attempt_at", "id", where=DUE_INDEX_WHERE),
        Index("ix_delivery_logs_channel_created", "channel", "created_at"),
        # Partial where a column is still empty when most writes happen: a row is stored and
        # then updated twice before it has a sent_at or a provider id, and each of those writes
        # (status changes, so never a HOT update) would otherwise add an entry to every index.
        partial_index(
            "ix_delivery_logs_channel_sent", "channel", "sent_at", where="sent_at IS NOT NULL"
        ),
        Index(  # partial on PostgreSQL only: SQLite uses a partial index only when a query
            # repeats its WHERE term word for word, and the lease queries name the held statuses
            "ix_delivery_logs_status_lease",
            "status",
            "lease_expires_at",
            postgresql_where=text(LEASE_INDEX_WHERE),
        ),
        partial_index(
            "ix_delivery_logs_provider_message_id",
            "provider_message_id",
            where="provider_message_id IS NOT NULL",
        ),
        # partial: the rows with a link only, so the other rows pay nothing for them on each write
        partial_index(
            "ix_delivery_logs_replaces", "replaces_id", where="replaces_id IS NOT NULL", unique=True
        ),
        partial_index(
            "ix_delivery_logs_carried_by", "carried_by_id", where="carried_by_id IS NOT NULL"
        ),
        # Rows held by quiet hours, not yet tried (notify.digest gathers them at the window's end).
        partial_index("ix_delivery_logs_quiet", "next_attempt_at", "id", where=QUIET_INDEX_WHERE),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    recipient_email: Mapped[str | None] = mapped_column(String(320))
    recipient_phone: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=Status.pending.value)
    decision: Mapped[str] = mapped_column(String(300), default="")
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_class: Mapped[str | None] = mapped_column(String(20))
    error_message: Mapped[str | None] = mapped_column(Text)
    # normalise_error_message(error_message), written with the outcome; NULL: the audits compute it
    error_norm: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    segments: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[Decimal | None] = mapped_column(Numeric(12, 6, asdecimal=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Provider receipts (notify.receipts): the real SMS price next to the estimate in `cost`,
    # the latest receipt applied, and the bookkeeping that resolves `unknown` rows.
    actual_cost: Mapped[Decimal | None] = mapped_column(Numeric(12, 6, asdecimal=True))
    receipt_event: Mapped[str | None] = mapped_column(String(60))
    receipt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unknown_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requeued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Links (notify.fallback, notify.digest): a fallback row names the row it replaces; a row
    # deferred by quiet hours names the digest row that carried it (its status follows that row's).
    replaces_id: Mapped[int | None] = mapped_column(Integer)
    carried_by_id: Mapped[int | None] = mapped_column(Integer)
    # the last attempt went out with SES event publishing (the configuration set): a Send
    # receipt would say SES took it, so none after later sends' receipts means it did not
    # (notify.receipts.crash); NULL or false: no receipt either way
    send_events: Mapped[bool | None] = mapped_column(Boolean)


class Receipt(Base):
    """One provider receipt (an SES event or an SMS delivery-log line), kept once.

    `dedupe_key` makes a redelivered SQS message or a re-read log line a no-op; `state` says what
    became of it: applied (matched a row), unmatched (no row yet: retried), malformed."""

    __tablename__ = "receipts"
    __table_args__ = (
        Index("ix_receipts_state_received", "state", "received_at"),
        Index("ix_receipts_delivery_log", "delivery_log_id"),
        # the unmatched receipts naming one of our rows (notify.receipts.store retries them for
        # as long as that row is in flight or unknown): without it each poll read every
        # unmatched receipt, untagged ones from other senders included (~200 ms per million)
        partial_index("ix_receipts_unmatched_tagged", "delivery_id", where=UNMATCHED_TAGGED_WHERE),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(10))
    event_type: Mapped[str] = mapped_column(String(30))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    delivery_id: Mapped[int | None] = mapped_column(Integer)
    delivery_log_id: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(320))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 6, asdecimal=True))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReceiptMark(Base):
    """A named point in time kept between receipt polls: the SES Send watermark, the SMS log
    checkpoints, and the email pause the reputation guardrail sets (`value` None: not paused)."""

    __tablename__ = "receipt_marks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(String(300), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RollupState(Base):
    """The audits' rollup watermark (one row, id 1); see notify/audits/rollups.py.

    Every delivery row with id <= through_id is either counted in the rollup tables (it was settled
    when folded) or listed in audit_open_rows; rows above through_id are read live."""

    __tablename__ = "audit_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    through_id: Mapped[int] = mapped_column(BigInteger, default=0)
    mark_id: Mapped[int | None] = mapped_column(BigInteger)  # max(id) seen at mark_at
    mark_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    folded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RollupOpenRow(Base):
    """A folded delivery row that was not settled when folded: the audits read it live."""

    __tablename__ = "audit_open_rows"

    id: Mapped[int] = mapped_column(
        ForeignKey("delivery_logs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    settled: Mapped[bool] = mapped_column(Boolean, default=False)  # set while being promoted


class CreatedHour(Base):
    """Settled, non-skipped delivery rows (sent or delivered) per UTC hour of created_at, and
    for SMS what they cost at the price known (the daily cap's measure, by creation time)."""

    __tablename__ = "audit_created_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    channel: Mapped[str] = mapped_column(String(10), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class SmsHour(Base):
    """Paid SMS (sent or delivered) per UTC hour of sent_at and recipient."""

    __tablename__ = "audit_sms_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    segments: Mapped[int] = mapped_column(BigInteger, default=0)
    micros: Mapped[int] = mapped_column(BigInteger, default=0)  # cost in whole micro-dollars


class SmsTotalHour(Base):
    """Paid SMS per UTC hour of sent_at (audit_sms_hours summed over recipients)."""

    __tablename__ = "audit_sms_totals"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    segments: Mapped[int] = mapped_column(BigInteger, default=0)
    micros: Mapped[int] = mapped_column(BigInteger, default=0)


class LatencyHour(Base):
    """Settled rows with a sent_at per UTC hour of sent_at and latency (created -> sent) in ms."""

    __tablename__ = "audit_latency_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    latency_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    micros: Mapped[int] = mapped_column(BigInteger, default=0)  # sum of latencies in µs


class LoopRow(Base):
    """A folded delivery row with another row of the same recipient, channel and title within
    loops.LOOP_SPAN: the only rows that can make a loop."""

    __tablename__ = "audit_loop_rows"

    id: Mapped[int] = mapped_column(
        ForeignKey("delivery_logs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SuppressionSource(StrEnum):
    """Who made a suppression: an operator's mute may let a muted SMS fall back to email; a
    provider's report (bounce, complaint, opt-out) and a loop mute do not (notify.fallback)."""

    operator = "operator"
    loop = "loop"
    provider = "provider"


class Suppression(Base):
    """Do not send on `channel` to `address` (email or E.164 phone) until `until` (None: ever).

    With `title` set, only notifications of that title are suppressed (loop mutes)."""

    __tablename__ = "suppressions"
    __table_args__ = (Index("ix_suppressions_address_channel", "address", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(10))
    title: Mapped[str | None] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(300), default="")
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(
        String(20), default=SuppressionSource.operator.value, server_default="operator"
    )


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    severity: Mapped[str] = mapped_column(String(2))
    state: Mapped[str] = mapped_column(String(10), default="open")
    summary: Mapped[str] = mapped_column(Text, default="")
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_notified: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the highest severity whose notice reached someone (None: none has): its routes hear the
    # resolution; unlike last_notified it is not reset by a notice that failed
    notified_severity: Mapped[str | None] = mapped_column(String(2))
    # a run is sending its notice (until then, or until it records the outcome): another run
    # overlapping it does not send the same notice again
    notifying_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=1)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OperatorAction(Base):
    """One operator action (purge, redrive, mute, unmute), applied or a dry run:
    who ran it (the OS user or --actor; the flow run and deployment), when, the filters and the
    counts. `key` names a redrive, so the same redrive run again changes nothing."""

    __tablename__ = "operator_actions"
    __table_args__ = (
        Index("ix_operator_actions_action_created", "action", "created_at"),
        Index("ix_operator_actions_key", "key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(30))
    key: Mapped[str | None] = mapped_column(String(100))
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(200))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    deployment_name: Mapped[str | None] = mapped_column(String(200))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OperatorActionRow(Base):
    """A delivery row an applied action changed, and the status it had: what a purge purged,
    what a redrive put back (a row is redriven at most once per redrive key)."""

    __tablename__ = "operator_action_rows"
    __table_args__ = (Index("ix_operator_action_rows_delivery", "delivery_log_id"),)

    action_id: Mapped[int] = mapped_column(
        ForeignKey("operator_actions.id", ondelete="CASCADE"), primary_key=True
    )
    delivery_log_id: Mapped[int] = mapped_column(
        ForeignKey("delivery_logs.id", ondelete="CASCADE"), primary_key=True
    )
    from_status: Mapped[str] = mapped_column(String(20))


def make_engine(url: str, **kwargs: Any) -> Engine:
    """The one place an Engine is built. SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "psycopg2" in url:  # executemany UPDATEs (recording a window's outcomes) in one round trip
        kwargs.setdefault("executemany_mode", "values_plus_batch")
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database could not be used just now (a lost, refused or busy
    connection, a locked SQLite file): worth another attempt. A statement the schema refuses (a
    missing table or column, which SQLite reports as an OperationalError too) or any other
    error is a defect that another attempt repeats."""
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    return getattr(error.orig, "sqlite_errorcode", None) != sqlite3.SQLITE_ERROR


class Turn(IntEnum):
    """What writers take turns at, until their transaction ends: the PostgreSQL advisory lock
    keys (one bigint each, all here so that no two are alike). A request key's turn is the
    two-int form, REQUEST_KEY_TURN and the key's hash, a key space of its own."""

    ROSTER = 0x6E6F_7469_6679_0001  # a roster change against stores (notify.recipients)
    QUIET_HOLD = 0x6E6F_7469_6679_0002  # quiet-hours holds and rechecks (notify.recheck)
    DIGEST_GATHER = 0x6E6F_7469_6679  # digest gathers (notify.digest)


REQUEST_KEY_TURN = 0x6E6F_7469  # the class of a request key's turn (notify.enqueue)


def take_turn(
    connection: Connection, turn: Turn, *, shared: bool = False, wait: bool = True
) -> bool:
    """Until the caller's transaction ends, its turn at `turn`: PostgreSQL, a transaction
    advisory lock, exclusive or `shared` (shared holders never wait for each other), waited for
    or, without `wait`, only tried (False: another transaction has it). SQLite lets one writer
    at a time already: True, nothing taken."""
    if connection.dialect.name != "postgresql":
        return True
    kind = "_shared" if shared else ""
    call = f"pg_advisory_xact_lock{kind}" if wait else f"pg_try_advisory_xact_lock{kind}"
    got = connection.execute(text(f"SELECT {call}(:key)"), {"key": int(turn)}).scalar()
    return wait or bool(got)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with session_factory(engine).begin() as session:
        yield session


# Core table handles, typed, for bulk statements (executemany) that skip the ORM.
RECIPIENTS = cast(Table, Recipient.__table__)
NOTIFICATIONS = cast(Table, Notification.__table__)
DELIVERY_LOGS = cast(Table, DeliveryLog.__table__)
OPERATOR_ACTION_ROWS = cast(Table, OperatorActionRow.__table__)
RECEIPTS = cast(Table, Receipt.__table__)
RECEIPT_MARKS = cast(Table, ReceiptMark.__table__)
SUPPRESSIONS = cast(Table, Suppression.__table__)


LOOKUP_CHUNK = 500  # values per IN (...) list
ARRAY_LOOKUP_CHUNK = 1000  # values per = ANY(array) on PostgreSQL (5,000 of 500k: a seq scan)


def among(column: Any, values: Sequence[Any], *, dialect: str) -> ColumnElement[bool]:
    """`column` is one of `values`: one array parameter on PostgreSQL (no placeholder per value
    to render, send and parse), an IN list elsewhere."""
    if dialect == "postgresql":
        return cast(
            ColumnElement[bool],
            column == any_(bindparam(None, list(values), type_=ARRAY(column.type))),
        )
    return cast(ColumnElement[bool], column.in_(values))


def lookup_chunks(values: Sequence[Any], *, dialect: str) -> list[Sequence[Any]]:
    """`values` in the pieces one `among` should take on this database."""
    size = ARRAY_LOOKUP_CHUNK if dialect == "postgresql" else LOOKUP_CHUNK
    return [values[start : start + size] for start in range(0, len(values), size)]


def dialect_of(session: Session) -> str:
    """The session's database: "postgresql" or "sqlite"."""
    return session.get_bind().dialect.name


def sms_cost_known() -> ColumnElement[Any]:
    """What an SMS cost as far as we know: the receipt's price, else our estimate."""
    return func.coalesce(DELIVERY_LOGS.c.actual_cost, DELIVERY_LOGS.c.cost)
