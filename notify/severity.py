"""Severity P1-P4: the runbook's escalation table as one pure function, `assess`.

The table (runbook "Escalation Procedures") and how its boundaries are read here:

| severity | condition (as measured)                                   | boundary          |
|----------|-----------------------------------------------------------|-------------------|
| P1       | a channel's failure rate > 50% ("all emails/SMS failing") | 50% exactly is P2 |
| P1       | SMS cost in the last hour > $100                          | $100 exactly: P3  |
| P1       | workers down > 10 minutes                                 | 10 min exactly: - |
| P1       | data loss or corruption                                   |                   |
| P2       | a channel's failure rate 10%-50%, both ends included      | 10% exactly is P2 |
| P2       | backlog > 5,000                                           | 5,000 exactly: P3 |
| P2       | average latency > 60 s                                    | 60 s exactly: P3  |
| P3       | a channel's failure rate > 0 and < 10%                    |                   |
| P3       | backlog > 1,000 and <= 5,000 (alarm: "> 1,000 pending")   | 1,000 exactly: P4 |
| P3       | average latency > 30 s and <= 60 s (alarm: "> 30s")       | 30 s exactly: P4  |
| P3       | SMS cost in the last hour > hourly alarm ($20), <= $100   | $20 exactly: P4   |
| P4       | otherwise                                                 |                   |

The failure-rate rows partition at 10%: the runbook says P2 is "10-50%" and P3 "< 10%", so 10%
itself is P2 (the CloudWatch alarm, "> 10%", fires just above it). Backlog, latency and cost follow
the alarms' strict ">" wording. Not in the table, mapped to the row they amount to: SES sending
disabled, the sender identity unverified, or the database unreachable mean every email (or every
notification) fails -> P1, and so does email paused by the reputation guardrail (`email-paused`,
runbook "Receipts": the deliverer sends no email until an operator resumes it); today's SMS spend at
the daily cap (NOTIFY_SMS_DAILY_CAP_USD) stops every SMS until the UTC day ends (email instead) ->
P2: to be answered within the hour, above SMS over the hourly alarm (P3) and below SMS over $100 in
one hour (P1); deliveries in `unknown` state, rows a stopped deliverer holds past their lease that
no delivery run has rescued yet (`stuck`; P1 data loss once held over an hour) and detected loops
need an operator but are no outage -> P3, and so is the SNS monthly spend limit unknown for an error
while SMS were spent this month (nothing compared the spend with it). Workers down for 10 minutes or
less escalate nothing by themselves; deployments on a work pool no worker has ever polled (no
heartbeat, so no down time to measure) run nowhere -> P1 (`workers-none`). Scheduled runs that
nothing has started for more than those 10 minutes (Late in the UI) are the same outage seen from
the runs' side -> P1 (`runs-late`): it is what tells when `notifyops serve`, which has no work pool
and so no worker heartbeat, stopped. SES answering none of health's calls (out of reach, refusing
our credentials, down) -> P2: sends through the SES API likely fail too, but no email is lost (rows
wait as pending_retry without an attempt counted, the SMTP failover may carry them), so it is
answered within the hour rather than paged; the backlog and latency findings escalate while the
email waits. SES leaving part of health's questions unknown for an error (a missing IAM permission,
a throttled call) -> P3, whether sending is enabled among them: a quota answered beside it does not
tell whether the account is paused. A call the endpoint does not offer (a stand-in for SES such as
moto, which answers the others) is listed in the report's `ses.not_offered`, not a finding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from notify.money import usd

if TYPE_CHECKING:
    from notify.settings import Settings


class Severity(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        """1 for P1 (most severe) to 4 for P4."""
        return int(self.value[1])


def worst(*severities: Severity) -> Severity:
    """The most severe of the given severities (P4 when none)."""
    return min(severities, key=lambda s: s.rank, default=Severity.P4)


@dataclass(frozen=True)
class Thresholds:
    """The runbook's numbers; `from_settings` takes the hourly SMS alarm and the daily SMS cap
    from settings."""

    failure_rate_page: float = 0.50
    failure_rate_high: float = 0.10
    sms_cost_page_usd: Decimal = Decimal("100")
    sms_cost_alarm_usd: Decimal = Decimal("20")
    sms_daily_cap_usd: Decimal = Decimal("100")
    # the cheapest SMS segment the settings price: once today's spend plus it passes the cap,
    # the send policy refuses every SMS
    sms_cheapest_usd: Decimal = Decimal("0.00645")
    workers_down_page_minutes: float = 10.0
    backlog_high: int = 5_000
    backlog_alarm: int = 1_000
    latency_high_s: float = 60.0
    latency_alarm_s: float = 30.0
    sms_spend_limit_warn: float = 0.80  # share of the SNS monthly limit spent: P2 from here

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            sms_cost_alarm_usd=Decimal(settings.sms_hourly_alarm_usd),
            sms_daily_cap_usd=Decimal(settings.sms_daily_cap_usd),
            sms_cheapest_usd=cheapest_sms_usd(settings),
        )


def cheapest_sms_usd(settings: Settings) -> Decimal:
    return Decimal(min([settings.sms_price_usd, *settings.sms_prices.values()]))


RUNBOOK = Thresholds()


@dataclass(frozen=True)
class Facts:
    """What a check measured; None means not measured (contributes nothing)."""

    email_failure_rate: float | None = None
    sms_failure_rate: float | None = None
    sms_cost_last_hour_usd: Decimal | None = None
    sms_cost_today_usd: Decimal | None = None  # the UTC day's SMS spend so far
    sms_cost_month_usd: Decimal | None = None  # the UTC calendar month's SMS spend so far
    sms_spend_limit_usd: Decimal | None = None  # the SNS account's MonthlySpendLimit
    sms_spend_limit_error: str | None = None  # why SNS did not answer it
    workers_down_minutes: float | None = None
    unpolled_deployments: int = 0  # deployments on a work pool no worker has ever polled
    late_runs: int = 0  # scheduled runs of the deployments that nothing has started
    late_runs_minutes: float | None = None  # how long the oldest of them has waited
    backlog: int | None = None
    avg_latency_s: float | None = None
    data_loss: bool = False
    database_unreachable: bool = False
    database_error: str | None = None  # why, when unreachable (one line)
    email_sending_disabled: bool = False
    email_paused: str | None = None  # why the reputation guardrail paused email, when it did
    email_paused_since: datetime | None = None
    sender_unverified: bool = False
    ses_unanswered: tuple[str, ...] = ()  # what SES's errors left unknown to the health check
    ses_silent: bool = False  # SES answered none of the health check's calls
    ses_error: str | None = None  # the last of those errors (the one its fallbacks ended on)
    ses_errors: tuple[str, ...] = ()  # every one of them, "ses.Call: error" each
    unknown_deliveries: int = 0
    stuck_rows: int = 0  # claimed or sending past their lease: a dead deliverer, not rescued yet
    loops: int = 0
    index_problems: int = 0


@dataclass(frozen=True)
class Finding:
    """One condition that escalates: `code` is stable (alert keys are built from it)."""

    code: str
    severity: Severity
    message: str


@dataclass(frozen=True)
class Assessment:
    severity: Severity
    findings: tuple[Finding, ...]


def assess(facts: Facts, thresholds: Thresholds = RUNBOOK) -> Assessment:
    """The severity of the measured facts per the runbook's escalation table, with the reasons."""
    findings = tuple(finding for rule in _RULES if (finding := rule(facts, thresholds)) is not None)
    ordered = tuple(sorted(findings, key=lambda f: f.severity.rank))
    return Assessment(worst(*(f.severity for f in ordered)), ordered)


