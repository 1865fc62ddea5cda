"""One receipts poll: the SES events queue, the SMS delivery logs, crash rows, the guardrail.

`poll_receipts` takes every collaborator as an argument (the Prefect task and the CLI take them
from notify.bootstrap; tests hand in moto clients and a fixed clock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine

from notify.db import transaction
from notify.errors import NotifyError
from notify.fallback import FallbackPolicy
from notify.receipts.crash import CrashReport, resolve_crash_rows
from notify.receipts.queue import poll_queue
from notify.receipts.reputation import ReputationFinding, guard, reputation
from notify.receipts.setup import SetupResult, setup_receipts
from notify.receipts.smslogs import SmsLogReport, read_sms_logs, sms_log_groups
from notify.receipts.store import ApplyReport, apply_stored
from notify.recheck import Rechecked, skip_muted
from notify.settings import Settings

if TYPE_CHECKING:
    from notify.bootstrap import Runtime

Clock = Callable[[], datetime]


class ReceiptsNotSetUp(NotifyError):
    """The receipts queue does not exist."""


class ReceiptsUnavailable(NotifyError):
    """AWS did not answer the receipts' first call (credentials, permissions, region, network):
    one line with the cause and its fix, where a poll failed with the bare botocore error."""


@dataclass(frozen=True)
class ReceiptSources:
    """The AWS clients a poll reads from (`logs`/`account_id` None: skip the SMS logs)."""

    sqs: Any
    logs: Any | None = None
    account_id: str | None = None


@dataclass
class ReceiptsReport:
    email: ApplyReport = field(default_factory=ApplyReport)
    sms: SmsLogReport = field(default_factory=SmsLogReport)
    crash: CrashReport = field(default_factory=CrashReport)
    reputation: ReputationFinding | None = None
    # queued rows the poll's new suppressions stopped (and the email fallbacks of muted SMS)
    queued: Rechecked = field(default_factory=Rechecked)

    @property
    def totals(self) -> ApplyReport:
        both = ApplyReport()
        both.add(self.email)
        both.add(self.sms.report)
        return both


def poll_receipts(
    *,
    engine: Engine,
    sources: ReceiptSources,
    settings: Settings,
    clock: Clock,
    fallback: FallbackPolicy,
) -> ReceiptsReport:
    """`fallback`: which templates let a muted SMS fall back to email (the queued rows a new
    suppression stops are skipped as `recipients mute` skips them)."""
    report = ReceiptsReport()
    report.email = poll_queue(
        sqs=sources.sqs,
        queue_url=queue_url(sources.sqs, settings.receipts_resources()),
        engine=engine,
        clock=clock,
        max_messages=settings.receipts_max_messages,
        wait_s=settings.receipts_wait_s,
    )
    if sources.logs is not None and sources.account_id:
        report.sms = read_sms_logs(
            logs=sources.logs,
            engine=engine,
            groups=sms_log_groups(settings.aws_region, sources.account_id),
            now=clock(),
            overlap=timedelta(minutes=settings.receipts_log_overlap_minutes),
            lookback=timedelta(hours=settings.receipts_log_lookback_hours),
        )
    report.crash, retried, report.reputation = settle(engine=engine, settings=settings, now=clock())
    report.email.add(retried)
    # every poll, not only one that suppressed something: a poll that died after committing a
    # suppression (a kill, Ctrl-C, a lost connection, an SQS error on its next receive) left
    # the rows queued to that address for a delivery run under way, and its receipts come back
    # as duplicates that suppress nothing new
    report.queued = skip_stopped(engine=engine, fallback=fallback, now=clock())
    return report


def skip_stopped(*, engine: Engine, fallback: FallbackPolicy, now: datetime) -> Rechecked:
    """The rows still queued (pending or waiting for a retry, due or not) to an address a
    suppression in force stops (a bounce, a complaint or an opt-out this poll or an earlier one
    stored) are skipped now, naming the suppression, not when the next delivery run rechecks its
    due rows; a delivery run under way claims none of them after this commits (the rows it
    already holds in `sending` go). Muted SMS of a whole-number suppression get their email
    fallback, as with `recipients mute`. Run by every poll: one UPDATE per channel over the
    waiting rows, which finds nothing when nothing new was suppressed."""
    with transaction(engine) as session:
        return skip_muted(session.connection(), now=now, fallback=fallback)


def settle(
    *, engine: Engine, settings: Settings, now: datetime
) -> tuple[CrashReport, ApplyReport, ReputationFinding]:
    """After the new receipts are in: retry the receipts that had no row yet (a row that was in
    flight may be `unknown` now, and its receipt resolves it before anything puts it back in the
    queue), resolve crash rows, apply what a crash row adopted, then the reputation guardrail."""
    horizon = timedelta(minutes=settings.receipts_unknown_horizon_minutes)
    with transaction(engine) as session:
        retried = apply_stored(session=session, now=now)
    with transaction(engine) as session:
        crash = resolve_crash_rows(session=session, now=now, horizon=horizon)
    if crash.matched_sms:  # their log lines went back to pending: applied now, not next poll
        with transaction(engine) as session:
            retried.add(apply_stored(session=session, now=now))
    with transaction(engine) as session:
        finding = reputation(
            session=session,
            now=now,
            window=timedelta(days=settings.reputation_window_days),
            min_sends=settings.reputation_min_sends,
        )
        finding = guard(session=session, finding=finding, now=now)
    return crash, retried, finding


def queue_url(sqs: Any, name: str) -> str:
    from notify.errors import classify_exception, provider_text
    from notify.senders.base import PROVIDER_EXCEPTIONS

    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            raise ReceiptsNotSetUp(
                f"receipts not set up (no SQS queue {name!r}): run `notifyops receipts setup`"
            ) from None
        failure: BaseException = error
    except PROVIDER_EXCEPTIONS as error:
        failure = error
    failed = classify_exception(failure, written=False)
    raise ReceiptsUnavailable(
        f"receipts: SQS GetQueueUrl failed ({failed.code}: {provider_text(failed.message, 120)}); "
        f"nothing was read; fix: {failed.fix}"
    ) from failure


def sources_from(runtime: Runtime) -> ReceiptSources:
    """The runtime's SQS, CloudWatch Logs and the account id (the SMS log groups name it)."""
    sqs = runtime.aws_client("sqs", retries=True)
    logs = runtime.aws_client("logs", retries=True)
    try:
        account = str(runtime.aws_client("sts", retries=True).get_caller_identity()["Account"])
    except (ClientError, BotoCoreError):
        return ReceiptSources(sqs=sqs)
    return ReceiptSources(sqs=sqs, logs=logs, account_id=account)


