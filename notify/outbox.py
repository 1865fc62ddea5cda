"""The delivery outbox: claim due rows, fence every update on the lease owner, record outcomes.

Statuses move forward only (architecture.md): pending -> sending -> sent (the deliverer claims
straight into `sending`; `claim_due` leaves rows `claimed`, held but not in flight), or
pending_retry / failed_permanent / failed / unknown (the provider may have the message). An
expired lease sends `claimed` rows back to pending (never handed to a provider) and `sending` rows
to `unknown`. Claiming on PostgreSQL uses the CTE + FOR UPDATE SKIP LOCKED form with the partial
index on due rows; on SQLite one UPDATE ... RETURNING statement holds the single writer lock.

The deliverer's hot path uses the `Connection` functions (`claim_sending`, `record_rows`,
`extend_leases`, `unsend_rows`): SQLAlchemy Core statements on one connection held for the whole
batch, plain tuples, no ORM objects. The `session=` functions are the same statements for
callers that hold a Session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Executable,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal,
    null,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.bulk_insert import int_array, text_array, time_array
from notify.db import DELIVERY_LOGS, DUE_STATUSES, Channel, Notification, Status, UTCDateTime
from notify.error_messages import normalize_error

LOGS = DELIVERY_LOGS
NOTES = cast(Table, Notification.__table__)
HELD_STATUSES = (Status.claimed.value, Status.sending.value)

_CLAIM_POSTGRES = text(
    """
    WITH due AS MATERIALIZED (
        SELECT id FROM delivery_logs
        WHERE status IN ('pending', 'pending_retry') AND next_attempt_at <= :now
          AND channel <> :skip_channel
        ORDER BY next_attempt_at, id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE delivery_logs AS d
    SET status = 'claimed', lease_owner = :owner, lease_expires_at = :expires
    FROM due WHERE d.id = due.id
    RETURNING d.id
    """
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("expires", type_=UTCDateTime()))

_CLAIM_SQLITE = text(
    """
    UPDATE delivery_logs
    SET status = 'claimed', lease_owner = :owner, lease_expires_at = :expires
    WHERE id IN (
        SELECT id FROM delivery_logs
        WHERE status IN ('pending', 'pending_retry') AND next_attempt_at <= :now
          AND channel <> :skip_channel
        ORDER BY next_attempt_at, id
        LIMIT :limit
    )
    AND status IN ('pending', 'pending_retry')
    RETURNING id
    """
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("expires", type_=UTCDateTime()))

# Due rows straight into `sending` (attempts + 1), the message content returned with them. The
# due index's key order is the claim's order, so the rows come from an index scan that stops at
# the limit; `enable_sort = off` keeps the planner from scanning and sorting every due row instead
# when its statistics are stale (right after a large enqueue: 68 ms per 128-row claim over 100,000
# due rows, against 3 ms through the index, measured). It would last until the transaction ends,
# so the claim notes the value it found (in a setting of its own, for the transaction) and puts
# that back at once (`_SORT_BACK`): a session that had the sort off keeps it off.
_CLAIM_SENDING_POSTGRES = text(
    """
    SELECT set_config('notifyops.enable_sort_before', current_setting('enable_sort'), true);
    SET LOCAL enable_sort = off;
    WITH due AS MATERIALIZED (
        SELECT id FROM delivery_logs
        WHERE status IN ('pending', 'pending_retry') AND next_attempt_at <= :now
          AND channel <> :skip_channel
        ORDER BY next_attempt_at, id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE delivery_logs AS d
    SET status = 'sending', attempts = d.attempts + 1,
        lease_owner = :owner, lease_expires_at = :expires, send_events = :send_events
    FROM due, notifications AS n
    WHERE d.id = due.id AND n.id = d.notification_id
    RETURNING d.next_attempt_at, d.id, d.notification_id, d.channel, d.recipient_email,
              d.recipient_phone, d.attempts - 1,
              n.title,
              CASE WHEN d.channel = 'sms' THEN '' ELSE n.message END,
              CASE WHEN d.channel = 'sms' THEN NULL ELSE n.html END,
              CASE WHEN d.channel = 'sms' THEN n.sms_text END,
              n.priority
    """  # the content the row's channel sends (ClaimedRow), as _CLAIMED_COLUMNS selects it
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("expires", type_=UTCDateTime()))
_SORT_BACK = text(
    "SELECT set_config('enable_sort', current_setting('notifyops.enable_sort_before'), true)"
)

# Outcomes on PostgreSQL: one UPDATE joined to the arrays of a group (one statement to parse and
# plan, instead of one per row as an executemany sends them).
_RECORD_POSTGRES = text(
    """
    UPDATE delivery_logs AS d
    SET status = v.status, provider_message_id = v.provider_message_id, sent_at = v.sent_at,
        error_code = v.error_code, error_class = v.error_class, error_message = v.error_message,
        error_norm = v.error_norm, next_attempt_at = v.next_attempt_at, lease_expires_at = NULL,
        attempts = d.attempts - v.uncount
    FROM unnest(
        CAST(:ids AS integer[]), CAST(:status AS varchar[]),
        CAST(:provider_message_id AS varchar[]), CAST(:sent_at AS timestamptz[]),
        CAST(:error_code AS varchar[]),
        CAST(:error_class AS varchar[]), CAST(:error_message AS text[]),
        CAST(:error_norm AS varchar[]),
        CAST(:next_attempt_at AS timestamptz[]), CAST(:uncount AS integer[])
    ) AS v(id, status, provider_message_id, sent_at, error_code, error_class, error_message,
           error_norm, next_attempt_at, uncount)
    WHERE d.id = v.id AND d.lease_owner = :owner AND d.status = 'sending'
    """
)


_START_SENDING_POSTGRES = text(
    """
    UPDATE delivery_logs SET status = 'sending', attempts = attempts + 1,
        send_events = :send_events
    WHERE id = ANY(CAST(:ids AS integer[])) AND lease_owner = :owner AND status = 'claimed'
    RETURNING id
    """
)


# Per-message records (a claimed row, its outcome; the messages and receipts of notify.senders)
# are slotted dataclasses, not frozen ones: nothing changes them after they are built, and a
# frozen __init__ (object.__setattr__ per field) costs 2-3 us against 0.3 us, paid four times
# per message on the delivery path.
@dataclass(slots=True)
class ClaimedRow:
    """What a deliverer needs to send one channel of one notification: an email row carries the
    title, text and HTML; an SMS row the SMS text and the title (its fallback body), with an
    empty `text` and no `html`. A claim reads no more than that: the email's HTML and text were
    ~1.3 kB an SMS row shipped for nothing, and claiming without them delivered 9% more messages
    a second (alternating library runs of 10,000 messages at zero latency)."""

    id: int
    notification_id: int
    channel: str
    recipient_email: str | None
    recipient_phone: str | None
    attempts: int
    subject: str
    text: str
    html: str | None
    sms_text: str | None
    priority: str


@dataclass(slots=True)
class Outcome:
    """The result of one provider call, ready to record."""

    id: int
    status: Status
    at: datetime
    provider_message_id: str | None = None
    error_code: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    next_attempt_at: datetime | None = None
    count_attempt: bool = True  # False: the failure was the provider's, not this message's
    note: str | None = None  # added to the row's decision (e.g. sent through the SMTP failover)


@dataclass(frozen=True)
class RescueCounts:
    returned_to_pending: int
    marked_unknown: int


def claim_due(
    *, session: Session, owner: str, limit: int, now: datetime, lease: timedelta
) -> list[ClaimedRow]:
    """Claim up to `limit` due rows for `owner` and return them with their message content."""
    return claim_rows(session.connection(), owner=owner, limit=limit, now=now, lease=lease)


def claim_rows(
    conn: Connection,
    *,
    owner: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    skip_channel: str = "",
) -> list[ClaimedRow]:
    """`claim_due` on a connection (the caller commits); rows of `skip_channel` stay queued."""
    statement = _CLAIM_POSTGRES if conn.dialect.name == "postgresql" else _CLAIM_SQLITE
    params = {
        "owner": owner,
        "limit": limit,
        "now": now,
        "expires": now + lease,
        "skip_channel": skip_channel,
    }
    ids = [row[0] for row in conn.execute(statement, params)]
    return _load_claimed(conn, ids)


def claim_sending(
    conn: Connection,
    *,
    owner: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    skip_channel: str = "",
    send_events: bool = False,
) -> list[ClaimedRow]:
    """Claim up to `limit` due rows straight into `sending`, in due order; the caller commits
    before handing any of them to a provider. One statement on PostgreSQL (and the planner
    setting put back); on SQLite a claim and a mark. Rows of `skip_channel` (a paused channel)
    are left queued. `send_events`: the attempts go out with SES event publishing (recorded on
    each row, see DeliveryLog.send_events)."""
    if conn.dialect.name != "postgresql":
        rows = claim_rows(
            conn, owner=owner, limit=limit, now=now, lease=lease, skip_channel=skip_channel
        )
        ids = [r.id for r in rows]
        held = start_sending(conn, owner=owner, ids=ids, send_events=send_events)
        return [r for r in rows if r.id in held]
    params = {
        "owner": owner,
        "limit": limit,
        "now": now,
        "expires": now + lease,
        "skip_channel": skip_channel,
        "send_events": send_events,
    }
    claimed = list(conn.execute(_CLAIM_SENDING_POSTGRES, params))
    conn.execute(_SORT_BACK)
    return [ClaimedRow(*row[1:]) for row in sorted(claimed, key=lambda row: (row[0], row[1]))]


def due_now(now: datetime) -> ColumnElement[bool]:
    """Rows waiting for a deliverer at `now` (pending or pending_retry, their time come): the
    partial due index's rows."""
    return and_(LOGS.c.status.in_(DUE_STATUSES), LOGS.c.next_attempt_at <= now)


def due_up_to(conn: Connection, *, most: int, now: datetime, skip_channel: str = "") -> int:
    """How many rows are still due (outside `skip_channel`), counted up to `most`: the partial
    due index's entries, the scan stopped at `most`."""
    due = select(LOGS.c.id).where(due_now(now), LOGS.c.channel != skip_channel).limit(most)
    return int(conn.execute(select(func.count()).select_from(due.subquery())).scalar_one())


_IS_SMS = LOGS.c.channel == Channel.sms.value
_CLAIMED_COLUMNS = (  # ClaimedRow's: the content the row's channel sends
    LOGS.c.id,
    LOGS.c.notification_id,
    LOGS.c.channel,
    LOGS.c.recipient_email,
    LOGS.c.recipient_phone,
    LOGS.c.attempts,
    NOTES.c.title,
    case((_IS_SMS, literal("")), else_=NOTES.c.message),
    case((_IS_SMS, null()), else_=NOTES.c.html),
    case((_IS_SMS, NOTES.c.sms_text), else_=null()),
    NOTES.c.priority,
)


def _load_claimed(conn: Connection, ids: Sequence[int]) -> list[ClaimedRow]:
    if not ids:
        return []
    query = (
        select(*_CLAIMED_COLUMNS)
        .join_from(LOGS, NOTES, NOTES.c.id == LOGS.c.notification_id)
        .where(LOGS.c.id.in_(ids))
        .order_by(LOGS.c.id)
    )
    return [ClaimedRow(*row) for row in conn.execute(query)]


def mark_sending(*, session: Session, owner: str, ids: Sequence[int], now: datetime) -> set[int]:
    """Move claimed rows to `sending` (attempts + 1); returns the ids this owner still holds."""
    return start_sending(session.connection(), owner=owner, ids=ids)


def start_sending(
    conn: Connection, *, owner: str, ids: Sequence[int], send_events: bool = False
) -> set[int]:
    """`mark_sending` on a connection (the caller commits before any provider call)."""
    if conn.dialect.name == "postgresql":  # one prepared shape, whatever the number of ids
        values = {"ids": int_array(ids), "owner": owner, "send_events": send_events}
        return {row[0] for row in conn.execute(_START_SENDING_POSTGRES, values)}
    statement = (
        update(LOGS)
        .where(LOGS.c.id.in_(ids), LOGS.c.lease_owner == owner, LOGS.c.status == "claimed")
        .values(status=Status.sending.value, attempts=LOGS.c.attempts + 1, send_events=send_events)
        .returning(LOGS.c.id)
    )
    return {row[0] for row in conn.execute(statement)}


def record_outcomes(*, session: Session, owner: str, outcomes: Sequence[Outcome]) -> None:
    """Write each outcome, fenced on the lease owner and the `sending` status.

    The lease ends but `lease_owner` stays: it records which deliverer made the last attempt."""
    record_rows(session.connection(), owner=owner, outcomes=outcomes)


def record_rows(conn: Connection, *, owner: str, outcomes: Sequence[Outcome]) -> int:
    """`record_outcomes` on a connection: one UPDATE for a group of outcomes (an executemany
    on SQLite). Returns how many rows this owner still held (the others lost their lease)."""
    if not outcomes:
        return 0
    if conn.dialect.name == "postgresql":
        return _rowcount(conn, _RECORD_POSTGRES, _outcome_arrays(owner, outcomes))
    conn.execute(_record_statement(owner), [_outcome_params(o) for o in outcomes])
    return len(outcomes)  # executemany's rowcount is not reliable across drivers


def _outcome_arrays(owner: str, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The outcomes as one array literal per column (the driver adapting lists element by
    element was 15 us per outcome, a tenth of the coordinating thread's time; a type test per
    element, 11 us)."""
    sent = Status.sent
    return {
        "owner": owner,
        "ids": int_array([o.id for o in outcomes]),
        "status": text_array([o.status.value for o in outcomes]),
        "provider_message_id": text_array([o.provider_message_id for o in outcomes]),
        "sent_at": time_array([o.at if o.status == sent else None for o in outcomes]),
        "error_code": text_array([o.error_code for o in outcomes]),
        "error_class": text_array([o.error_class for o in outcomes]),
        "error_message": text_array([o.error_message for o in outcomes]),
        "error_norm": text_array([normalised_error(o.error_message) for o in outcomes]),
        "next_attempt_at": time_array([o.next_attempt_at for o in outcomes]),
        "uncount": int_array([0 if o.count_attempt else 1 for o in outcomes]),
    }


def _record_statement(owner: str) -> Executable:
    values: dict[str, Any] = {name: bindparam(f"b_{name}") for name in _OUTCOME_COLUMNS}
    values["attempts"] = LOGS.c.attempts - bindparam("b_uncount")
    return (
        update(LOGS)
        .where(
            LOGS.c.id == bindparam("b_id"),
            LOGS.c.lease_owner == owner,
            LOGS.c.status == Status.sending.value,
        )
        .values(values)
    )


def extend_leases(conn: Connection, *, owner: str, until: datetime) -> int:
    """The heartbeat: push out the lease of every row `owner` still holds (claimed or sending)."""
    statement = (
        update(LOGS)
        .where(LOGS.c.status.in_(HELD_STATUSES), LOGS.c.lease_owner == owner)
        .values(lease_expires_at=until)
    )
    return _rowcount(conn, statement)


_OUTCOME_COLUMNS = (
    "status",
    "provider_message_id",
    "sent_at",
    "error_code",
    "error_class",
    "error_message",
    "error_norm",
    "next_attempt_at",
    "lease_expires_at",
)


def normalised_error(message: str | None) -> str | None:
    """The normalised message the failure audits group by, stored with the outcome."""
    return normalize_error(message)[:200] if message else None


def _outcome_params(outcome: Outcome) -> dict[str, Any]:
    sent = outcome.status == Status.sent
    return {
        "b_id": outcome.id,
        "b_status": outcome.status.value,
        "b_provider_message_id": outcome.provider_message_id,
        "b_sent_at": outcome.at if sent else None,
        "b_error_code": outcome.error_code,
        "b_error_class": outcome.error_class,
        "b_error_message": outcome.error_message,
        "b_error_norm": normalised_error(outcome.error_message),
        "b_next_attempt_at": outcome.next_attempt_at,
        "b_lease_expires_at": None,
        "b_uncount": 0 if outcome.count_attempt else 1,
    }


def unsend_rows(
    conn: Connection, *, owner: str, ids: Sequence[int], next_attempt_at: datetime
) -> int:
    """Rows marked `sending` that this deliverer then never handed to a provider (the batch
    stopped first): back to pending, and the attempt counted when they were claimed taken back."""
    if not ids:
        return 0
    statement = (
        update(LOGS)
        .where(
            LOGS.c.id.in_(ids),
            LOGS.c.lease_owner == owner,
            LOGS.c.status == Status.sending.value,
        )
        .values(
            status=Status.pending.value,
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=next_attempt_at,
            attempts=LOGS.c.attempts - 1,
        )
    )
    return _rowcount(conn, statement)


def rescue_expired(*, session: Session, now: datetime) -> RescueCounts:
    """Expired leases: `claimed` back to pending, `sending` to `unknown` (never re-sent blindly)."""
    table = LOGS
    expired = table.c.lease_expires_at < now
    back = update(table).where(table.c.status == "claimed", expired)
    back = back.values(status=Status.pending.value, lease_owner=None, lease_expires_at=None)
    lost = update(table).where(table.c.status == "sending", expired)
    lost = lost.values(
        status=Status.unknown.value,
        lease_owner=None,
        lease_expires_at=None,
        error_message="worker lost its lease mid-send: the provider may have the message",
    )
    returned = _rowcount(session, back)
    return RescueCounts(returned, _rowcount(session, lost))


def _rowcount(
    db: Session | Connection, statement: Executable, params: dict[str, Any] | None = None
) -> int:
    result = cast(CursorResult[Any], db.execute(statement, params))
    return max(result.rowcount or 0, 0)


def due_count(*, session: Session, now: datetime) -> int:
    """Rows waiting for a deliverer now (pending or pending_retry, due)."""
    return int(session.scalar(select(func.count()).where(due_now(now))) or 0)


@dataclass(frozen=True)
class Leftovers:
    """What a delivery run leaves behind: rows due now, rows still held by its own (dead) batches,
    which go back at lease expiry, rows `unknown` anywhere in the log, and the rows waiting for
    a later time (a retry's backoff, a stopped channel's rows given back, quiet hours) with the
    first of those times."""

    due: int
    held: int
    unknown: int
    later: int = 0
    next_due_at: datetime | None = None


def leftovers(*, session: Session, run_tag: str, now: datetime) -> Leftovers:
    """Rows due at `now`, rows `claimed`/`sending` by any lease owner naming `run_tag`, all
    `unknown` rows, and the waiting rows not due yet (read from the due index)."""
    held = select(func.count()).where(
        LOGS.c.status.in_((Status.claimed.value, Status.sending.value)),
        LOGS.c.lease_owner.contains(run_tag, autoescape=True),
    )
    unknown = select(func.count()).where(LOGS.c.status == Status.unknown.value)
    waiting, first = waiting_later(session=session, now=now)
    return Leftovers(
        due_count(session=session, now=now),
        int(session.scalar(held) or 0),
        int(session.scalar(unknown) or 0),
        waiting,
        first,
    )


def waiting_later(*, session: Session, now: datetime) -> tuple[int, datetime | None]:
    """The waiting rows not due at `now` (a retry's backoff, a stopped channel's rows given
    back, quiet hours) and when the first comes due: one read of the due index."""
    later = select(func.count(), func.min(LOGS.c.next_attempt_at)).where(
        LOGS.c.status.in_(DUE_STATUSES), LOGS.c.next_attempt_at > now
    )
    count, first = session.execute(later).one()
    return int(count or 0), first


REDRIVABLE = ("unknown", "failed", "failed_permanent", "pending_retry")


def redrive(
    *,
    session: Session,
    status: str,
    now: datetime,
    channel: str | None = None,
    ids: Sequence[int] = (),
    dry_run: bool = False,
    where: Sequence[ColumnElement[bool]] = (),
    note: str = "",
) -> int:
    """Put rows in `status` back in the queue, due now: the statement under an operator's redrive.

    Unrecorded and unguarded: operators go through notify.actions.redrive, which filters, records
    the redrive under an id and refuses `unknown` or `failed_permanent` without being told.
    `unknown` rows may already have reached the provider; redriving them can send twice, which
    is why nothing does it automatically. `where` narrows further; `note` ends the decision.
    """
    if status not in REDRIVABLE:
        raise ValueError(f"status must be one of {', '.join(REDRIVABLE)}")
    conditions = [LOGS.c.status == status, *where]
    if channel:
        conditions.append(LOGS.c.channel == channel)
    if ids:
        conditions.append(LOGS.c.id.in_(ids))
    if dry_run:
        return int(session.scalar(select(func.count()).where(*conditions)) or 0)
    suffix = f" | redriven from {status}" + (f" ({note})" if note else "")
    statement = (
        update(LOGS)
        .where(*conditions)
        .values(
            status=Status.pending.value,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
            # its next attempt, if in doubt again, is judged from when that one is seen unknown
            # (notify.receipts.crash), not from when the attempt redriven here was
            unknown_since=None,
            decision=func.substr(LOGS.c.decision + suffix, 1, 300),
        )
    )
    return _rowcount(session, statement)
