"""Failure summary (runbook section 5): among rows created in the window, the error rates per
channel against 10%, and the failures grouped by error class and normalised message with the
runbook's cause and fix. Skipped and purged rows are not deliveries and count nowhere; rows still
queued or in flight (pending, claimed, sending) have no outcome yet and count nowhere either: a rate
is failed rows over rows with an outcome (sent, delivered, failed, retrying, unknown, ...). A group
counts its failed rows (`count`, which the rates count) and the rows with the same error still
waiting for a retry (`retrying`): an error every message meets and the deliverer retries (an
unverified sender, a paused account, throttling) shows with its fix before anything has failed for
good.

Settled rows (sent, delivered) of whole UTC hours come from the hourly rollups; failed and retrying
rows, the partial hours and rows not folded yet are read live (rollups.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.audits.common import Report, Window, header, rate, resolve_window
from notify.audits.rollups import ROLLUPS, Key, Parts, RollupPolicy, open_view, parts
from notify.audits.sql import ALL_CHANNELS, any_channel
from notify.db import FAILED_STATUSES, Channel, CreatedHour, DeliveryLog, Status
from notify.error_messages import MAX_CHARS as MAX_MESSAGE_CHARS
from notify.error_messages import kind_for, normalise_error_message
from notify.errors import UNKNOWN, provider_text
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
    count: int  # failed rows (failed, failed_permanent)
    retrying: int  # rows with this error waiting for a retry (pending_retry)
    share: float  # of all failed rows in the window
    known: bool  # a pattern notify.errors knows (cause and fix from the runbook)
    cause: str
    fix: str


class FailureReport(Report):
    total: int  # rows created in the window, neither skipped nor purged
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
    tally = _Tally()
    _rolled_totals(session, p, tally)
    for sign, rows in p.signed:
        _live(session, rows, sign, tally)
    counts = tally.counts()
    groups = tally.groups(failed=counts["failed"])
    return FailureReport(
        **counts,
        error_rate_threshold=RUNBOOK.failure_rate_high,
        groups=tuple(groups[:MAX_GROUPS]),
        groups_not_shown=max(0, len(groups) - MAX_GROUPS),
        **_verdict(w, counts),
    )


GroupKey = tuple[str | None, str | None, str]
# never deliveries: skipped by a policy, or purged from the queue by an operator
NOT_SENT = (Status.skipped.value, Status.purged.value)
# no outcome yet: still queued (a quiet-hours hold too) or in flight. Counted, they made the rate
# of the rows that did end smaller the more were waiting: 250 failed of 311 ended (80%, P1) read
# as 24.6% (P2) beside 718 rows in flight
NO_OUTCOME = (Status.pending.value, Status.claimed.value, Status.sending.value)


@dataclass
class _Tally:
    """Per channel [total, failed, retrying], and per (class, code, message) the failed rows and
    the retrying ones."""

    per: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    counts_by_key: dict[GroupKey, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    channels: dict[GroupKey, set[str]] = field(default_factory=lambda: defaultdict(set))

    def counts(self) -> dict[str, Any]:
        per = self.per
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

    def groups(self, *, failed: int) -> list[FailureGroup]:
        found = [(key, counts) for key, counts in self.counts_by_key.items() if any(counts)]
        ordered = sorted(found, key=lambda item: (-sum(item[1]), str(item[0])))
        return [
            _group(key, counts[0], counts[1], self.channels[key], failed) for key, counts in ordered
        ]


def _rolled_totals(session: Session, p: Parts, tally: _Tally) -> None:
    if p.hours is None:
        return
    c = CreatedHour
    query = select(c.channel, func.sum(c.count)).where(p.hour_range(c.hour))
    query = query.where(c.channel.in_(ALL_CHANNELS)).group_by(c.channel)
    for channel, total in session.execute(query):
        tally.per[channel][0] += int(total or 0)


def _live(session: Session, rows: ColumnElement[bool], sign: int, tally: _Tally) -> None:
    """One pass over a live row set: counts per channel and status, and the failed rows (and
    the retrying ones that carry an error) by their stored normalised message (`error_norm`), or
    by exact message where none is stored yet (normalised here). Rolled rows taken away (sign -1)
    are settled: never failed."""
    dl = DeliveryLog
    retried = and_(
        dl.status == Status.pending_retry.value,
        or_(dl.error_code.is_not(None), dl.error_message.is_not(None)),
    )
    failed = or_(dl.status.in_(FAILED_STATUSES), retried)
    error_columns = (dl.error_class, dl.error_code, dl.error_norm)
    errors = [case((failed, column), else_=None) for column in error_columns]
    raw_message = case((and_(failed, dl.error_norm.is_(None)), dl.error_message), else_=None)
    columns = (dl.channel, dl.status, *errors, raw_message)
    counted = dl.status.not_in((*NOT_SENT, *NO_OUTCOME))
    query = select(*columns, func.count()).where(any_channel(), rows, counted)
    result: Any = session.execute(query.group_by(*columns))
    for channel, status, error_class, code, norm, message, count in result:
        counts = tally.per[channel]
        counts[0] += sign * count
        if status == Status.pending_retry.value:
            counts[2] += sign * count
        if status in FAILED_STATUSES:
            counts[1] += sign * count
        retrying_error = status == Status.pending_retry.value and (
            error_class is not None or code is not None or norm is not None or message is not None
        )
        if status in FAILED_STATUSES or retrying_error:
            key = (error_class, code, norm if norm is not None else _normalised(message))
            tally.counts_by_key[key][0 if status in FAILED_STATUSES else 1] += sign * count
            tally.channels[key].add(channel)


def _channel(name: str, total: int, failed: int) -> dict[str, Any]:
    return {
        f"{name}_total": total,
        f"{name}_failed": failed,
        f"{name}_error_rate": rate(failed, total),
    }


@lru_cache(maxsize=NORMALISED_CACHE)
def _normalised(message: str | None) -> str:
    return normalise_error_message(message)


def _group(
    key: GroupKey, count: int, retrying: int, channels: set[str], failed: int
) -> FailureGroup:
    error_class, code, message = key
    kind = kind_for(code, message, error_class)  # the class tells our sender from a recipient
    return FailureGroup(
        error_class=error_class or kind.error_class.value,
        error_code=code,
        error_message=provider_text(message, MAX_MESSAGE_CHARS),  # one line, no HTML markup
        channels=tuple(sorted(channels)),
        count=count,
        retrying=retrying,
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
