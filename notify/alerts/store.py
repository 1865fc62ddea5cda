"""Stored alerts: one row per condition, deduplicated with a cooldown, resolved when it clears.

One alert per condition: key "<check>:<finding code>" (e.g. "health:backlog"). A check run calls
`sync_alerts` with its findings (`raise_or_refresh` and `resolve_cleared` are the two halves),
routes the notices due, then `record_notices` with what reached someone: the cooldown
(`last_notified`) starts only then, and an alert that reached nobody is due again on the next run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from notify.db import Alert
from notify.severity import Finding, Severity

OPEN = "open"
RESOLVED = "resolved"
COOLDOWN = "in cooldown"
RETRY = "retry"  # the last notice reached nobody
BEING_SENT = "being sent by another run"  # a run overlapping this one is sending its notice
# how long a run that decided to send a notice holds it (the routes time out in seconds); one
# that died holding it lets the next run send it
NOTIFYING_FOR = timedelta(minutes=2)
UNSTORED = "not stored"  # the alert store (the database) is out of reach
AD_HOC = "ad hoc"  # a run over another window than the schedule's, or looking back: no store


@dataclass(frozen=True)
class AlertNotice:
    """What a route sends: one alert, opened/refreshed or resolved."""

    key: str
    severity: Severity
    summary: str
    state: str  # open | resolved
    count: int
    first_seen: datetime
    # new | reopened | escalated | repeat | retry | in cooldown | being sent by another run |
    # resolved | not stored | ad hoc
    reason: str
    # a resolution's: the highest severity whose notice reached someone (its routes hear the
    # incident is over, though it has dropped since: paged at P1, cleared at P3)
    notified_severity: Severity | None = None
    # an ad hoc run's notice: what makes the run ad hoc (`ad hoc run (window 24h, not the
    # schedule's 1h)`); the live alert of the same key is neither opened nor resolved by it
    ad_hoc: str | None = None

    @property
    def text(self) -> str:
        if self.state == RESOLVED:
            return f"[RESOLVED] {self.key}: {self.summary}"
        if self.ad_hoc is not None:
            return (
                f"[{self.severity}] {self.key}: {self.summary} ({self.ad_hoc}: a one-off "
                "notice; the live alert is left as it is)"
            )
        if self.reason == UNSTORED:
            return (
                f"[{self.severity}] {self.key}: {self.summary} (alert store out of reach: "
                "no cooldown, sent on every run)"
            )
        since = self.first_seen.strftime("%Y-%m-%d %H:%M UTC")
        return f"[{self.severity}] {self.key}: {self.summary} (seen {self.count}x since {since})"


def alert_key(check: str, code: str) -> str:
    """One alert per condition: `health:backlog`."""
    return f"{check}:{code}"


def unstored_notice(check: str, finding: Finding, now: datetime) -> AlertNotice:
    """A finding's notice when the alerts table cannot be used (the database is out of reach):
    routed as it is, with no deduplication, cooldown or resolution."""
    return _one_off(check, finding, now, UNSTORED)


def ad_hoc_notice(check: str, finding: Finding, now: datetime, ad_hoc: str) -> AlertNotice:
    """A finding's notice from an ad hoc run (`notify.check_params.ad_hoc_run`): routed once as
    it is, with no deduplication, cooldown or resolution, and without touching the stored
    alert, which belongs to the scheduled runs."""
    return _one_off(check, finding, now, AD_HOC, ad_hoc=ad_hoc)


def _one_off(
    check: str, finding: Finding, now: datetime, reason: str, ad_hoc: str | None = None
) -> AlertNotice:
    """A notice routed once as the finding is, no stored alert behind it."""
    return AlertNotice(
        key=alert_key(check, finding.code),
        severity=finding.severity,
        summary=finding.message,
        state=OPEN,
        count=1,
        first_seen=now,
        reason=reason,
        ad_hoc=ad_hoc,
    )


@dataclass(frozen=True)
class AlertDecision:
    notify: bool
    notice: AlertNotice


def raise_or_refresh(
    *,
    session: Session,
    key: str,
    severity: Severity,
    summary: str,
    now: datetime,
    cooldown: timedelta,
) -> AlertDecision:
    """Open the alert (or refresh an open one); notify when new, reopened, escalated, when its
    last notice reached nobody, or when the cooldown since the last notice has passed. The
    cooldown starts when `record_notices` says a notice reached someone. A notice due is marked
    as being sent (`notifying_until`) in this transaction: a run overlapping this one does not
    take it for one that reached nobody and send it again (the row is locked while it is read
    where the database can: PostgreSQL)."""
    found = select(Alert).where(Alert.key == key).with_for_update()
    alert = session.execute(found).scalar_one_or_none()
    if alert is None:
        inserted = _insert(session, key, severity, summary, now)
        if inserted is not None:
            return _decision(inserted, notify=True, reason="new")
        alert = session.execute(found).scalar_one()  # a concurrent run inserted it first
    reason = _refresh(alert, severity, summary, now, cooldown)
    notify = reason not in (COOLDOWN, BEING_SENT)
    if notify:
        alert.notifying_until = now + NOTIFYING_FOR
    session.flush()
    return _decision(alert, notify=notify, reason=reason)


def _insert(
    session: Session, key: str, severity: Severity, summary: str, now: datetime
) -> Alert | None:
    """A new open alert; None when a concurrent run inserted the same key first."""
    alert = Alert(
        key=key,
        severity=severity.value,
        state=OPEN,
        summary=summary,
        first_seen=now,
        last_seen=now,
        last_notified=None,  # until a notice reaches someone (record_notices)
        notifying_until=now + NOTIFYING_FOR,  # this run sends its notice
        count=1,
    )
    try:
        with session.begin_nested():
            session.add(alert)
    except IntegrityError:
        return None
    return alert


def _refresh(
    alert: Alert, severity: Severity, summary: str, now: datetime, cooldown: timedelta
) -> str:
    previous = Severity(alert.severity)
    reopened = alert.state != OPEN
    if reopened:
        alert.state, alert.first_seen, alert.count, alert.resolved_at = OPEN, now, 0, None
        alert.last_notified, alert.notified_severity = None, None  # a new incident
    alert.severity, alert.summary, alert.last_seen = severity.value, summary, now
    alert.count += 1
    if reopened:
        return "reopened"
    if severity.rank < previous.rank:
        return "escalated"
    if alert.notifying_until is not None and alert.notifying_until > now:
        return BEING_SENT
    if alert.last_notified is None:
        return RETRY
    return "repeat" if now - alert.last_notified >= cooldown else COOLDOWN


def record_notices(*, session: Session, reached: Mapping[str, bool], now: datetime) -> None:
    """What routing made of the open alerts' notices (key -> reached someone): one that did
    starts its cooldown now and raises `notified_severity` to its severity; one that reached
    nobody is due again on the next run (its severity was updated already, so an escalation that
    reached nobody is not lost to an earlier notice's cooldown), and whoever an earlier notice
    reached still hears the resolution."""
    if not reached:
        return
    query = select(Alert).where(Alert.state == OPEN, Alert.key.in_(list(reached)))
    for alert in session.execute(query).scalars():
        alert.last_notified = now if reached[alert.key] else None
        alert.notifying_until = None
        if reached[alert.key]:
            alert.notified_severity = _highest(alert.notified_severity, alert.severity)
    session.flush()


def _highest(notified: str | None, severity: str) -> str:
    if notified is None:
        return severity
    return min(Severity(notified), Severity(severity), key=lambda s: s.rank).value


def _decision(alert: Alert, *, notify: bool, reason: str) -> AlertDecision:
    return AlertDecision(notify=notify, notice=_notice(alert, reason))


def _notice(alert: Alert, reason: str) -> AlertNotice:
    notified = alert.notified_severity
    return AlertNotice(
        key=alert.key,
        severity=Severity(alert.severity),
        summary=alert.summary,
        state=alert.state,
        count=alert.count,
        first_seen=alert.first_seen,
        reason=reason,
        notified_severity=Severity(notified) if notified else None,
    )


def resolve_cleared(
    *, session: Session, active_keys_for_check: Iterable[str], check_prefix: str, now: datetime
) -> list[AlertNotice]:
    """Resolve the open alerts of one check (keys starting with `check_prefix`) whose condition
    is no longer present; returns those that a notice reached (route them to say the incident is
    over, on the routes of the highest severity that reached someone as well as the current
    one's), though a later repeat failed. One that reached nobody ends quietly: its resolution
    would be the only word of it, and a route still down would report it unreached in place of
    the alerts due now."""
    active = set(active_keys_for_check)
    query = select(Alert).where(
        Alert.state == OPEN, Alert.key.startswith(check_prefix, autoescape=True)
    )
    cleared = [alert for alert in session.execute(query).scalars() if alert.key not in active]
    for alert in cleared:
        alert.state, alert.resolved_at = RESOLVED, now
    session.flush()
    return [_notice(alert, RESOLVED) for alert in cleared if alert.notified_severity is not None]


@dataclass(frozen=True)
class AlertSync:
    to_notify: tuple[AlertNotice, ...]  # open alerts due a notice now
    resolved: tuple[AlertNotice, ...]
    quiet: tuple[AlertNotice, ...]  # open alerts still in their cooldown


def sync_alerts(
    *,
    session: Session,
    check: str,
    findings: Sequence[Finding],
    now: datetime,
    cooldown: timedelta,
) -> AlertSync:
    """One check's findings -> its alerts: raise/refresh each, resolve the ones that cleared."""
    decisions = [
        raise_or_refresh(
            session=session,
            key=alert_key(check, f.code),
            severity=f.severity,
            summary=f.message,
            now=now,
            cooldown=cooldown,
        )
        for f in findings
    ]
    resolved = resolve_cleared(
        session=session,
        check_prefix=f"{check}:",
        now=now,
        active_keys_for_check=[d.notice.key for d in decisions],
    )
    return AlertSync(
        to_notify=tuple(d.notice for d in decisions if d.notify),
        resolved=tuple(resolved),
        quiet=tuple(d.notice for d in decisions if not d.notify),
    )
