"""The monitoring checks by name (a module of its own, so the CLI can name them cheaply)."""

from __future__ import annotations

from enum import StrEnum


class Check(StrEnum):
    sms_cost = "sms-cost"
    loops = "loops"
    failures = "failures"
    health = "health"


# health's facts that only the database tells: null in its JSON and "unknown" in its text and
# artifact when the database could not be read (a 0 there reads as an empty queue)
HEALTH_DATABASE_FACTS = (
    "backlog",
    "deferred",
    "oldest_pending_age_s",
    "sent_in_window",
    "avg_latency_s",
    "p95_latency_s",
    "stuck_claimed",
    "stuck_sending",
    "unknown",
    "lost_past_horizon",
    "unmatched_receipts",
    "index_problems",
    "email_paused",
    "email_paused_since",
)
