"""Audits: the runbook's investigation steps as functions over the delivery log -> typed reports.

Each audit is `(*, session, as_of, window, settings) -> Report` over the half-open window
(as_of - window, as_of] in UTC; aggregation happens in SQL (SQLite and PostgreSQL alike), over
hourly rollups for the window's whole hours plus a live read of the rest (notify/audits/rollups.py:
each audit first folds new rows when due; `rollups=FULL_SCAN` reads every row instead and gives
the same report). Reports are frozen pydantic models; `report.to_json()` is the `--json` payload
(money as decimal strings exact to the cent, times ISO 8601 UTC, phone numbers and addresses only
masked).
"""

from notify.audits.common import Report, Window, resolve_window
from notify.audits.failures import FailureGroup, FailureReport, failure_summary
from notify.audits.health import HealthReport, WorkerState, health, health_without_database
from notify.audits.loops import Loop, LoopReport, MutedLoop, loop_detection, mute_loops
from notify.audits.ses_account import SesAccountState, check_ses_account
from notify.audits.sms_cost import HourlySms, RecipientSpend, SmsCostReport, sms_cost_audit
from notify.error_messages import kind_for, normalise_error_message

__all__ = [
    "FailureGroup",
    "FailureReport",
    "HealthReport",
    "HourlySms",
    "Loop",
    "LoopReport",
    "MutedLoop",
    "RecipientSpend",
    "Report",
    "SesAccountState",
    "SmsCostReport",
    "Window",
    "WorkerState",
    "check_ses_account",
    "failure_summary",
    "health",
    "health_without_database",
    "kind_for",
    "loop_detection",
    "mute_loops",
    "normalise_error_message",
    "resolve_window",
    "sms_cost_audit",
]