def _rate_finding(channel: str, rate: float | None, t: Thresholds) -> Finding | None:
    if rate is None or rate <= 0:
        return None
    text = f"{channel} failure rate {rate:.1%}"
    code = f"{channel}-failure-rate"
    if rate > t.failure_rate_page:
        return Finding(code, Severity.P1, f"{text} > {t.failure_rate_page:.0%}")
    if rate >= t.failure_rate_high:
        return Finding(code, Severity.P2, f"{text} (P2 band {t.failure_rate_high:.0%}-50%)")
    return Finding(code, Severity.P3, f"{text} < {t.failure_rate_high:.0%} (minor failures)")


def _email_rate(facts: Facts, t: Thresholds) -> Finding | None:
    return _rate_finding("email", facts.email_failure_rate, t)


def _sms_rate(facts: Facts, t: Thresholds) -> Finding | None:
    return _rate_finding("sms", facts.sms_failure_rate, t)


def _sms_cost(facts: Facts, t: Thresholds) -> Finding | None:
    cost = facts.sms_cost_last_hour_usd
    if cost is None or cost <= t.sms_cost_alarm_usd:
        return None
    text = f"SMS cost {usd(cost)} in the last hour"
    if cost > t.sms_cost_page_usd:
        return Finding("sms-cost", Severity.P1, f"{text} > {usd(t.sms_cost_page_usd)}/h")
    return Finding("sms-cost", Severity.P3, f"{text} > alarm {usd(t.sms_cost_alarm_usd)}/h")


