"""Failure summary (runbook section 5): among rows created in the window, the error rates per
channel against 10%, and the failures grouped by error class and normalised message with the
runbook's cause and fix. Skipped rows are not deliveries and count nowhere.

Settled rows (sent, delivered) of whole UTC hours come from the hourly rollups; failed, retrying
and in-flight rows, the partial hours and rows not folded yet are read live (rollups.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.audits.common import Report, Window, header, rate, resolve_window
from notify.audits.messages import kind_for, normalise_error_message
from notify.audits.rollups import ROLLUPS, Key, Parts, RollupPolicy, open_view, parts
from notify.audits.sql import ALL_CHANNELS, any_channel
from notify.db import FAILED_STATUSES, Channel, CreatedHour, DeliveryLog, Status
from notify.errors import UNKNOWN
from notify.settings import Settings
from notify.severity import RUNBOOK, Facts, assess

MAX_GROUPS = 25
NORMALISED_CACHE = 65_536


class FailureGroup(BaseModel):
    model_config = ConfigDict(frozen=True)

    error_class: str | None
    error_code: str | None
    error_message: str  # normalised
    channels: tuple[str, ...]
    count: int
    share: float  # of all failed rows in the window
    known: bool  # a pattern notify.errors knows (cause and fix from the runbook)
    cause: str
    fix: str


class FailureReport(Report):
    total: int  # non-skipped rows created in the window
    failed: int  # failed + failed_permanent
    retrying: int  # pending_retry now
    error_rate: float
    email_total: int
    email_failed: int
    email_error_rate: float
    sms_total: int
    sms_failed: int
    sms_error_rate: float
    error_rate_threshold: float
    groups: tuple[FailureGroup, ...]
    groups_not_shown: int  # groups beyond MAX_GROUPS


def failure_summary(
    *,
    session: Session,
    as_of: datetime,
    window: timedelta,
    settings: Settings,
    rollups: RollupPolicy = ROLLUPS,
) -> FailureReport:
    """Error rates and grouped failures over rows created in (as_of - window, as_of].

    Sent and delivered rows of whole hours are counted from `audit_created_hours`; every other
    row (failed rows stay open: an operator can redrive them) is read live, so the answer is the
    full scan's (`rollups=FULL_SCAN`)."""
    w = resolve_window(as_of, window)
    p = parts(open_view(session, rollups), Key.created, w.start, w.end)
    counts = _counts(session, p)
    groups = _groups(session, p, failed=counts["failed"])
    return FailureReport(
        **counts,
        error_rate_threshold=RUNBOOK.failure_rate_high,
        groups=tuple(groups[:MAX_GROUPS]),
        groups_not_shown=max(0, len(groups) - MAX_GROUPS),
        **_verdict(w, counts),
    )


def _delivery(rows: ColumnElement[bool]) -> tuple[Any, ...]:
    return (any_channel(), rows, DeliveryLog.status != Status.skipped.value)


def _counts(session: Session, p: Parts) -> dict[str, Any]:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # total, failed, retrying
    if p.hours is not None:
        c = CreatedHour
        rolled = select(c.channel, func.sum(c.count)).where(p.hour_range(c.hour))
        rolled = rolled.where(c.channel.in_(ALL_CHANNELS)).group_by(c.channel)
        for channel, total in session.execute(rolled):
            per[channel][0] += int(total or 0)
    dl = DeliveryLog
    failed = func.sum(case((dl.status.in_(FAILED_STATUSES), 1), else_=0))
    retrying = func.sum(case((dl.status == Status.pending_retry.value, 1), else_=0))
    for sign, rows in p.signed:  # rolled rows subtracted (-1) are never failed nor retrying
        query = select(dl.channel, func.count(), failed, retrying).where(*_delivery(rows))
        for channel, *values in session.execute(query.group_by(dl.channel)):
            for i, value in enumerate(values):
                per[channel][i] += sign * int(value or 0)
    email, sms = (per.get(c.value, [0, 0, 0]) for c in (Channel.email, Channel.sms))
    total, fail = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    return {
        "total": total,
        "failed": fail,
        "retrying": sum(v[2] for v in per.values()),
        "error_rate": rate(fail, total),
        **_channel("email", *email[:2]),
        **_channel("sms", *sms[:2]),
    }


def _channel(name: str, total: int, failed: int) -> dict[str, Any]:
    return {
        f"{name}_total": total,
        f"{name}_failed": failed,
        f"{name}_error_rate": rate(failed, total),
    }


GroupKey = tuple[str | None, str | None, str]


def _groups(session: Session, p: Parts, *, failed: int) -> list[FailureGroup]:
    """Failed rows are never in the rollups: counted live in SQL by their stored normalised
    message (`error_norm`), or by exact message where none is stored yet, then merged."""
    dl = DeliveryLog
    raw_message = case((dl.error_norm.is_(None), dl.error_message), else_=None)
    columns = (dl.error_class, dl.error_code, dl.error_norm, raw_message, dl.channel)
    counts: dict[GroupKey, int] = defaultdict(int)
    channels: dict[GroupKey, set[str]] = defaultdict(set)
    for rows in p.raw:
        query = select(*columns, func.count()).where(*_delivery(rows))
        query = query.where(dl.status.in_(FAILED_STATUSES)).group_by(*columns)
        for error_class, code, norm, message, channel, count in session.execute(query):
            key = (error_class, code, norm if norm is not None else _normalised(message))
            counts[key] += count
            channels[key].add(channel)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return [_group(key, count, channels[key], failed) for key, count in ordered]


@lru_cache(maxsize=NORMALISED_CACHE)
def _normalised(message: str | None) -> str:
    return normalise_error_message(message)


def _group(key: GroupKey, count: int, channels: set[str], failed: int) -> FailureGroup:
    error_class, code, message = key
    kind = kind_for(code, message)
    return FailureGroup(
        error_class=error_class or kind.error_class.value,
        error_code=code,
        error_message=message,
        channels=tuple(sorted(channels)),
        count=count,
        share=rate(count, failed),
        known=kind is not UNKNOWN,
        cause=kind.cause,
        fix=kind.fix,
    )


def _verdict(w: Window, counts: dict[str, Any]) -> dict[str, Any]:
    facts = Facts(
        email_failure_rate=counts["email_error_rate"] if counts["email_total"] else None,
        sms_failure_rate=counts["sms_error_rate"] if counts["sms_total"] else None,
    )
    limit = RUNBOOK.failure_rate_high
    breaches = [
        f"{name} error rate {counts[f'{name}_error_rate']:.1%} > {limit:.0%}"
        for name in ("email", "sms")
        if counts[f"{name}_error_rate"] > limit
    ]
    return header(w, assess(facts), breaches)
