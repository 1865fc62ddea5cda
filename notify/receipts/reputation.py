"""The reputation guardrail: bounce and complaint rates over the SES review window.

AWS reviews an account at 5% bounces or 0.1% complaints (P2 here) and may pause its sending at
10% / 0.5% (P1 here). At P1 we pause email ourselves first: the deliverer leaves email rows
`pending` (`email_sending_paused` says why) until an operator runs `notifyops receipts
resume-email`. Rates count hard (permanent) bounces and complaints among the emails sent in the
window, once there are at least NOTIFY_REPUTATION_MIN_SENDS; after a resume the window starts
again at the resume.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from notify.db import DELIVERY_LOGS, Channel, Status
from notify.marks import EMAIL_PAUSED, EMAIL_RESUMED, email_sending_paused, read_mark, set_mark
from notify.metrics import MetricPoint

P2_BOUNCE, P2_COMPLAINT = 0.05, 0.001
P1_BOUNCE, P1_COMPLAINT = 0.10, 0.005
SENT_OR_LATER = (
    Status.sent.value,
    Status.delivered.value,
    Status.bounced.value,
    Status.complained.value,
    Status.undelivered.value,
)
PERCENT = 100


@dataclass(frozen=True)
class ReputationFinding:
    severity: str | None  # "P1", "P2" or None
    window_start: datetime
    sent: int
    bounced: int
    complained: int
    bounce_rate: float
    complaint_rate: float
    counted: bool  # False below the minimum volume: rates shown, no finding
    paused: str | None  # why email is paused, when it is

    @property
    def summary(self) -> str:
        rates = (
            f"bounce rate {self.bounce_rate:.2%} ({self.bounced}/{self.sent}), "
            f"complaint rate {self.complaint_rate:.3%} ({self.complained}/{self.sent})"
        )
        return f"{self.severity}: {rates}" if self.severity else rates


def reputation(
    *, session: Session, now: datetime, window: timedelta, min_sends: int
) -> ReputationFinding:
    """The rates since max(now - window, last resume) and the severity they reach."""
    start = now - window
    resumed = read_mark(session, EMAIL_RESUMED)
    if resumed and resumed[0] and resumed[0] > start:
        start = resumed[0]
    sent, bounced, complained = _counts(session, start)
    bounce_rate = bounced / sent if sent else 0.0
    complaint_rate = complained / sent if sent else 0.0
    counted = sent >= min_sends
    severity = _severity(bounce_rate, complaint_rate) if counted else None
    return ReputationFinding(
        severity,
        start,
        sent,
        bounced,
        complained,
        bounce_rate,
        complaint_rate,
        counted,
        email_sending_paused(session),
    )


def _counts(session: Session, start: datetime) -> tuple[int, int, int]:
    logs = DELIVERY_LOGS
    query = select(
        func.count(),
        func.coalesce(func.sum(case((logs.c.status == Status.bounced.value, 1), else_=0)), 0),
        func.coalesce(func.sum(case((logs.c.status == Status.complained.value, 1), else_=0)), 0),
    ).where(
        logs.c.channel == Channel.email.value,
        logs.c.sent_at >= start,
        logs.c.status.in_(SENT_OR_LATER),
    )
    sent, bounced, complained = session.execute(query).one()
    return int(sent), int(bounced), int(complained)


def _severity(bounce_rate: float, complaint_rate: float) -> str | None:
    if bounce_rate >= P1_BOUNCE or complaint_rate >= P1_COMPLAINT:
        return "P1"
    if bounce_rate >= P2_BOUNCE or complaint_rate >= P2_COMPLAINT:
        return "P2"
    return None


def guard(*, session: Session, finding: ReputationFinding, now: datetime) -> ReputationFinding:
    """At P1 pause email (once); returns the finding with the pause it left in place."""
    if finding.severity != "P1" or finding.paused:
        return finding
    reason = (
        f"email paused by the reputation guardrail at {now:%Y-%m-%d %H:%M} UTC: {finding.summary}"
    )
    set_mark(session, EMAIL_PAUSED, now, now=now, note=reason)
    return _with_pause(finding, reason)


def _with_pause(finding: ReputationFinding, reason: str) -> ReputationFinding:
    return replace(finding, paused=reason)


def resume_email(*, session: Session, now: datetime) -> str | None:
    """Lift the pause (an operator's decision); returns the reason it had, None if not paused."""
    reason = email_sending_paused(session)
    if reason is not None:
        set_mark(session, EMAIL_PAUSED, None, now=now, note="")
        set_mark(session, EMAIL_RESUMED, now, now=now, note=f"resumed after: {reason}")
    return reason


def reputation_metrics(finding: ReputationFinding, at: datetime) -> list[MetricPoint]:
    """EmailBounceRate and EmailComplaintRate (percent) for CloudWatch."""
    return [
        MetricPoint("EmailBounceRate", finding.bounce_rate * PERCENT, "Percent", at),
        MetricPoint("EmailComplaintRate", finding.complaint_rate * PERCENT, "Percent", at),
    ]
