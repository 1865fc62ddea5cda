"""SMS opt-outs the deliverer finds: the number is suppressed, as a receipt's opt-out suppresses it.

SNS accepts a message to a number that replied STOP and drops it, so the deliverer asks first
(`is_opted_out`) and records the row `failed_permanent` / OptedOut. Without a record of the
opt-out every later SMS to that number would be stored, claimed, checked and failed again (each a
failure in `audit failures`). In the transaction that records the outcome, the number gets a
permanent SMS suppression (the reason names the row): the next sends skip its SMS at enqueue,
naming the suppression, and the next delivery run skips the ones already queued. An opt-out is
the recipient's choice, so it makes no email fallback (`notify.fallback.whole_number_mute`).
`notifyops suppressions list` shows it; after `aws sns opt-in-phone-number`, `recipients unmute`
lifts it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection

from notify.conditions import suppress_for_good
from notify.db import Channel

SEEN_AT_DELIVERY = "OptedOut (SNS said so before sending) delivery #"


def suppress_opted_out(conn: Connection, found: Iterable[tuple[str, int]], now: datetime) -> int:
    """Suppress each (phone, delivery row id) found opted out, unless a permanent SMS
    suppression of that number exists; returns how many were added. The caller commits."""
    wanted: dict[tuple[str, str], str] = {}
    for phone, row_id in found:
        if phone:
            wanted.setdefault((phone, Channel.sms.value), f"{SEEN_AT_DELIVERY}{row_id}")
    return suppress_for_good(conn, wanted, now)
