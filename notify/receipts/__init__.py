"""Provider receipts: SES events (SNS -> SQS) and SNS SMS delivery logs (CloudWatch Logs)
reconciled into the delivery log; suppressions, real SMS cost, crash rows, reputation.

Modules: events (the parsed value), parse, store (keep once, apply forward-only), queue (SQS),
smslogs (CloudWatch Logs), crash (unknown rows), reputation (the guardrail), counts (what the
audits read), setup (AWS resources as code), poll (one poll of everything).
"""

from notify.receipts.counts import (
    DailySmsCost,
    ReceiptCounts,
    ReceiptHealth,
    daily_sms_cost,
    receipt_counts,
)
from notify.receipts.events import MalformedReceipt, ReceiptEvent, Source, State
from notify.receipts.poll import ReceiptsNotSetUp, ReceiptSources, ReceiptsReport, poll_receipts
from notify.receipts.reputation import (
    ReputationFinding,
    email_sending_paused,
    reputation,
    resume_email,
)
from notify.receipts.setup import SetupResult, setup_receipts
from notify.receipts.store import ApplyReport, apply_stored, store_receipts

__all__ = [
    "ApplyReport",
    "DailySmsCost",
    "MalformedReceipt",
    "ReceiptCounts",
    "ReceiptEvent",
    "ReceiptHealth",
    "ReceiptSources",
    "ReceiptsNotSetUp",
    "ReceiptsReport",
    "ReputationFinding",
    "SetupResult",
    "Source",
    "State",
    "apply_stored",
    "daily_sms_cost",
    "email_sending_paused",
    "poll_receipts",
    "receipt_counts",
    "reputation",
    "resume_email",
    "setup_receipts",
    "store_receipts",
]
