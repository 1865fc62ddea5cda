"""Health (runbook sections 1, 3, 4, 6): backlog, latency, stuck and unknown rows, the database,
the SES account; Prefect workers are folded in by the flow layer with `with_workers`.

Backlog and stuck rows are the state now (an `as_of` in the past does not rebuild them); latency
(created -> sent) covers rows sent in (as_of - window, as_of]: a histogram by millisecond (whole
UTC hours from `audit_latency_hours`, the rest live, see rollups.py), so the average is exact to
the microsecond and p95 is the nearest-rank percentile of the latencies rounded to the millisecond
(what percentile_disc would pick, then rounded), the same on PostgreSQL and SQLite.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, case, func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.actions.indexes import IndexProblem, missing_indexes
from notify.audits.common import Report, Window, header, resolve_window
from notify.audits.rollups import ROLLUPS, Key, RollupPolicy, View, open_view, parts
from notify.audits.ses_account import SesAccountState, check_ses_account
from notify.audits.sql import any_channel, latency_ms, latency_us
from notify.check_names import HEALTH_DATABASE_FACTS
from notify.db import DUE_STATUSES, DeliveryLog, LatencyHour, Receipt, Status, dialect_of
from notify.errors import error_line
from notify.marks import EMAIL_PAUSED, email_sending_paused, read_mark
from notify.settings import Settings
from notify.severity import Facts, Thresholds, assess

P95 = 0.95
MICROS = 1_000_000
STUCK_STATUSES = (Status.claimed.value, Status.sending.value)
LOST_HORIZON = timedelta(hours=1)


class WorkerState(BaseModel):
    """A Prefect worker as the flow layer saw it (notify/ never talks to Prefect)."""

    model_config = ConfigDict(frozen=True)

    name: str
    pool: str | None = None
    online: bool
    last_heartbeat: datetime | None = None


class HealthReport(Report):
    """What health measured. The delivery log's facts are None when the database could not be
    read (`database_reachable` false): unknown, not 0."""

    database_reachable: bool
    database_error: str | None
    backlog: int | None  # pending + pending_retry due at as_of
    deferred: int | None  # pending + pending_retry not yet due (quiet hours, backoff)
    oldest_pending_age_s: float | None  # since the oldest due row became due
    sent_in_window: int | None
    avg_latency_s: float | None
    p95_latency_s: float | None
    stuck_claimed: int | None  # lease expired; rescued back to pending
    stuck_sending: int | None  # lease expired; become unknown when rescued
    unknown: int | None
    # Data loss: rows claimed or in flight whose lease ended over LOST_HORIZON ago (nobody rescued
    # them: no deliverer runs) and provider receipts carrying our delivery id tag still matching
    # no row after LOST_HORIZON.
    lost_past_horizon: int | None = 0
    unmatched_receipts: int | None = 0
    index_problems: tuple[IndexProblem, ...] | None = ()  # declared indexes missing or invalid
    # the reputation guardrail's email pause (notify.marks): why, and since when; None: not paused
    email_paused: str | None = None
    email_paused_since: datetime | None = None
    ses: SesAccountState | None
    workers: tuple[WorkerState, ...] | None = None
    workers_down_minutes: float | None = None  # None with workers []: none ever polled the pool
    pool_deployments: int | None = None  # the work pool's deployments (not paused); None: no pool
    late_runs: int | None = None
    late_runs_minutes: float | None = None  # how long the oldest late run has waited

    def with_workers(
        self,
        workers: Iterable[WorkerState] | None,
        *,
        down_minutes: float | None,
        late_runs: int | None = None,
        late_runs_minutes: float | None = None,
        thresholds: Thresholds | None = None,
        pool_deployments: int | None = None,
    ) -> HealthReport:
        """This report with the Prefect side: the work pool's workers (None: no pool, e.g.
        `notifyops serve`) and its deployments, and the scheduled runs nothing has started,
        severity re-assessed ("down > 10 min": P1; deployments on a pool no worker ever polled:
        P1; runs late > 10 min: P1)."""
        fields = {
            **dict(self),
            "workers": None if workers is None else tuple(workers),
            "workers_down_minutes": down_minutes,
            "pool_deployments": pool_deployments,
            "late_runs": late_runs,
            "late_runs_minutes": late_runs_minutes,
        }
        window = Window(start=self.window_start, end=self.as_of)
        return self.model_copy(update={**fields, **_verdict(fields, window, thresholds)})


def health(
    *,
    session: Session,
    as_of: datetime,
    window: timedelta,
    settings: Settings,
    sesv2: Any = None,
    ses: Any = None,
    rollups: RollupPolicy = ROLLUPS,
) -> HealthReport:
    """Measure the pipeline's health; SES is asked only when a client is given. Never raises
    for an unreachable database or SES: those are reported (and escalate) instead."""
    w = resolve_window(as_of, window)
    return _report(w, _database(session, w, rollups), settings, sesv2=sesv2, ses=ses)


def health_without_database(
    *,
    error: str,
    as_of: datetime,
    window: timedelta,
    settings: Settings,
    sesv2: Any = None,
    ses: Any = None,
) -> HealthReport:
    """Health when the database could not even be opened (`error`, one line): the `database` P1
    finding with nothing of the delivery log measured; SES is still asked."""
    w = resolve_window(as_of, window)
    return _report(w, _unreachable(error), settings, sesv2=sesv2, ses=ses)


def _report(
    w: Window, database: dict[str, Any], settings: Settings, *, sesv2: Any, ses: Any
) -> HealthReport:
    fields: dict[str, Any] = {**database, "ses": None}
    if sesv2 is not None or ses is not None:
        fields["ses"] = check_ses_account(sender=settings.sender_address(), sesv2=sesv2, ses=ses)
    return HealthReport(**fields, **_verdict(fields, w, Thresholds.from_settings(settings)))


def _unreachable(error: str) -> dict[str, Any]:
    return {"database_reachable": False, "database_error": error, **_UNMEASURED}


_UNMEASURED: dict[str, Any] = dict.fromkeys(HEALTH_DATABASE_FACTS)  # unknown, not 0


def _database(session: Session, w: Window, rollups: RollupPolicy) -> dict[str, Any]:
    try:
        session.execute(text("SELECT 1"))
        view = open_view(session, rollups)
        latency = _latency(session, view, w)
        measured = {
            **_queue(session, w.end),
            **latency,
            **_stuck(session, w.end),
            **_lost(session, w.end),
            "index_problems": tuple(missing_indexes(session.connection())),
            **_email_pause(session),
        }
    except SQLAlchemyError as exc:
        session.rollback()
        return _unreachable(error_line(exc))
    return {"database_reachable": True, "database_error": None, **measured}


def _email_pause(session: Session) -> dict[str, Any]:
    """The reputation guardrail's pause as the deliverer reads it (`email_sending_paused`)."""
    why = email_sending_paused(session)
    mark = read_mark(session, EMAIL_PAUSED) if why is not None else None
    return {"email_paused": why, "email_paused_since": mark[0] if mark else None}


