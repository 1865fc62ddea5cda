"""Resolve crash rows (`unknown`: the worker died mid-send) from receipts, never by re-sending
blindly.

- A receipt of an `unknown` row (found by message id or our delivery-id tag) resolves it in
  `apply_stored` like any other row.
- Email: an `unknown` row with no receipt goes back to `pending` (once) only when its attempt
  went out with SES event publishing (`send_events`: NOTIFY_SES_CONFIGURATION_SET was set, so
  SES would have sent a Send event had it taken it) and the SES Send watermark (the newest Send
  event received) is more than a horizon past the moment we first saw it `unknown`: receipts of
  later sends have arrived, so a stalled event pipeline never looks like "not sent". An attempt
  without event publishing stays `unknown` for the operator, as an SMS in doubt does.
- SMS: SNS carries no tag, so a row without a message id is matched to an unmatched log line only
  when exactly one fits (same destination, published between the row's creation and the moment it
  was seen `unknown`) and that line fits no other such row (two sends to one number in doubt at
  once); ambiguous rows stay `unknown` for the operator.
- SMS with no receipt 72 h after sending (AWS: carriers report within 72 h) -> `undelivered`,
  only when its receipt could have come: sent after the SMS delivery logs were first read and
  72 h before the latest read (notify.receipts.smslogs' marks). One sent before the first read
  (a database from before receipts, delivery-status logging set up only now) stays `sent`, and
  an `unknown` one stays `unknown`: nothing was reading the line it would have had.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, select, update
from sqlalchemy.orm import Session

from notify.actions.decide import decided_by_an_operator
from notify.db import DELIVERY_LOGS, RECEIPTS, Channel, Status
from notify.marks import read_mark
from notify.receipts.events import Source, State
from notify.receipts.smslogs import sms_logs_read
from notify.receipts.store import SEND_WATERMARK

NO_RECEIPT_AFTER = timedelta(hours=72)
PUBLISH_SLACK = timedelta(minutes=1)  # clock skew between us and SNS
LOGS = DELIVERY_LOGS


@dataclass(frozen=True)
class CrashReport:
    seen_unknown: int = 0
    requeued_email: int = 0
    matched_sms: int = 0
    ambiguous_sms: int = 0
    undelivered_sms: int = 0
    watermark: datetime | None = None
    ambiguous_rows: tuple[int, ...] = ()  # the ambiguous SMS rows' ids, to decide together


def ambiguous_said(rows: Sequence[int]) -> str:
    """`2 ambiguous (rows 12, 13)`: which `unknown` SMS rows one delivery-log line fits."""
    named = f" (rows {', '.join(str(row) for row in sorted(rows))})" if rows else ""
    return f"{len(rows)} ambiguous{named}"


def resolve_crash_rows(*, session: Session, now: datetime, horizon: timedelta) -> CrashReport:
    """Stamp new `unknown` rows, requeue unsent email, match SMS, expire silent SMS."""
    seen = stamp_unknown(session=session, now=now)
    watermark = send_watermark(session)
    requeued = requeue_unsent_email(session=session, watermark=watermark, horizon=horizon, now=now)
    matched, ambiguous = match_unknown_sms(session=session)
    expired = expire_silent_sms(session=session, now=now, keep=ambiguous)
    return CrashReport(
        seen, requeued, matched, len(ambiguous), expired, watermark, tuple(sorted(ambiguous))
    )


def stamp_unknown(*, session: Session, now: datetime) -> int:
    """Note when each `unknown` row was first seen: its send attempt happened before then."""
    statement = (
        update(LOGS)
        .where(LOGS.c.status == Status.unknown.value, LOGS.c.unknown_since.is_(None))
        .values(unknown_since=now)
    )
    return _count(session.execute(statement))


def send_watermark(session: Session) -> datetime | None:
    mark = read_mark(session, SEND_WATERMARK)
    return mark[0] if mark else None


def requeue_unsent_email(
    *, session: Session, watermark: datetime | None, horizon: timedelta, now: datetime
) -> int:
    if watermark is None:
        return 0
    statement = (
        update(LOGS)
        .where(
            LOGS.c.channel == Channel.email.value,
            LOGS.c.status == Status.unknown.value,
            LOGS.c.requeued_at.is_(None),
            LOGS.c.unknown_since < watermark - horizon,
            # only an attempt that would have a Send receipt: without event publishing SES may
            # have taken it, receipt or not (a read timeout after accepting, a killed worker)
            LOGS.c.send_events.is_(True),
        )
        .values(
            status=Status.pending.value,
            next_attempt_at=now,
            requeued_at=now,
            unknown_since=None,
            decision=func.substr(LOGS.c.decision + " | requeued: no SES Send receipt", 1, 300),
        )
    )
    return _count(session.execute(statement))


def match_unknown_sms(*, session: Session) -> tuple[int, list[int]]:
    """Give an `unknown` SMS row the message id of the one unmatched log line that fits it,
    when that line fits no other `unknown` row (one-to-one: a line that fits two rows is either
    row's, so neither gets it); returns how many were matched and the ids of the ambiguous rows
    (left for the operator)."""
    rows = session.execute(
        select(LOGS.c.id, LOGS.c.recipient_phone, LOGS.c.created_at, LOGS.c.unknown_since).where(
            LOGS.c.channel == Channel.sms.value,
            LOGS.c.status == Status.unknown.value,
            LOGS.c.provider_message_id.is_(None),
        )
    ).all()
    fits = {
        row_id: _candidate_lines(session, phone, created_at, seen_at)
        for row_id, phone, created_at, seen_at in rows
    }
    rows_per_line = Counter(line for lines in fits.values() for line in lines)
    matched: list[tuple[int, str]] = []
    ambiguous: list[int] = []
    for row_id, lines in fits.items():
        if len(lines) == 1 and rows_per_line[lines[0]] == 1:
            matched.append((row_id, lines[0]))
        elif lines:
            ambiguous.append(row_id)
    return _adopt(session, matched), ambiguous


def _candidate_lines(
    session: Session, phone: str | None, created_at: datetime, seen_at: datetime | None
) -> list[str]:
    if not phone or seen_at is None:
        return []
    claimed = select(LOGS.c.id).where(LOGS.c.provider_message_id == RECEIPTS.c.provider_message_id)
    query = (
        select(RECEIPTS.c.provider_message_id)
        .where(
            RECEIPTS.c.source == Source.sms.value,
            RECEIPTS.c.state == State.unmatched.value,
            RECEIPTS.c.address == phone,
            RECEIPTS.c.occurred_at >= created_at - PUBLISH_SLACK,
            RECEIPTS.c.occurred_at <= seen_at + PUBLISH_SLACK,
            ~claimed.exists(),
        )
        .distinct()
    )
    return [str(pmid) for pmid in session.scalars(query)]


def _adopt(session: Session, matched: Sequence[tuple[int, str]]) -> int:
    """Set the message id of each row still `unknown` without one; the receipts of the ids
    set go back to `pending` so the next apply uses them. Returns the rows adopted."""
    adopted: list[str] = []
    for row_id, message_id in matched:
        statement = (
            update(LOGS)
            .where(
                LOGS.c.id == row_id,
                LOGS.c.status == Status.unknown.value,
                LOGS.c.provider_message_id.is_(None),
            )
            .values(provider_message_id=message_id)
        )
        if _count(session.execute(statement)):
            adopted.append(message_id)
    if adopted:
        session.execute(
            update(RECEIPTS)
            .where(
                RECEIPTS.c.source == Source.sms.value,
                RECEIPTS.c.state == State.unmatched.value,
                RECEIPTS.c.provider_message_id.in_(adopted),
            )
            .values(state=State.pending.value)
        )
    return len(adopted)


def expire_silent_sms(*, session: Session, now: datetime, keep: Sequence[int] = ()) -> int:
    """No receipt 72 h after sending (or after being seen unknown with no line that fits), of
    an SMS sent while the delivery logs were being read: one sent before they were first read
    could have no receipt, and 72 h are counted to the latest read (a poll that could not read
    them expires nothing the read it missed may answer)."""
    since, until = sms_logs_read(session)
    if since is None or until is None:
        return 0
    cutoff = min(now, until) - NO_RECEIPT_AFTER
    silent_sent = and_(
        LOGS.c.status == Status.sent.value,
        LOGS.c.sent_at < cutoff,
        LOGS.c.sent_at >= since,
        ~decided_by_an_operator(),  # an operator saw the provider's logs: sent is the answer
    )
    silent_unknown = and_(
        LOGS.c.status == Status.unknown.value,
        LOGS.c.provider_message_id.is_(None),
        LOGS.c.unknown_since < cutoff,
        LOGS.c.created_at >= since,  # its attempt came after its creation
    )
    statement = (
        update(LOGS)
        .where(LOGS.c.channel == Channel.sms.value, LOGS.c.receipt_at.is_(None))
        .where(silent_sent | silent_unknown, LOGS.c.id.not_in(list(keep)))
        .values(
            status=Status.undelivered.value,
            receipt_event="NoReceipt72h",
            error_code="sms.NoReceipt72h",
            error_message="no SMS delivery receipt within 72 h (AWS: treat as not delivered)",
        )
    )
    return _count(session.execute(statement))


def _count(result: Any) -> int:
    return max(cast(CursorResult[Any], result).rowcount or 0, 0)
