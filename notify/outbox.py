"""The delivery outbox: claim due rows, fence every update on the lease owner, record outcomes.

Statuses move forward only (architecture.md): pending -> claimed -> sending -> sent, or
pending_retry / failed_permanent / failed. An expired lease sends `claimed` rows back to pending
(never handed to a provider) and `sending` rows to `unknown` (the provider may have them).
Claiming on PostgreSQL uses the CTE + FOR UPDATE SKIP LOCKED form with the partial index on due
rows; on SQLite one UPDATE ... RETURNING statement holds the single writer lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, bindparam, func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.db import DELIVERY_LOGS, DUE_STATUSES, DeliveryLog, Notification, Status, UTCDateTime

LOGS = DELIVERY_LOGS

_CLAIM_POSTGRES = text(
    """
    WITH due AS MATERIALIZED (
        SELECT id FROM delivery_logs
        WHERE status IN ('pending', 'pending_retry') AND next_attempt_at <= :now
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
        ORDER BY next_attempt_at, id
        LIMIT :limit
    )
    AND status IN ('pending', 'pending_retry')
    RETURNING id
    """
).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("expires", type_=UTCDateTime()))


@dataclass(frozen=True)
class ClaimedRow:
    """What a deliverer needs to send one channel of one notification."""

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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class RescueCounts:
    returned_to_pending: int
    marked_unknown: int


def claim_due(
    *, session: Session, owner: str, limit: int, now: datetime, lease: timedelta
) -> list[ClaimedRow]:
    """Claim up to `limit` due rows for `owner` and return them with their message content."""
    statement = _CLAIM_POSTGRES if _dialect(session) == "postgresql" else _CLAIM_SQLITE
    params = {"owner": owner, "limit": limit, "now": now, "expires": now + lease}
    ids = [row[0] for row in session.execute(statement, params)]
    return _load_claimed(session, ids)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _load_claimed(session: Session, ids: Sequence[int]) -> list[ClaimedRow]:
    if not ids:
        return []
    query = (
        select(DeliveryLog, Notification)
        .join(Notification, Notification.id == DeliveryLog.notification_id)
        .where(DeliveryLog.id.in_(ids))
        .order_by(DeliveryLog.id)
    )
    return [_claimed(log, note) for log, note in session.execute(query).tuples()]


def _claimed(log: DeliveryLog, note: Notification) -> ClaimedRow:
    return ClaimedRow(
        id=log.id,
        notification_id=log.notification_id,
        channel=log.channel,
        recipient_email=log.recipient_email,
        recipient_phone=log.recipient_phone,
        attempts=log.attempts,
        subject=note.title,
        text=note.message,
        html=note.html,
        sms_text=note.sms_text,
        priority=note.priority,
    )


def mark_sending(*, session: Session, owner: str, ids: Sequence[int], now: datetime) -> set[int]:
    """Move claimed rows to `sending` (attempts + 1); returns the ids this owner still holds."""
    table = LOGS
    statement = (
        update(table)
        .where(table.c.id.in_(ids), table.c.lease_owner == owner, table.c.status == "claimed")
        .values(status=Status.sending.value, attempts=table.c.attempts + 1)
        .returning(table.c.id)
    )
    return {row[0] for row in session.execute(statement)}


def record_outcomes(*, session: Session, owner: str, outcomes: Sequence[Outcome]) -> None:
    """Write each outcome, fenced on the lease owner and the `sending` status.

    The lease ends but `lease_owner` stays: it records which deliverer made the last attempt."""
    if not outcomes:
        return
    table = LOGS
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.lease_owner == owner,
            table.c.status == Status.sending.value,
        )
        .values({name: bindparam(f"b_{name}") for name in _OUTCOME_COLUMNS})
    )
    session.connection().execute(statement, [_outcome_params(o) for o in outcomes])


_OUTCOME_COLUMNS = (
    "status",
    "provider_message_id",
    "sent_at",
    "error_code",
    "error_class",
    "error_message",
    "next_attempt_at",
    "lease_expires_at",
)


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
        "b_next_attempt_at": outcome.next_attempt_at,
        "b_lease_expires_at": None,
    }


def release_claims(
    *, session: Session, owner: str, ids: Sequence[int], next_attempt_at: datetime
) -> int:
    """Give claimed rows that were never handed to a provider back to the queue."""
    table = LOGS
    statement = (
        update(table)
        .where(table.c.id.in_(ids), table.c.lease_owner == owner, table.c.status == "claimed")
        .values(
            status=Status.pending.value,
            lease_owner=None,
            lease_expires_at=None,
            next_attempt_at=next_attempt_at,
        )
    )
    return _rowcount(session, statement)


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


def _rowcount(session: Session, statement: Executable) -> int:
    result = cast(CursorResult[Any], session.execute(statement))
    return max(result.rowcount or 0, 0)


def due_count(*, session: Session, now: datetime) -> int:
    """Rows waiting for a deliverer now (pending or pending_retry, due)."""
    query = select(func.count()).where(
        LOGS.c.status.in_(DUE_STATUSES), LOGS.c.next_attempt_at <= now
    )
    return int(session.scalar(query) or 0)


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
            decision=func.substr(LOGS.c.decision + suffix, 1, 300),
        )
    )
    return _rowcount(session, statement)
