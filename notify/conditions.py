"""What the policies need to know about a batch, loaded in bulk before deciding.

Today's SMS spend (committed and planned), recent sends of the same title per recipient and channel
(for the loop guard), and active suppressions. `record` folds each decision back in, so a batch
that repeats a recipient or crosses the cap midway is judged as it goes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, FromClause, and_, func, insert, or_, select
from sqlalchemy.orm import Session

from notify.db import (
    SUPPRESSIONS,
    Channel,
    DeliveryLog,
    Notification,
    Recipient,
    Status,
    Suppression,
    SuppressionSource,
    among,
    dialect_of,
    lookup_chunks,
    sms_cost_known,
)
from notify.policies import Action, ChannelDecision

LOOP_WINDOW = timedelta(hours=24)
# never sent, so never paid for: skipped, failed for good, or purged by an operator
NOT_SPENDING = (
    Status.skipped.value,
    Status.failed.value,
    Status.failed_permanent.value,
    Status.purged.value,
)


@dataclass
class BatchConditions:
    sms_spent_today: Decimal
    recent: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    suppressions: list[tuple[str, str, str | None, datetime | None]] = field(default_factory=list)

    def recent_for(self, recipient_id: int, title: str) -> dict[Channel, int]:
        return {channel: self.recent[(recipient_id, title, channel.value)] for channel in Channel}

    def suppressed_for(self, recipient: Recipient, title: str, now: datetime) -> frozenset[Channel]:
        addresses = {Channel.email.value: recipient.email, Channel.sms.value: recipient.phone}
        return frozenset(
            Channel(channel)
            for address, channel, only_title, until in self.suppressions
            if addresses.get(channel) == address
            and (only_title is None or only_title == title)
            and (until is None or until > now)
        )

    def load_chunk(
        self, *, session: Session, recipients: Sequence[Recipient], titles: set[str], now: datetime
    ) -> None:
        """Recent sends and suppressions for these recipients (each appears in one chunk)."""
        self.recent.clear()
        self.suppressions.clear()
        for chunk in lookup_chunks(recipients, dialect=dialect_of(session)):
            self.recent.update(_recent_counts(session, [r.id for r in chunk], titles, now))
            self.suppressions.extend(_suppressions(session, chunk, now))

    def record(
        self, recipient_id: int, title: str, decisions: Iterable[ChannelDecision], cost: Decimal
    ) -> None:
        for decision in decisions:
            if decision.action == Action.skip:
                continue
            self.recent[(recipient_id, title, decision.channel.value)] += 1
            if decision.channel == Channel.sms:
                self.sms_spent_today += cost


def suppression_active(now: datetime, table: FromClause = SUPPRESSIONS) -> ColumnElement[bool]:
    """A suppression still in force at `now` (no end, or an end still ahead)."""
    return or_(table.c.until.is_(None), table.c.until > now)


def suppress_for_good(
    session: Session | Connection, wanted: Mapping[tuple[str, str], str], now: datetime
) -> int:
    """A permanent suppression (every title, no end) of each (address, channel) in `wanted`, with
    its reason, unless that address and channel already have one; returns how many were added.
    What a provider reports (a receipt's bounce, complaint or opt-out; an opt-out the deliverer
    finds). The caller commits."""
    if not wanted:
        return 0
    x = SUPPRESSIONS
    query = select(x.c.address, x.c.channel).where(
        x.c.address.in_(sorted({address for address, _ in wanted})),
        x.c.title.is_(None),
        x.c.until.is_(None),
    )
    existing = {(address, channel) for address, channel in session.execute(query)}
    new = [
        {
            "address": a,
            "channel": c,
            "title": None,
            "reason": r,
            "until": None,
            "created_at": now,
            "source": SuppressionSource.provider.value,
        }
        for (a, c), r in wanted.items()
        if (a, c) not in existing
    ]
    if new:
        session.execute(insert(x), new)
    return len(new)


def suppression_stops(
    *,
    addresses: Sequence[ColumnElement[Any]],
    channel: ColumnElement[Any] | str,
    title: ColumnElement[Any],
    now: datetime,
    table: FromClause = SUPPRESSIONS,
) -> ColumnElement[bool]:
    """A suppression stops a message on `channel` with `title` to one of `addresses`: the same
    address and channel, every title or this one, in force at `now`. What `suppressed_for` and
    the enqueue planner decide row by row, in SQL (the fallback's check, the queued rows'
    recheck)."""
    address = (
        table.c.address == addresses[0] if len(addresses) == 1 else table.c.address.in_(addresses)
    )
    return and_(
        address,
        table.c.channel == channel,
        or_(table.c.title.is_(None), table.c.title == title),
        suppression_active(now, table),
    )


def start_of_utc_day(now: datetime) -> datetime:
    """00:00 UTC of the UTC day `now` falls in (`now` aware, in any zone)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def sms_spend_since(*, session: Session, since: datetime) -> Decimal:
    """SMS cost committed or planned since `since` (rows not skipped, failed or purged): the
    receipt's price where one arrived, the estimate otherwise."""
    query = select(func.coalesce(func.sum(sms_cost_known()), 0)).where(
        DeliveryLog.channel == Channel.sms.value,
        DeliveryLog.created_at >= since,
        DeliveryLog.status.not_in(NOT_SPENDING),
    )
    return Decimal(str(session.scalar(query) or 0))


def start_conditions(*, session: Session, now: datetime) -> BatchConditions:
    """Today's SMS spend so far; recent sends and suppressions are loaded chunk by chunk."""
    return BatchConditions(sms_spend_since(session=session, since=start_of_utc_day(now)))


def _recent_counts(
    session: Session, recipient_ids: list[int], titles: set[str], now: datetime
) -> Counter[tuple[int, str, str]]:
    query = (
        select(Notification.recipient_id, Notification.title, DeliveryLog.channel, func.count())
        .join(DeliveryLog, DeliveryLog.notification_id == Notification.id)
        .where(
            among(Notification.recipient_id, recipient_ids, dialect=dialect_of(session)),
            Notification.title.in_(titles),
            Notification.created_at > now - LOOP_WINDOW,
            DeliveryLog.status != Status.skipped.value,
        )
        .group_by(Notification.recipient_id, Notification.title, DeliveryLog.channel)
    )
    return Counter({(rid, title, channel): n for rid, title, channel, n in session.execute(query)})


def _suppressions(
    session: Session, recipients: Sequence[Recipient], now: datetime
) -> list[tuple[str, str, str | None, datetime | None]]:
    addresses = {a for r in recipients for a in (r.email, r.phone) if a}
    if not addresses:
        return []
    query = select(
        Suppression.address, Suppression.channel, Suppression.title, Suppression.until
    ).where(
        among(Suppression.address, sorted(addresses), dialect=dialect_of(session)),
        suppression_active(now),
    )
    return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]