def _queue(session: Session, now: datetime) -> dict[str, Any]:
    dl = DeliveryLog
    due_at = func.coalesce(dl.next_attempt_at, dl.created_at)
    is_due = or_(dl.next_attempt_at.is_(None), dl.next_attempt_at <= now)
    query = select(
        func.sum(case((is_due, 1), else_=0)),
        func.sum(case((is_due, 0), else_=1)),
        func.min(case((is_due, due_at), else_=None)),
    ).where(dl.status.in_(DUE_STATUSES))
    backlog, deferred, oldest = session.execute(query).one()
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return {
        "backlog": int(backlog or 0),
        "deferred": int(deferred or 0),
        "oldest_pending_age_s": round(max(age, 0.0), 3),
    }


def _latency(session: Session, view: View, w: Window) -> dict[str, Any]:
    """Count, average and p95 of created -> sent over rows sent in the window, from a histogram
    by millisecond: whole hours from `audit_latency_hours`, the rest live."""
    p = parts(view, Key.sent, w.start, w.end)
    histogram: dict[int, int] = defaultdict(int)
    total_us = 0
    if p.hours is not None:
        lh = LatencyHour
        query = select(lh.latency_ms, func.sum(lh.count), func.sum(lh.micros))
        query = query.where(p.hour_range(lh.hour)).group_by(lh.latency_ms)
        total_us += _into(histogram, session.execute(query))
    dl = DeliveryLog
    micros = latency_us(dl.sent_at, dl.created_at, dialect_of(session))
    millis = latency_ms(micros).label("ms")
    for sign, rows in p.signed:
        query = select(millis, func.count(), func.coalesce(func.sum(micros), 0))
        query = query.where(any_channel(), rows).group_by(millis)
        total_us += _into(histogram, session.execute(query), sign)
    count = sum(histogram.values())
    return {
        "sent_in_window": count,
        "avg_latency_s": round(total_us / count / MICROS, 3) if count else 0.0,
        "p95_latency_s": _nearest_rank(histogram, count) / 1000,
    }


def _into(histogram: dict[int, int], rows: Any, sign: int = 1) -> int:
    total = 0
    for ms, count, micros in rows:
        histogram[int(ms)] += sign * int(count)
        total += sign * int(micros or 0)
    return total


