"""SMS cost audit (runbook section 2): count and cost per hour, last hour, today, top recipients,
and the month's spend against the SNS account's monthly spend limit (notify/audits/sns_account.py).

Only rows the provider accepted (sent, delivered, bounced, complained, undelivered) have cost
money; they are bucketed by `sent_at`. Every figure counts an SMS at the price known: the
receipt's (`actual_cost`) where one arrived, else our estimate (`cost`). Sums are exact (whole
micro-dollars in SQL) and shown at that precision (notify/money.py).
Whole UTC hours are read from `audit_sms_totals` (per hour) and `audit_sms_hours` (per hour and
recipient); the partial hours at both ends of each range and the rows not folded yet are read
live from delivery_logs (see rollups.py): the full scan's answer to the cent.

Today's spend against the daily cap is the send policy's own measure (`_cap_spend`): the SMS
created today and not skipped, failed or purged, queued ones included. Measured by sent_at it
missed a cap the policy had reached on queued SMS (P4 while every SMS was skipped) and called a
cap reached on SMS created yesterday and sent today (P2 while SMS went out).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
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
    header,
    money,
    resolve_window,
    usd_from_micros,
)
from notify.audits.rollups import ROLLUPS, Key, Parts, RollupPolicy, open_view, paid_sms, parts
from notify.audits.sns_account import SnsSpendLimit, sms_spend_limit
from notify.audits.sql import hour_bucket, micros_sum
from notify.conditions import NOT_SPENDING, start_of_utc_day
from notify.db import (
    Channel,
    CreatedHour,
    DeliveryLog,
    Notification,
    Recipient,
    SmsHour,
    SmsTotalHour,
    dialect_of,
    sms_cost_known,
)
from notify.masking import mask_phone
from notify.money import usd
from notify.settings import Settings
from notify.severity import (
    Facts,
    Thresholds,
    assess,
    cheapest_sms_usd,
    sms_cap_reached,
    sms_spend_limit_reached,
)

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
    # what the daily cap counts: SMS created in the UTC day of as_of up to as_of, not skipped,
    # failed or purged (queued ones included), at the receipt's price where known
    today_cost_usd: Decimal
    daily_cap_usd: Decimal
    daily_cap_used: float | None  # share of the cap spent today; None when the cap is 0
    daily_cap_reached: bool
    month_cost_usd: Decimal  # UTC calendar month of as_of, up to as_of
    # the SNS account's MonthlySpendLimit (None: not asked, as with the memory sender, or not
    # answered: `sns_error` says why) and the share of it the month's spend used
    sns_spend_limit_usd: Decimal | None = None
    sns_spend_limit_used: float | None = None
    sns_error: str | None = None
    hourly: tuple[HourlySms, ...]
    top_recipients: tuple[RecipientSpend, ...]  # by count
    top_recipients_by_cost: tuple[RecipientSpend, ...]


def sms_cost_audit(
    *,
    session: Session,
    as_of: datetime,
    window: timedelta,
    settings: Settings,
    top_n: int = TOP_N,
    rollups: RollupPolicy = ROLLUPS,
    sns: Any = None,
) -> SmsCostReport:
    """SMS spend over (as_of - window, as_of], the last hour, today and this month, against the
    thresholds and (with an `sns` client) the SNS account's monthly spend limit.

    Whole hours come from the hourly rollups, the rest live (see notify/audits/rollups.py); with
    `rollups=FULL_SCAN` every row is read live (the same answer, slower)."""
    w = resolve_window(as_of, window)
    view = open_view(session, rollups)
    paid = _paid_sms(session, parts(view, Key.sent, w.start, w.end))
    buckets = [(h, *paid.per_hour.get(h, (0, 0, 0))) for h in _hours(w)]
    last_hour = _spend(session, parts(view, Key.sent, w.end - HOUR, w.end))
    day_start = start_of_utc_day(w.end)
    today = _cap_spend(session, parts(view, Key.created, day_start, w.end, include_start=True))
    month_start = day_start.replace(day=1)
    month = _spend(session, parts(view, Key.sent, month_start, w.end, include_start=True))
    limit = sms_spend_limit(sns) if sns is not None else SnsSpendLimit()
    spenders = _spenders(paid)
    return SmsCostReport(
        **_totals(buckets),
        last_hour_cost_usd=money(last_hour),
        hourly_alarm_usd=money(settings.sms_hourly_alarm_usd),
        **_today(today, settings),
        **_month(month, limit),
        hourly=tuple(_hour_row(*bucket) for bucket in buckets),
        top_recipients=_top(spenders, by_cost=False, limit=top_n),
        top_recipients_by_cost=_top(spenders, by_cost=True, limit=top_n),
        **_verdict(w, last_hour, today, month, limit, settings),
    )


def _paid(rows: ColumnElement[bool]) -> ColumnElement[bool]:
    return and_(paid_sms(), rows)


def _cap_counted(rows: ColumnElement[bool]) -> ColumnElement[bool]:
    """The SMS among `rows` the daily cap counts (not skipped, failed or purged)."""
    dl = DeliveryLog
    return and_(rows, dl.channel == Channel.sms.value, dl.status.not_in(NOT_SPENDING))


Bucket = tuple[datetime, int, int, Any]  # hour, count, segments, micro-dollars
Sums = dict[Any, list[int]]


@dataclass
class _Paid:
    """Paid SMS per UTC hour [count, segments, micros] and per recipient id [count, micros],
    with each recipient's (external_id, phone)."""

    per_hour: Sums = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    per_recipient: Sums = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    who: dict[int, tuple[str, str | None]] = field(default_factory=dict)


