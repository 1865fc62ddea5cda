"""What happened to one send request's messages: its delivery rows by channel, status and
decision, wherever (and by whichever deliverer) they were delivered. No addresses: only counts,
the policy's decision text, the next attempt time and the lease owner (a deliverer's name)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notify.db import DeliveryLog, Notification, Status

WAITING = (Status.pending.value, Status.pending_retry.value)


class RequestRows(BaseModel):
    """Rows of one request sharing channel, status, decision and deliverer."""

    model_config = ConfigDict(frozen=True)

    channel: str
    status: str
    decision: str
    rows: int
    next_attempt_at: datetime | None  # the earliest, for rows still waiting
    delivered_by: str | None  # the lease owner of the last attempt (a deliverer's name)
    error_code: str | None

    def waiting(self, now: datetime) -> str:
        """`due now` (the next deliverer takes them) or `waiting until <when> UTC`."""
        if self.next_attempt_at is None or self.next_attempt_at <= now:
            return "due now"
        return f"waiting until {self.next_attempt_at:%Y-%m-%d %H:%M} UTC"


class RequestReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    groups: tuple[RequestRows, ...]

    def count(self, status: str) -> int:
        return sum(group.rows for group in self.groups if group.status == status)

    @property
    def deferred(self) -> tuple[RequestRows, ...]:
        """Rows still waiting for a later attempt (quiet hours, retries), soonest first."""
        waiting = [g for g in self.groups if g.status in WAITING and g.next_attempt_at is not None]
        return tuple(sorted(waiting, key=lambda g: g.next_attempt_at or datetime.max))


def request_report(*, session: Session, request_id: str) -> RequestReport:
    """The request's delivery rows grouped (one aggregate query on the request_id index)."""
    dl, n = DeliveryLog, Notification
    query = (
        select(
            dl.channel,
            dl.status,
            dl.decision,
            func.count(),
            func.min(dl.next_attempt_at),
            dl.lease_owner,
            dl.error_code,
        )
        .join(n, n.id == dl.notification_id)
        .where(n.request_id == request_id)
        .group_by(dl.channel, dl.status, dl.decision, dl.lease_owner, dl.error_code)
        .order_by(dl.channel, dl.status, dl.decision)
    )
    groups = tuple(
        RequestRows(
            channel=channel,
            status=status,
            decision=decision or "",
            rows=rows,
            next_attempt_at=next_at if status in WAITING else None,
            delivered_by=owner,
            error_code=code,
        )
        for channel, status, decision, rows, next_at, owner, code in session.execute(query)
    )
    return RequestReport(request_id=request_id, groups=groups)