def _nearest_rank(histogram: dict[int, int], count: int) -> int:
    """The p95 in ms: the ceil(0.95 n)-th smallest latency, as percentile_disc picks it."""
    if count == 0:
        return 0
    rank, seen = math.ceil(P95 * count), 0
    for ms in sorted(ms for ms, n in histogram.items() if n):
        seen += histogram[ms]
        if seen >= rank:
            return ms
    return max(histogram)


def _stuck(session: Session, now: datetime) -> dict[str, Any]:
    dl = DeliveryLog
    expired = and_(dl.status.in_(STUCK_STATUSES), dl.lease_expires_at < now)
    query = (
        select(dl.status, func.count())
        .where(or_(expired, dl.status == Status.unknown.value))
        .group_by(dl.status)
    )
    counts = dict(session.execute(query).tuples().all())
    return {
        "stuck_claimed": counts.get(Status.claimed.value, 0),
        "stuck_sending": counts.get(Status.sending.value, 0),
        "unknown": counts.get(Status.unknown.value, 0),
    }


def orphan_receipts() -> list[ColumnElement[bool]]:
    """Receipts of a message we sent (our delivery id tag) with no delivery row for it, still
    unmatched: an operator's `notifyops receipts acknowledge` takes one out (its state becomes
    `acknowledged`), and a new one counts again."""
    row = select(DeliveryLog.id).where(DeliveryLog.id == Receipt.delivery_id).exists()
    return [
        Receipt.state == "unmatched",
        Receipt.delivery_id.is_not(None),  # our tag: a message we sent
        ~row,  # with no row for it (a row in flight keeps its receipt for the rescue)
    ]


def _lost(session: Session, now: datetime) -> dict[str, int]:
    """What data loss means here: a row nobody will ever finish, or a receipt of a message we
    sent (it carries our delivery id tag) with no row. A receipt without the tag is another
    sender's (`notifyops test-email`, another application on the configuration set or the
    account's SMS): it stays `unmatched` in `receipts` and is no loss of ours."""
    dl, horizon = DeliveryLog, now - LOST_HORIZON
    stuck = select(func.count()).where(dl.status.in_(STUCK_STATUSES), dl.lease_expires_at < horizon)
    unmatched = select(func.count()).where(*orphan_receipts(), Receipt.received_at < horizon)
    return {
        "lost_past_horizon": int(session.scalar(stuck) or 0),
        "unmatched_receipts": int(session.scalar(unmatched) or 0),
    }


def _unpolled(fields: Mapping[str, Any]) -> int:
    """The pool's deployments when no worker of it ever sent a heartbeat (its down time is None,
    where a worker online makes it 0 and a known outage its minutes, which `workers-down`
    measures): they run nowhere. 0 without a pool (`notifyops serve`)."""
    if fields.get("workers") is None or fields.get("workers_down_minutes") is not None:
        return 0
    return fields.get("pool_deployments") or 0


def _verdict(fields: Mapping[str, Any], w: Window, thresholds: Thresholds | None) -> dict[str, Any]:
    ses: SesAccountState | None = fields["ses"]
    facts = Facts(
        backlog=fields["backlog"],
        avg_latency_s=fields["avg_latency_s"] if fields["sent_in_window"] else None,
        unknown_deliveries=fields["unknown"] or 0,
        stuck_rows=(fields.get("stuck_claimed") or 0) + (fields.get("stuck_sending") or 0),
        data_loss=bool(fields.get("lost_past_horizon") or fields.get("unmatched_receipts")),
        index_problems=len(fields.get("index_problems") or ()),
        email_paused=fields.get("email_paused"),
        email_paused_since=fields.get("email_paused_since"),
        database_unreachable=not fields["database_reachable"],
        database_error=fields["database_error"],
        email_sending_disabled=ses is not None and ses.sending_enabled is False,
        sender_unverified=ses is not None and ses.sender_verified is False,
        ses_unanswered=ses.unanswered if ses is not None else (),
        ses_silent=ses is not None and ses.silent,
        ses_error=ses.errors[-1] if ses is not None and ses.errors else None,
        ses_errors=ses.errors if ses is not None else (),
        workers_down_minutes=fields.get("workers_down_minutes"),
        unpolled_deployments=_unpolled(fields),
        late_runs=fields.get("late_runs") or 0,
        late_runs_minutes=fields.get("late_runs_minutes"),
    )
    assessment = assess(facts, thresholds or Thresholds())
    return header(w, assessment, [finding.message for finding in assessment.findings])
