"""SMS cost audit (runbook section 2): count and cost per hour, last hour, today, top recipients.

Only rows with status `sent` or `delivered` have cost money; they are bucketed by `sent_at`.
Sums are exact (whole micro-dollars in SQL) and shown rounded half-up to the cent.
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.audits.common import (
    Report,
    Window,
    cents,
    header,
    resolve_window,
    usd_from_micros,
)
from notify.audits.sql import dialect_of, hour_bucket, micros_sum
from notify.conditions import start_of_utc_day
from notify.db import Channel, DeliveryLog, Notification, Recipient, Status
from notify.masking import mask_phone
from notify.settings import Settings
from notify.severity import Facts, Thresholds, assess

PAID_STATUSES = (Status.sent.value, Status.delivered.value)
HOUR = timedelta(hours=1)
TOP_N = 10


class HourlySms(BaseModel):
    model_config = ConfigDict(frozen=True)

    hour: datetime  # start of the UTC hour
    count: int
    segments: int
    cost_usd: Decimal


class RecipientSpend(BaseModel):
    model_config = ConfigDict(frozen=True)

    recipient: str  # external_id
    count: int
    cost_usd: Decimal
    phone_masked: str | None


class SmsCostReport(Report):
    sms_count: int
    segments: int
    total_cost_usd: Decimal
    last_hour_cost_usd: Decimal
    hourly_alarm_usd: Decimal
    today_cost_usd: Decimal  # UTC day of as_of, up to as_of
    daily_cap_usd: Decimal
    daily_cap_used: float | None  # share of the cap spent today; None when the cap is 0
    daily_cap_reached: bool
    hourly: tuple[HourlySms, ...]
    top_recipients: tuple[RecipientSpend, ...]  # by count
    top_recipients_by_cost: tuple[RecipientSpend, ...]


def sms_cost_audit(
    *, session: Session, as_of: datetime, window: timedelta, settings: Settings, top_n: int = TOP_N
) -> SmsCostReport:
    """SMS spend over (as_of - window, as_of], the last hour and today, against the thresholds."""
    w = resolve_window(as_of, window)
    buckets = _buckets(session, w)
    spenders = _spenders(session, w)
    last_hour = _spend(session, _paid(w.end - HOUR, w.end))
    day_start = start_of_utc_day(w.end)
    today = _spend(session, _paid(day_start, w.end, include_start=True))
    return SmsCostReport(
        **_totals(buckets),
        last_hour_cost_usd=cents(last_hour),
        hourly_alarm_usd=settings.sms_hourly_alarm_usd,
        **_today(today, settings.sms_daily_cap_usd),
        hourly=tuple(_hour_row(*bucket) for bucket in buckets),
        top_recipients=_top(spenders, by_cost=False, limit=top_n),
        top_recipients_by_cost=_top(spenders, by_cost=True, limit=top_n),
        **_verdict(w, last_hour, today, settings),
    )


def _paid(start: datetime, end: datetime, *, include_start: bool = False) -> ColumnElement[bool]:
    dl = DeliveryLog
    after = dl.sent_at >= start if include_start else dl.sent_at > start
    return and_(
        dl.channel == Channel.sms.value, dl.status.in_(PAID_STATUSES), after, dl.sent_at <= end
    )


Bucket = tuple[datetime, int, int, Any]  # hour, count, segments, micro-dollars


def _buckets(session: Session, w: Window) -> list[Bucket]:
    """Every UTC hour of the window, oldest first, with its paid SMS (zeros when none)."""
    dl = DeliveryLog
    hour = hour_bucket(dl.sent_at, dialect_of(session)).label("hour")
    query = (
        select(hour, func.count(), func.coalesce(func.sum(dl.segments), 0), micros_sum(dl.cost))
        .where(_paid(w.start, w.end))
        .group_by(hour)
    )
    found = {row[0]: (row[1], int(row[2] or 0), row[3]) for row in session.execute(query)}
    return [(h, *found.get(h, (0, 0, 0))) for h in _hours(w)]


def _hours(w: Window) -> list[datetime]:
    """Every UTC hour with a moment in (start, end], oldest first."""
    first = (w.start + timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
    count = int((w.end - first) / HOUR) + 1
    return [first + n * HOUR for n in range(count)]


def _hour_row(hour: datetime, count: int, segments: int, micros: Any) -> HourlySms:
    return HourlySms(
        hour=hour, count=count, segments=segments, cost_usd=cents(usd_from_micros(micros))
    )


def _totals(buckets: list[Bucket]) -> dict[str, Any]:
    return {
        "sms_count": sum(b[1] for b in buckets),
        "segments": sum(b[2] for b in buckets),
        "total_cost_usd": cents(usd_from_micros(sum(int(b[3]) for b in buckets))),
    }


def _spend(session: Session, where: ColumnElement[bool]) -> Decimal:
    return usd_from_micros(
        session.execute(select(micros_sum(DeliveryLog.cost)).where(where)).scalar()
    )


def _today(today: Decimal, cap: Decimal) -> dict[str, Any]:
    return {
        "today_cost_usd": cents(today),
        "daily_cap_usd": cap,
        "daily_cap_used": round(float(today / cap), 4) if cap > 0 else None,
        "daily_cap_reached": today > 0 and today >= cap,
    }


def _spenders(session: Session, w: Window) -> list[RecipientSpend]:
    """Paid SMS per recipient in the window (one row per recipient who got any)."""
    dl, r = DeliveryLog, Recipient
    query = (
        select(r.external_id, r.phone, func.count(dl.id), micros_sum(dl.cost))
        .join(Notification, Notification.id == dl.notification_id)
        .join(r, r.id == Notification.recipient_id)
        .where(_paid(w.start, w.end))
        .group_by(r.id, r.external_id, r.phone)
    )
    return [
        RecipientSpend(
            recipient=ext, count=n, cost_usd=usd_from_micros(m), phone_masked=mask_phone(ph)
        )
        for ext, ph, n, m in session.execute(query)
    ]


def _top(
    spenders: list[RecipientSpend], *, by_cost: bool, limit: int
) -> tuple[RecipientSpend, ...]:
    """The first `limit` by count (or cost), ties broken by the other, then external_id."""

    def key(s: RecipientSpend) -> tuple[Any, ...]:
        first, second = (s.cost_usd, s.count) if by_cost else (s.count, s.cost_usd)
        return (-first, -second, s.recipient)

    top = heapq.nsmallest(limit, spenders, key=key)
    return tuple(s.model_copy(update={"cost_usd": cents(s.cost_usd)}) for s in top)


def _verdict(w: Window, last_hour: Decimal, today: Decimal, settings: Settings) -> dict[str, Any]:
    facts = Facts(sms_cost_last_hour_usd=last_hour)
    breaches = []
    if last_hour > settings.sms_hourly_alarm_usd:
        breaches.append(
            f"SMS cost ${cents(last_hour)} in the last hour > ${settings.sms_hourly_alarm_usd}"
        )
    if today > 0 and today >= settings.sms_daily_cap_usd:
        breaches.append(f"daily SMS cap reached: ${cents(today)} of ${settings.sms_daily_cap_usd}")
    return header(w, assess(facts, Thresholds.from_settings(settings)), breaches)
