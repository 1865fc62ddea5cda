"""What the audits read from receipts: counts per outcome, and SMS cost, estimated vs actual.

- `receipt_counts`: delivered, bounced, complained, undelivered, no receipt yet, unmatched and
  malformed receipts per channel (not yet shown by `failure-summary` or `health`).
- `notify.db.sms_cost_known()` is the SQL expression the daily SMS cap sums: the price from the
  delivery log where known, the estimate otherwise (the SMS cost audit's rollups sum the
  estimate).
- `daily_sms_cost` is estimate vs actual per UTC day, to the cent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from notify.db import DELIVERY_LOGS, RECEIPTS, Channel, Status
from notify.receipts.events import State

CENT = Decimal("0.01")
RECEIPT_STATUSES = (
    Status.delivered.value,
    Status.bounced.value,
    Status.complained.value,
    Status.undelivered.value,
)


@dataclass(frozen=True)
class ReceiptCounts:
    """Rows sent in the window by what their receipts say, per channel."""

    channel: str
    delivered: int
    bounced: int
    complained: int
    undelivered: int
    no_receipt_yet: int  # `sent`, nothing heard yet
    unknown: int


@dataclass(frozen=True)
class ReceiptHealth:
    channels: tuple[ReceiptCounts, ...]
    unmatched_receipts: int
    malformed_receipts: int


def receipt_counts(*, session: Session, since: datetime, until: datetime) -> ReceiptHealth:
    logs = DELIVERY_LOGS
    query = (
        select(logs.c.channel, logs.c.status, func.count())
        .where(logs.c.sent_at >= since, logs.c.sent_at < until)
        .group_by(logs.c.channel, logs.c.status)
    )
    by: dict[tuple[str, str], int] = {(c, s): n for c, s, n in session.execute(query)}
    unknown = _pairs(
        session,
        select(logs.c.channel, func.count())
        .where(logs.c.status == Status.unknown.value)
        .group_by(logs.c.channel),
    )
    channels = tuple(_channel_counts(ch.value, by, unknown.get(ch.value, 0)) for ch in Channel)
    states = _pairs(
        session,
        select(RECEIPTS.c.state, func.count())
        .where(RECEIPTS.c.received_at >= since, RECEIPTS.c.received_at < until)
        .group_by(RECEIPTS.c.state),
    )
    return ReceiptHealth(
        channels, states.get(State.unmatched.value, 0), states.get(State.malformed.value, 0)
    )


def _pairs(session: Session, query: Select[Any]) -> dict[str, int]:
    return {str(key): int(count) for key, count in session.execute(query)}


def _channel_counts(channel: str, by: dict[tuple[str, str], int], unknown: int) -> ReceiptCounts:
    return ReceiptCounts(
        channel=channel,
        delivered=by.get((channel, Status.delivered.value), 0),
        bounced=by.get((channel, Status.bounced.value), 0),
        complained=by.get((channel, Status.complained.value), 0),
        undelivered=by.get((channel, Status.undelivered.value), 0),
        no_receipt_yet=by.get((channel, Status.sent.value), 0),
        unknown=unknown,
    )


@dataclass(frozen=True)
class DailySmsCost:
    """One UTC day of SMS: the estimate, the actual where known, and what the day really cost."""

    day: date
    messages: int
    priced: int  # messages with a price from the delivery log
    estimated_usd: Decimal  # sum of estimates, all messages
    actual_usd: Decimal  # sum of actual prices, priced messages
    effective_usd: Decimal  # actual where known, estimate otherwise
    difference_usd: Decimal  # effective - estimated (negative: we over-estimated)


def daily_sms_cost(*, session: Session, since: datetime, until: datetime) -> list[DailySmsCost]:
    """Estimate vs actual per UTC day of sending, rounded to the cent."""
    logs = DELIVERY_LOGS
    query = select(logs.c.sent_at, logs.c.cost, logs.c.actual_cost).where(
        logs.c.channel == Channel.sms.value,
        logs.c.sent_at >= since,
        logs.c.sent_at < until,
    )
    days: dict[date, list[Decimal | int]] = {}
    for sent_at, cost, actual in session.execute(query).yield_per(5000):
        day = days.setdefault(sent_at.date(), [0, 0, Decimal(0), Decimal(0), Decimal(0)])
        estimate = Decimal(cost or 0)
        day[0] = int(day[0]) + 1
        day[1] = int(day[1]) + (actual is not None)
        day[2] = Decimal(day[2]) + estimate
        day[3] = Decimal(day[3]) + Decimal(actual or 0)
        day[4] = Decimal(day[4]) + (Decimal(actual) if actual is not None else estimate)
    return [_day(day, values) for day, values in sorted(days.items())]


def _day(day: date, values: Sequence[Decimal | int]) -> DailySmsCost:
    messages, priced, estimated, actual, effective = values
    return DailySmsCost(
        day=day,
        messages=int(messages),
        priced=int(priced),
        estimated_usd=_cents(Decimal(estimated)),
        actual_usd=_cents(Decimal(actual)),
        effective_usd=_cents(Decimal(effective)),
        difference_usd=_cents(Decimal(effective) - Decimal(estimated)),
    )


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)
