"""One receipts poll: the SES events queue, the SMS delivery logs, crash rows, the guardrail.

`poll_receipts` takes every collaborator as an argument (the Prefect task and the CLI take them
from notify.bootstrap; tests hand in moto clients and a fixed clock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import Engine

from notify.db import transaction
from notify.errors import NotifyError
from notify.receipts.crash import CrashReport, resolve_crash_rows
from notify.receipts.queue import poll_queue
from notify.receipts.reputation import ReputationFinding, guard, reputation
from notify.receipts.smslogs import SmsLogReport, read_sms_logs, sms_log_groups
from notify.receipts.store import ApplyReport
from notify.settings import Settings

Clock = Callable[[], datetime]


class ReceiptsNotSetUp(NotifyError):
    """The receipts queue does not exist."""


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

    @property
    def totals(self) -> ApplyReport:
        both = ApplyReport()
        both.add(self.email)
        both.add(self.sms.report)
        return both


def poll_receipts(
    *, engine: Engine, sources: ReceiptSources, settings: Settings, clock: Clock
) -> ReceiptsReport:
    report = ReceiptsReport()
    report.email = poll_queue(
        sqs=sources.sqs,
        queue_url=queue_url(sources.sqs, settings.receipts_name),
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
    report.crash, report.reputation = settle(engine=engine, settings=settings, now=clock())
    return report


def settle(
    *, engine: Engine, settings: Settings, now: datetime
) -> tuple[CrashReport, ReputationFinding]:
    """After the receipts are in: resolve crash rows, then the reputation guardrail."""
    horizon = timedelta(minutes=settings.receipts_unknown_horizon_minutes)
    with transaction(engine) as session:
        crash = resolve_crash_rows(session=session, now=now, horizon=horizon)
    with transaction(engine) as session:
        finding = reputation(
            session=session,
            now=now,
            window=timedelta(days=settings.reputation_window_days),
            min_sends=settings.reputation_min_sends,
        )
        finding = guard(session=session, finding=finding, now=now)
    return crash, finding


def queue_url(sqs: Any, name: str) -> str:
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            raise ReceiptsNotSetUp(
                f"no SQS queue {name!r} for receipts: run `notifyops receipts setup`"
            ) from None
        raise