def sms_cap_reached(today_usd: Decimal, cap_usd: Decimal, cheapest_usd: Decimal) -> bool:
    """Today's SMS spend has reached the daily cap: the send policy refuses an SMS whose cost
    would take the spend past the cap, so once not even the cheapest fits, every SMS is skipped
    (spend stops just below the cap, never on it). No spend today is not a reached cap."""
    return today_usd > 0 and today_usd + cheapest_usd > cap_usd


def _sms_daily_cap(facts: Facts, t: Thresholds) -> Finding | None:
    today = facts.sms_cost_today_usd
    if today is None or not sms_cap_reached(today, t.sms_daily_cap_usd, t.sms_cheapest_usd):
        return None
    message = (
        f"daily SMS cap reached: {usd(today)} of {usd(t.sms_daily_cap_usd)} spent today; until "
        "00:00 UTC SMS are skipped (email instead where the recipient takes it)"
    )
    return Finding("sms-daily-cap", Severity.P2, message)


def sms_spend_limit_reached(month_usd: Decimal, limit_usd: Decimal) -> bool:
    """The month's SMS spend has reached the SNS account's MonthlySpendLimit: SNS stops sending
    SMS. No spend this month is not a reached limit (a limit of 0 included)."""
    return month_usd > 0 and month_usd >= limit_usd


def _sms_spend_limit(facts: Facts, t: Thresholds) -> Finding | None:
    """The month's SMS spend against the SNS account's MonthlySpendLimit: past it SNS stops
    sending SMS while `publish` still answers OK (P1); from `sms_spend_limit_warn` of it, P2."""
    month, limit = facts.sms_cost_month_usd, facts.sms_spend_limit_usd
    if month is None or month <= 0:
        return None
    spent = f"{usd(month)} of SMS spent this month (estimated)"
    if limit is None and facts.sms_spend_limit_error:
        message = (
            f"SNS monthly SMS spend limit unknown ({facts.sms_spend_limit_error}): {spent}, not "
            "compared with it (once reached, SNS stops sending SMS while publish still answers "
            "OK); allow sns:GetSMSAttributes to this host's AWS identity, check its endpoint and "
            "network, or read the limit in SNS > Text messaging (SMS)"
        )
        return Finding("sms-spend-limit", Severity.P3, message)
    if limit is None:
        return None
    where = "raise it in SNS > Text messaging (SMS) > Account spend limit"
    if sms_spend_limit_reached(month, limit):
        message = (
            f"SNS monthly SMS spend limit {usd(limit)} reached: {spent}; SNS stops sending SMS "
            f"while publish still answers OK (rows say sent, nothing arrives): {where}"
        )
        return Finding("sms-spend-limit", Severity.P1, message)
    if month >= limit * Decimal(str(t.sms_spend_limit_warn)):
        message = (
            f"{spent}, {month / limit:.0%} of the SNS monthly spend limit {usd(limit)}: {where}"
        )
        return Finding("sms-spend-limit", Severity.P2, message)
    return None


def _workers(facts: Facts, t: Thresholds) -> Finding | None:
    minutes = facts.workers_down_minutes
    if minutes is None or minutes <= t.workers_down_page_minutes:
        return None
    message = f"workers down for {minutes:.0f} min > {t.workers_down_page_minutes:.0f} min"
    return Finding("workers-down", Severity.P1, message)