def setup_from(runtime: Runtime) -> SetupResult:
    """`notifyops receipts setup` with the runtime's clients and settings."""
    settings = runtime.settings
    return setup_receipts(
        ses=runtime.aws_client("ses", retries=True),
        sns=runtime.aws_client("sns", retries=True),
        sqs=runtime.aws_client("sqs", retries=True),
        name=settings.receipts_resources(),
        sms_role_arn=settings.sms_delivery_log_role_arn,
        sends_use=settings.ses_configuration_set,
    )


def report_json(report: ReceiptsReport) -> dict[str, Any]:
    """The `notifyops receipts --json` payload (stable keys; ids and statuses, no addresses)."""
    totals = report.totals
    crash = report.crash
    finding = report.reputation
    return {
        "received": dict(totals.received),
        "applied": dict(totals.applied),
        "duplicates": totals.duplicates,
        "unmatched": totals.unmatched,
        "malformed": totals.malformed,
        "changed": totals.changed,
        "suppressed": totals.suppressed,
        "queued_skipped": report.queued.muted,
        "fallbacks": report.queued.fallbacks,
        "sms_logs": {
            "lines": report.sms.lines,
            "calls": report.sms.calls,
            "missing_groups": report.sms.missing_groups,
            "read_since": report.sms.read_since.isoformat() if report.sms.read_since else None,
            "began": report.sms.began,
        },
        "crash_rows": {
            "requeued_email": crash.requeued_email,
            "matched_sms": crash.matched_sms,
            "ambiguous_sms": crash.ambiguous_sms,
            "ambiguous_rows": list(crash.ambiguous_rows),
            "undelivered_sms": crash.undelivered_sms,
            "send_watermark": crash.watermark.isoformat() if crash.watermark else None,
        },
        "reputation": None if finding is None else _finding_json(finding),
        "changes": [asdict(change) for change in totals.changes],
    }


def logs_began_said(since: datetime) -> str:
    """Said once, by the poll that first read the SMS delivery logs."""
    return (
        f"SMS delivery logs read from {since:%Y-%m-%d %H:%M} UTC on: an SMS sent before then has "
        "no receipt to wait for and stays sent (not undelivered after 72 h)"
    )


def _finding_json(finding: ReputationFinding) -> dict[str, Any]:
    return {
        "severity": finding.severity,
        "window_start": finding.window_start.isoformat(),
        "sent": finding.sent,
        "bounced": finding.bounced,
        "complained": finding.complained,
        "bounce_rate": round(finding.bounce_rate, 6),
        "complaint_rate": round(finding.complaint_rate, 6),
        "counted": finding.counted,
        "email_paused": finding.paused,
    }
