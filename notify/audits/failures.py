"""Failure summary (runbook section 5): among rows created in the window, the error rates per
channel against 10%, and the failures grouped by error class and normalised message with the
runbook's cause and fix. Skipped rows are not deliveries and count nowhere.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from notify.audits.common import Report, Window, header, rate, resolve_window
from notify.audits.messages import kind_for, normalise_error_message
from notify.audits.sql import any_channel
from notify.db import FAILED_STATUSES, Channel, DeliveryLog, Status
from notify.errors import UNKNOWN
from notify.settings import Settings
from notify.severity import RUNBOOK, Facts, assess

MAX_GROUPS = 25


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
    *, session: Session, as_of: datetime, window: timedelta, settings: Settings
) -> FailureReport:
    """Error rates and grouped failures over rows created in (as_of - window, as_of]."""
    w = resolve_window(as_of, window)
    counts = _counts(session, w)
    groups = _groups(session, w, failed=counts["failed"])
    return FailureReport(
        **counts,
        error_rate_threshold=RUNBOOK.failure_rate_high,
        groups=tuple(groups[:MAX_GROUPS]),
        groups_not_shown=max(0, len(groups) - MAX_GROUPS),
        **_verdict(w, counts),
    )


def _in_window(w: Window) -> tuple[Any, ...]:
    dl = DeliveryLog
    window = (dl.created_at > w.start, dl.created_at <= w.end)
    return (any_channel(), *window, dl.status != Status.skipped.value)


def _counts(session: Session, w: Window) -> dict[str, Any]:
    dl = DeliveryLog
    failed = func.sum(case((dl.status.in_(FAILED_STATUSES), 1), else_=0))
    retrying = func.sum(case((dl.status == Status.pending_retry.value, 1), else_=0))
    query = (
        select(dl.channel, func.count(), failed, retrying)
        .where(*_in_window(w))
        .group_by(dl.channel)
    )
    per = {ch: (int(t), int(f or 0), int(r or 0)) for ch, t, f, r in session.execute(query)}
    email, sms = (per.get(c.value, (0, 0, 0)) for c in (Channel.email, Channel.sms))
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


def _groups(session: Session, w: Window, *, failed: int) -> list[FailureGroup]:
    """Exact messages are counted in SQL, then merged in Python by their normalised form."""
    dl = DeliveryLog
    query = (
        select(dl.error_class, dl.error_code, dl.error_message, dl.channel, func.count())
        .where(*_in_window(w), dl.status.in_(FAILED_STATUSES))
        .group_by(dl.error_class, dl.error_code, dl.error_message, dl.channel)
    )
    counts: dict[GroupKey, int] = defaultdict(int)
    channels: dict[GroupKey, set[str]] = defaultdict(set)
    for error_class, code, message, channel, count in session.execute(query):
        key = (error_class, code, normalise_error_message(message))
        counts[key] += count
        channels[key].add(channel)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return [_group(key, count, channels[key], failed) for key, count in ordered]


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