def _workers_none(facts: Facts, _t: Thresholds) -> Finding | None:
    """Deployments on a work pool that no worker has ever polled (Prefect shows it NOT_READY):
    they run nowhere, for how long nothing tells (no heartbeat to count from), so runbook
    section 3's P1 without the 10 minutes' grace."""
    if facts.unpolled_deployments <= 0:
        return None
    message = (
        f"no worker polls the `notifyops` work pool (NOT_READY): its "
        f"{facts.unpolled_deployments} deployment(s) run nowhere; fix: `prefect worker start "
        "--pool notifyops` on each worker machine (runbook section 3)"
    )
    return Finding("workers-none", Severity.P1, message)


def _late_runs(facts: Facts, t: Thresholds) -> Finding | None:
    """Nothing has started the scheduled runs for longer than workers may be down: `notifyops
    serve` stopped (it has no work pool, so no worker heartbeat tells), or the pool's workers
    gone (then `workers-down` says so already)."""
    minutes = facts.late_runs_minutes
    if minutes is None or minutes <= t.workers_down_page_minutes:
        return None
    if _workers(facts, t) or _workers_none(facts, t):
        return None
    message = (
        f"{facts.late_runs} scheduled run(s) late, the oldest for {minutes:.0f} min > "
        f"{t.workers_down_page_minutes:.0f} min: nothing runs the deployments (start "
        "`notifyops serve`, or a worker for the `notifyops` pool)"
    )
    return Finding("runs-late", Severity.P1, message)


def _backlog(facts: Facts, t: Thresholds) -> Finding | None:
    backlog = facts.backlog
    if backlog is None or backlog <= t.backlog_alarm:
        return None
    if backlog > t.backlog_high:
        return Finding("backlog", Severity.P2, f"backlog {backlog:,} > {t.backlog_high:,}")
    return Finding("backlog", Severity.P3, f"backlog {backlog:,} > {t.backlog_alarm:,}")


def _latency(facts: Facts, t: Thresholds) -> Finding | None:
    latency = facts.avg_latency_s
    if latency is None or latency <= t.latency_alarm_s:
        return None
    text = f"average delivery latency {latency:.1f} s"
    if latency > t.latency_high_s:
        return Finding("latency", Severity.P2, f"{text} > {t.latency_high_s:.0f} s")
    return Finding("latency", Severity.P3, f"{text} > {t.latency_alarm_s:.0f} s")


def _data_loss(facts: Facts, _t: Thresholds) -> Finding | None:
    if not facts.data_loss:
        return None
    return Finding(
        "data-loss",
        Severity.P1,
        "data loss: rows held by a dead deliverer for over an hour with nobody rescuing them, "
        "or provider receipts of our messages matching no delivery row (see health's "
        "lost_past_horizon and unmatched_receipts); fix: `notifyops deliver` rescues the held "
        "rows (claimed back to the queue, in-flight ones `unknown`: check the provider's logs, "
        "then `notifyops decide-unknown` or redrive), and a deliverer must run (runbook section "
        "3); a receipt with no row, once looked into (another installation on the account, a "
        "restored backup), is closed by `notifyops receipts acknowledge`",
    )


def _indexes(facts: Facts, _t: Thresholds) -> Finding | None:
    if facts.index_problems <= 0:
        return None
    return Finding(
        "indexes",
        Severity.P3,
        f"{facts.index_problems} declared index(es) missing or invalid: queries slow down "
        "(health's index_problems gives each one's fix: the CREATE INDEX statement of a "
        "missing one, REINDEX for an invalid one)",
    )


def _database(facts: Facts, _t: Thresholds) -> Finding | None:
    if not facts.database_unreachable:
        return None
    error = f" ({facts.database_error})" if facts.database_error else ""
    message = (
        f"database unreachable{error}: every notification fails; fix: start the database "
        "server, or point NOTIFY_DATABASE_URL at one this host can reach"
    )
    return Finding("database", Severity.P1, message)


def _ses_sending(facts: Facts, _t: Thresholds) -> Finding | None:
    if not facts.email_sending_disabled:
        return None
    return Finding("ses-sending", Severity.P1, "SES sending disabled: every email fails")


