"""Is there anything for a deliverer to do? One query (three indexed EXISTS): a due row, a
lease that has expired (rescue), or a row a quiet-hours digest carries that has not taken its
digest's outcome yet (notify.digest). Lets a scheduled delivery run end at once when idle."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from notify.db import DELIVERY_LOGS
from notify.digest import lagging
from notify.outbox import due_now

LOGS = DELIVERY_LOGS


def has_work(*, session: Session, now: datetime) -> bool:
    due = exists().where(due_now(now))
    expired = exists().where(
        LOGS.c.status.in_(("claimed", "sending")), LOGS.c.lease_expires_at < now
    )
    behind = exists().where(lagging(now))
    return bool(session.scalar(select(or_(due, expired, behind))))
