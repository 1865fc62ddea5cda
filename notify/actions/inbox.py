"""The in-app inbox (the seed's notification history and unread count): library functions a web
portal can call with a session.

Every query is a range of the history index `(recipient_id, read, created_at DESC)`: unread
history is one index range read in order (no sort), the whole history is the unread and the read
ranges merged (each limited, then a sort of at most 2 x limit rows), the unread count an
index-only count. Paging is by `before` (created_at of the last item seen).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import CursorResult, Select, false, func, select, true, union_all, update
from sqlalchemy.orm import Session

from notify.actions.selection import recipient_id
from notify.db import NOTIFICATIONS
from notify.errors import InputError

N = NOTIFICATIONS
MAX_LIMIT = 500
_COLUMNS = (
    N.c.id,
    N.c.title,
    N.c.message,
    N.c.template_name,
    N.c.priority,
    N.c.category,
    N.c.read,
    N.c.created_at,
)


class InboxItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    title: str
    message: str
    template_name: str
    priority: str
    category: str
    read: bool
    created_at: datetime


def history_query(
    recipient: int, *, unread_only: bool = False, limit: int = 20, before: datetime | None = None
) -> Select[Any]:
    """The newest notifications of one recipient (by recipients.id), newest first."""
    limit = max(1, min(limit, MAX_LIMIT))
    unread = _range(recipient, read=False, limit=limit, before=before)
    if unread_only:
        return unread
    read = _range(recipient, read=True, limit=limit, before=before)
    both = union_all(select(unread.subquery()), select(read.subquery())).subquery()
    return select(both).order_by(both.c.created_at.desc(), both.c.id.desc()).limit(limit)


def _range(recipient: int, *, read: bool, limit: int, before: datetime | None) -> Select[Any]:
    query = select(*_COLUMNS).where(
        N.c.recipient_id == recipient, N.c.read == (true() if read else false())
    )
    if before is not None:
        query = query.where(N.c.created_at < before)
    return query.order_by(N.c.created_at.desc()).limit(limit)


def inbox(
    *,
    session: Session,
    recipient: str,
    unread_only: bool = False,
    limit: int = 20,
    before: datetime | None = None,
) -> list[InboxItem]:
    """A recipient's (external id) notifications, newest first."""
    query = history_query(
        recipient_id(session, recipient), unread_only=unread_only, limit=limit, before=before
    )
    return [InboxItem.model_validate(dict(row._mapping)) for row in session.execute(query)]


def unread_count(*, session: Session, recipient: str) -> int:
    rid = recipient_id(session, recipient)
    query = select(func.count()).where(N.c.recipient_id == rid, N.c.read == false())
    return int(session.scalar(query) or 0)


def mark_read(
    *, session: Session, recipient: str, ids: Sequence[int] = (), all_unread: bool = False
) -> int:
    """Mark the given notifications (or, with `all_unread`, every unread one) of this recipient
    read; returns how many changed (already read: not counted). An id that is not one of this
    recipient's notifications (someone else's, or none at all) refuses the whole call: an
    InputError naming those ids, nothing marked."""
    if not ids and not all_unread:
        return 0
    rid = recipient_id(session, recipient)
    statement = update(N).where(N.c.recipient_id == rid, N.c.read == false())
    if not all_unread:
        _refuse_others(session, rid, recipient, ids)
        statement = statement.where(N.c.id.in_(list(ids)))
    result = session.execute(statement.values(read=True))
    return max(result.rowcount or 0, 0) if isinstance(result, CursorResult) else 0


def _refuse_others(session: Session, rid: int, recipient: str, ids: Sequence[int]) -> None:
    """InputError listing the ids that are not notifications of this recipient."""
    wanted = set(ids)
    theirs = set(
        session.scalars(select(N.c.id).where(N.c.recipient_id == rid, N.c.id.in_(sorted(wanted))))
    )
    others = sorted(wanted - theirs)
    if others:
        shown = ", ".join(map(str, others[:10])) + (" …" if len(others) > 10 else "")
        raise InputError(
            f"id {shown}: not a notification of {recipient!r} (see `notifyops inbox "
            f"{recipient}`); nothing was marked read"
        )
