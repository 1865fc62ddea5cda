"""Named points in time kept in the database (`receipt_marks`): the receipts' watermarks and
checkpoints, the SMTP failover's state, and the email pause the deliverer reads before every
batch (a small module of its own, so the delivery path does not import the receipts package)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session

from notify.db import RECEIPT_MARKS

EMAIL_PAUSED = "email-paused"  # set by the reputation guardrail (notify.receipts.reputation)
EMAIL_RESUMED = "email-resumed"


def read_mark(session: Session | Connection, name: str) -> tuple[datetime | None, str] | None:
    """(value, note) of the mark, or None when it was never set."""
    row = session.execute(
        select(RECEIPT_MARKS.c.value, RECEIPT_MARKS.c.note).where(RECEIPT_MARKS.c.name == name)
    ).first()
    return None if row is None else (row[0], row[1])


def set_mark(
    session: Session, name: str, value: datetime | None, *, now: datetime, note: str = ""
) -> None:
    values = {"value": value, "note": note[:300], "updated_at": now}
    changed = session.execute(
        update(RECEIPT_MARKS).where(RECEIPT_MARKS.c.name == name).values(values)
    )
    if not getattr(changed, "rowcount", 0):
        session.execute(insert(RECEIPT_MARKS).values(name=name, **values))


def advance_mark(session: Session, name: str, value: datetime, *, now: datetime) -> datetime:
    """Move the mark forward to `value` (never back); returns the mark's value after."""
    current = read_mark(session, name)
    if current is not None and current[0] is not None and current[0] >= value:
        return current[0]
    set_mark(session, name, value, now=now)
    return value


def email_sending_paused(session: Session | Connection) -> str | None:
    """Why email sending is paused, or None. The deliverer leaves email rows pending while set."""
    mark = read_mark(session, EMAIL_PAUSED)
    if mark is None or mark[0] is None:
        return None
    return mark[1] or "email paused by the reputation guardrail"