def _paid_sms(session: Session, p: Parts) -> _Paid:
    """Paid SMS of the range: whole hours from the rollups, the rest live (one pass per part,
    by hour and recipient)."""
    paid = _Paid()
    r = Recipient
    if p.hours is not None:
        t, s = SmsTotalHour, SmsHour
        by_hour = select(t.hour, t.count, t.segments, t.micros).where(p.hour_range(t.hour))
        _add(paid.per_hour, session.execute(by_hour))
        sums = (func.sum(s.count), func.sum(s.micros))
        by_recipient = (
            select(s.recipient_id, r.external_id, r.phone, *sums)
            .join(r, r.id == s.recipient_id)
            .where(p.hour_range(s.hour))
            .group_by(s.recipient_id, r.external_id, r.phone)
        )
        for rid, ext, phone, count, micros in session.execute(by_recipient):
            _add(paid.per_recipient, [(rid, count, micros)])
            paid.who[rid] = (ext, phone)
    dl, n = DeliveryLog, Notification
    hour = hour_bucket(dl.sent_at, dialect_of(session)).label("hour")
    counts = (func.count(), func.coalesce(func.sum(dl.segments), 0), micros_sum(sms_cost_known()))
    keys = (hour, r.id, r.external_id, r.phone)
    for sign, rows in p.signed:
        query = (
            select(*keys, *counts)
            .join(n, n.id == dl.notification_id)
            .join(r, r.id == n.recipient_id)
            .where(_paid(rows))
            .group_by(*keys)
        )
        for at, rid, ext, phone, count, segments, micros in session.execute(query):
            _add(paid.per_hour, [(at, count, segments, micros)], sign)
            _add(paid.per_recipient, [(rid, count, micros)], sign)
            paid.who[rid] = (ext, phone)
    return paid


def _add(into: Sums, rows: Any, sign: int = 1) -> None:
    for key, *values in rows:
        total = into[key]
        for i, value in enumerate(values):
            total[i] += sign * int(value or 0)