def _email_paused(facts: Facts, _t: Thresholds) -> Finding | None:
    """The reputation guardrail paused email (runbook "Receipts": P1): the deliverer sends no
    email until an operator resumes it, whatever SES says of the account."""
    if facts.email_paused is None:
        return None
    reason, since = facts.email_paused, facts.email_paused_since
    when = f"{since:%Y-%m-%d %H:%M} UTC" if since else ""
    said = reason if when in reason else f"{reason} (since {when})"  # the guardrail says when
    message = (
        f"{said}; no email goes out, every email row waits as pending (SMS still go); fix: find "
        'the bounce or complaint source (runbook "Receipts"), then `notifyops receipts '
        "resume-email`"
    )
    return Finding("email-paused", Severity.P1, message)


def _ses_sender(facts: Facts, _t: Thresholds) -> Finding | None:
    if not facts.sender_unverified:
        return None
    return Finding("ses-sender", Severity.P1, "SES sender not verified: every email fails")


def _ses_errors(facts: Facts, _t: Thresholds) -> Finding | None:
    if not facts.ses_unanswered:
        return None
    error = f" ({facts.ses_error})" if facts.ses_error else ""
    if facts.ses_silent:
        message = (
            f"SES does not answer{error}: email through the SES API likely fails too (missing or "
            "refused credentials stop email, its rows waiting, until fixed; an SES out of reach "
            "leaves them pending_retry or goes through the SMTP failover); check the AWS "
            "credentials, region and network of this host and the AWS Health Dashboard"
        )
        return Finding("ses-errors", Severity.P2, message)
    errors = "; ".join(facts.ses_errors) or facts.ses_error
    said = f" ({errors})" if errors else ""
    unseen = (
        ": a paused account would go unreported"
        if {"account state", "sending state"} & set(facts.ses_unanswered)
        else ""
    )
    message = (
        f"SES left the {' and '.join(facts.ses_unanswered)} unknown{said}{unseen}; fix: on "
        f"AccessDenied grant {_permissions(facts.ses_errors)}; for another error check this "
        "host's AWS endpoint, region and network"
    )
    return Finding("ses-errors", Severity.P3, message)


def _permissions(errors: tuple[str, ...]) -> str:
    """The IAM actions of the failed calls (`sesv2.GetAccount: …` -> ses:GetAccount): SES v1
    and v2 both authorise as `ses:`."""
    calls = dict.fromkeys(e.split(":", 1)[0].rpartition(".")[2] for e in errors)
    return " / ".join(f"ses:{call}" for call in calls if call) or "the SES read permissions"


def _unknown(facts: Facts, _t: Thresholds) -> Finding | None:
    if facts.unknown_deliveries <= 0:
        return None
    message = (
        f"{facts.unknown_deliveries:,} deliveries in unknown state: check the provider's logs, "
        "then `notifyops decide-unknown --as sent` (or `--as not-sent`) records the decision"
    )
    return Finding("unknown", Severity.P3, message)


def _stuck(facts: Facts, _t: Thresholds) -> Finding | None:
    if facts.stuck_rows <= 0:
        return None
    return Finding(
        "stuck",
        Severity.P3,
        f"{facts.stuck_rows:,} row(s) held past their lease by a deliverer that stopped (killed "
        "mid-batch, or its machine died) and no delivery run has rescued them since; fix: "
        "`notifyops deliver` (its rescue puts claimed rows back in the queue and makes in-flight "
        "ones `unknown`), and check that deliver-pending runs (runbook section 3); held over an "
        "hour, they are data loss (P1)",
    )


def _loops(facts: Facts, _t: Thresholds) -> Finding | None:
    if facts.loops <= 0:
        return None
    return Finding("loops", Severity.P3, f"{facts.loops} notification loop(s) detected")


_RULES: tuple[Callable[[Facts, Thresholds], Finding | None], ...] = (
    _data_loss,
    _database,
    _indexes,
    _ses_sending,
    _email_paused,
    _ses_sender,
    _ses_errors,
    _email_rate,
    _sms_rate,
    _sms_cost,
    _sms_daily_cap,
    _sms_spend_limit,
    _workers,
    _workers_none,
    _late_runs,
    _backlog,
    _latency,
    _unknown,
    _stuck,
    _loops,
)
