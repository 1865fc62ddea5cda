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

from sqlalchemy import Connection, insert, select

from notify.db import SUPPRESSIONS, Channel

SEEN_AT_DELIVERY = "OptedOut (SNS said so before sending) delivery #"


def suppress_opted_out(conn: Connection, found: Iterable[tuple[str, int]], now: datetime) -> int:
    """Suppress each (phone, delivery row id) found opted out, unless a permanent SMS
    suppression of that number exists; returns how many were added. The caller commits."""
    wanted: dict[str, int] = {}
    for phone, row_id in found:
        if phone:
            wanted.setdefault(phone, row_id)
    if not wanted:
        return 0
    x = SUPPRESSIONS
    existing = set(
        conn.scalars(
            select(x.c.address).where(
                x.c.address.in_(sorted(wanted)),
                x.c.channel == Channel.sms.value,
                x.c.title.is_(None),
                x.c.until.is_(None),
            )
        )
    )
    new = [
        {
            "address": phone,
            "channel": Channel.sms.value,
            "title": None,
            "reason": f"{SEEN_AT_DELIVERY}{row_id}",
            "until": None,
            "created_at": now,
        }
        for phone, row_id in wanted.items()
        if phone not in existing
    ]
    if new:
        conn.execute(insert(x), new)
    return len(new)
