"""Named points in time kept between polls (`receipt_marks`): watermarks, checkpoints, pauses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session

from notify.db import RECEIPT_MARKS


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