def _hours(w: Window) -> list[datetime]:
    """Every UTC hour with a moment in (start, end], oldest first."""
    first = (w.start + timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
    count = int((w.end - first) / HOUR) + 1
    return [first + n * HOUR for n in range(count)]


def _hour_row(hour: datetime, count: int, segments: int, micros: Any) -> HourlySms:
    return HourlySms(
        hour=hour, count=count, segments=segments, cost_usd=money(usd_from_micros(micros))
    )


def _totals(buckets: list[Bucket]) -> dict[str, Any]:
    return {
        "sms_count": sum(b[1] for b in buckets),
        "segments": sum(b[2] for b in buckets),
        "total_cost_usd": money(usd_from_micros(sum(int(b[3]) for b in buckets))),
    }


def _spend(session: Session, p: Parts) -> Decimal:
    """Paid SMS dollars sent in the range, exact: whole hours from the SMS totals by sent hour."""
    return _exact(session, p, SmsTotalHour.micros, SmsTotalHour.hour, _paid)


def _cap_spend(session: Session, p: Parts) -> Decimal:
    """What the daily cap counts, as the send policy does (notify/conditions.py): SMS created in
    the range that were not skipped, failed or purged (queued and in-flight ones included), at
    the receipt's price where one arrived, else the estimate. Exact: the settled ones of whole
    hours from the rollup by created hour (which holds them at the price known), the rest live.
    Read live alone, this was about 140 ms of the audit over a million rows."""
    sms = CreatedHour.channel == Channel.sms.value
    return _exact(session, p, CreatedHour.micros, CreatedHour.hour, _cap_counted, sms)


def _exact(
    session: Session,
    p: Parts,
    rolled: Any,
    hour: Any,
    live: Callable[[ColumnElement[bool]], ColumnElement[bool]],
    *of_rollup: ColumnElement[bool],
) -> Decimal:
    """Dollars over the range `p` splits, at the price known: the `rolled` micros of its whole
    hours (the rollup's `hour`, its rows `of_rollup`), plus, minus, the live row sets `live`
    keeps."""
    micros = 0
    if p.hours is not None:
        query = select(func.coalesce(func.sum(rolled), 0))
        micros += int(session.execute(query.where(p.hour_range(hour), *of_rollup)).scalar() or 0)
    for sign, rows in p.signed:
        query = select(micros_sum(sms_cost_known())).where(live(rows))
        micros += sign * int(session.execute(query).scalar() or 0)
    return usd_from_micros(micros)


def _today(today: Decimal, settings: Settings) -> dict[str, Any]:
    cap = settings.sms_daily_cap_usd
    return {
        "today_cost_usd": money(today),
        "daily_cap_usd": money(cap),
        "daily_cap_used": round(float(today / cap), 4) if cap > 0 else None,
        "daily_cap_reached": sms_cap_reached(today, cap, cheapest_sms_usd(settings)),
    }


def _month(month: Decimal, limit: SnsSpendLimit) -> dict[str, Any]:
    cap = limit.limit_usd
    return {
        "month_cost_usd": money(month),
        "sns_spend_limit_usd": None if cap is None else money(cap),
        "sns_spend_limit_used": round(float(month / cap), 4) if cap else None,
        "sns_error": limit.error,
    }


Spender = tuple[str, str | None, int, int]  # external_id, phone, count, micro-dollars


def _spenders(paid: _Paid) -> list[Spender]:
    """Paid SMS per recipient in the window (one row per recipient who got any)."""
    return [
        (*paid.who[rid], count, micros)
        for rid, (count, micros) in paid.per_recipient.items()
        if count
    ]


def _top(spenders: list[Spender], *, by_cost: bool, limit: int) -> tuple[RecipientSpend, ...]:
    """The first `limit` by count (or cost), ties broken by the other, then external_id."""

    def key(s: Spender) -> tuple[Any, ...]:
        first, second = (s[3], s[2]) if by_cost else (s[2], s[3])
        return (-first, -second, s[0])

    return tuple(
        RecipientSpend(
            recipient=external_id,
            count=count,
            cost_usd=money(usd_from_micros(micros)),
            phone_masked=mask_phone(phone),
        )
        for external_id, phone, count, micros in heapq.nsmallest(limit, spenders, key=key)
    )


def _verdict(
    w: Window,
    last_hour: Decimal,
    today: Decimal,
    month: Decimal,
    limit: SnsSpendLimit,
    settings: Settings,
) -> dict[str, Any]:
    facts = Facts(
        sms_cost_last_hour_usd=last_hour,
        sms_cost_today_usd=today,
        sms_cost_month_usd=month,
        sms_spend_limit_usd=limit.limit_usd,
        sms_spend_limit_error=limit.failed,
    )
    breaches = []
    if last_hour > settings.sms_hourly_alarm_usd:
        alarm = settings.sms_hourly_alarm_usd
        breaches.append(f"SMS cost {usd(last_hour)} in the last hour > {usd(alarm)}")
    if sms_cap_reached(today, settings.sms_daily_cap_usd, cheapest_sms_usd(settings)):
        breaches.append(f"daily SMS cap reached: {usd(today)} of {usd(settings.sms_daily_cap_usd)}")
    if limit.limit_usd is not None and sms_spend_limit_reached(month, limit.limit_usd):
        breaches.append(
            f"SNS monthly SMS spend limit reached: {usd(month)} of {usd(limit.limit_usd)}"
        )
    if limit.failed and month > 0:  # spend that nothing compared with the limit
        breaches.append(f"SNS monthly SMS spend limit unknown: {usd(month)} spent this month")
    return header(w, assess(facts, Thresholds.from_settings(settings)), breaches)
