"""Fallbacks: an SMS that cannot go becomes an email; email's SES API failover, as recorded.

SMS -> email. An SMS row that ends `failed_permanent` for a reason other than an opt-out (the
deliverer calls `after_outcomes` in the same transaction as the outcome), or that enqueue skipped
because the number is suppressed by a whole-number mute (`suppressed_sms_fallbacks`, in the
enqueue's transaction; or, queued before the mute, that notify.recheck skipped), gets a new email
row: `pending`, due now, `replaces_id` = the SMS row's
id, decision `email: fallback for sms #<id> (<why>)`; the SMS row's decision gains `; email
fallback #<new id>`. The email's content is the notification's (title, message, html), rendered
at enqueue like every email. A fallback is made only when all of these hold:

- the template allows it (meta.json `fallback_email`, default true);
- the recipient has an email address with no active email suppression (for the title);
- the notification has no email row that was or will be sent: its email row was skipped because
  email is off in the recipient's preferences or there was no address then (the fallback sends
  the message the SMS could not, to the address on file). A pending, sent, failed or unknown email
  row, or one skipped for a suppression or the loop guard, means no fallback: nothing is ever sent
  on both paths, and an email refusal is never overridden;
- no fallback exists for that SMS row yet (a unique index on `replaces_id` holds it too), so a
  redriven SMS that fails again, or a second delivery run, makes no second one.

Email failover (notify.senders.failover): a message sent through SES SMTP while the API is down
says so in its decision (`route_note`); `MarkMemory` keeps the failover's clock in
`receipt_marks`, so it survives from one delivery run (process) to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from notify.conditions import suppression_active, suppression_stops
from notify.db import (
    DELIVERY_LOGS,
    NOTIFICATIONS,
    RECIPIENTS,
    SUPPRESSIONS,
    Channel,
    Status,
    SuppressionSource,
    transaction,
    utcnow,
)
from notify.errors import OPTED_OUT, InputError
from notify.marks import read_mark, set_mark
from notify.opt_outs import suppress_opted_out
from notify.senders.failover import ROUTE_SMTP, FailoverMarks

if TYPE_CHECKING:
    from notify.outbox import ClaimedRow, Outcome
    from notify.rendering import TemplateCatalog

DECISION_MAX_CHARS = 300
# Email rows skipped for these reasons may be replaced by a fallback (the recipient has an
# address now); any other email row (sent or to be sent, suppressed, loop guard) rules it out.
REPLACEABLE_EMAIL_SKIPS = ("email: off in preferences", "email: no email address")
SMS_SUPPRESSED = "sms: phone number suppressed"
FAILING_SINCE_MARK = "email_api_failing_since"
SMTP_SINCE_MARK = "email_via_smtp_since"
LAST_REFUSAL_MARK = "email_api_last_refusal"
SMTP_NOTE = "sent through SES SMTP (SES API failover)"


@dataclass(frozen=True)
class FallbackPolicy:
    """Which templates never let an SMS fall back to email (meta.json `"fallback_email": false`)."""

    blocked_templates: frozenset[str] = frozenset()

    @classmethod
    def of(cls, catalog: TemplateCatalog) -> FallbackPolicy:
        blocked = set()
        for name in catalog.names():
            try:
                allowed = catalog.fallback_email(name)
            except InputError:  # a broken template sends nothing, so has nothing to fall back
                continue
            if not allowed:
                blocked.add(name)
        return cls(frozenset(blocked))


def route_note(route: str | None) -> str | None:
    """What a sent row's decision gains when a failover sent it another way."""
    return SMTP_NOTE if route == ROUTE_SMTP else None


# --- in the deliverer's group commit -----------------------------------------------------------


def after_outcomes(
    conn: Connection,
    *,
    owner: str,
    done: Sequence[tuple[ClaimedRow, Outcome]],
    policy: FallbackPolicy | None,
    now: datetime,
) -> None:
    """In the transaction that records `done`: the failover's notes on the rows it sent, a
    suppression of each number found opted out (notify.opt_outs), and an email fallback for each
    SMS that failed for good (not an opt-out)."""
    notes = [(o.id, o.note) for _, o in done if o.note]
    if notes:
        _append_decisions(conn, notes, owner=owner)
    opted_out = [
        (row.recipient_phone or "", row.id)
        for row, outcome in done
        if row.channel == Channel.sms.value and outcome.error_code == OPTED_OUT.code
    ]
    if opted_out:
        suppress_opted_out(conn, opted_out, now)
    if policy is None:
        return
    failed = {
        row.id: f"sms failed permanently: {outcome.error_code}"
        for row, outcome in done
        if row.channel == Channel.sms.value
        and outcome.status == Status.failed_permanent
        and outcome.error_code != OPTED_OUT.code
    }
    if failed:
        make_fallbacks(conn, failed, status=Status.failed_permanent, policy=policy, now=now)


def _append_decisions(conn: Connection, notes: Sequence[tuple[int, str]], *, owner: str) -> None:
    logs = DELIVERY_LOGS
    statement = (
        update(logs)
        .where(logs.c.id == bindparam("b_id"), logs.c.lease_owner == owner)
        .values(decision=func.substr(logs.c.decision.concat(bindparam("b_note")), 1, 300))
    )
    conn.execute(statement, [{"b_id": i, "b_note": f"; {note}"} for i, note in notes])


# --- at enqueue --------------------------------------------------------------------------------


def suppressed_sms_fallbacks(
    conn: Connection, *, request_id: str, template_allows: bool, now: datetime
) -> int:
    """Email fallbacks for the request's SMS rows skipped because the number is muted as a whole
    (an operator's mute; not a loop mute, which names a title, nor an opt-out from a receipt).
    Returns how many email rows were added."""
    if not template_allows:
        return 0
    x, r, n, s = SUPPRESSIONS, RECIPIENTS, NOTIFICATIONS, DELIVERY_LOGS
    query = (
        select(s.c.id)
        .select_from(
            x.join(r, r.c.phone == x.c.address)
            .join(n, and_(n.c.recipient_id == r.c.id, n.c.request_id == request_id))
            .join(s, and_(s.c.notification_id == n.c.id, s.c.channel == Channel.sms.value))
        )
        .where(
            x.c.channel == Channel.sms.value,
            whole_number_mute(),
            suppression_active(now),
            s.c.status == Status.skipped.value,
            s.c.decision == SMS_SUPPRESSED,
        )
        .distinct()
    )
    muted = {row[0]: "sms: number muted" for row in conn.execute(query)}
    if not muted:
        return 0
    return len(make_fallbacks(conn, muted, status=Status.skipped, policy=None, now=now))


def whole_number_mute() -> ColumnElement[bool]:
    """A suppression that may let a muted SMS fall back to email: an operator's mute of the whole
    number, not a loop mute (which names a title) nor what a provider reported (an opt-out from
    a receipt, or found by the deliverer)."""
    x = SUPPRESSIONS
    return and_(x.c.title.is_(None), x.c.source == SuppressionSource.operator.value)


# --- the fallback rows -------------------------------------------------------------------------


def make_fallbacks(
    conn: Connection,
    why: Mapping[int, str],
    *,
    status: Status,
    policy: FallbackPolicy | None,
    now: datetime,
) -> list[int]:
    """For each SMS row in `why` (id -> reason) that is in `status` and qualifies (module
    docstring), a pending email row replacing it. Returns the new rows' ids."""
    made = []
    for sms_id, notification_id, address, sms_decision in _qualifying(
        conn, list(why), status, policy, now
    ):
        decision = f"email: fallback for sms #{sms_id} ({why[sms_id]})"
        new_id = conn.execute(
            insert(DELIVERY_LOGS)
            .values(
                notification_id=notification_id,
                channel=Channel.email.value,
                recipient_email=address,
                status=Status.pending.value,
                decision=decision[:DECISION_MAX_CHARS],
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                replaces_id=sms_id,
            )
            .returning(DELIVERY_LOGS.c.id)
        ).scalar_one()
        note = f"{sms_decision}; email fallback #{new_id}"
        conn.execute(
            update(DELIVERY_LOGS)
            .where(DELIVERY_LOGS.c.id == sms_id)
            .values(decision=note[:DECISION_MAX_CHARS])
        )
        made.append(new_id)
    return made


def _qualifying(
    conn: Connection,
    ids: list[int],
    status: Status,
    policy: FallbackPolicy | None,
    now: datetime,
) -> list[tuple[int, int, str, str]]:
    """(sms id, notification id, address, sms decision) of the rows a fallback may replace."""
    s, n, r = DELIVERY_LOGS, NOTIFICATIONS, RECIPIENTS
    email, replaced = DELIVERY_LOGS.alias("email"), DELIVERY_LOGS.alias("replaced")
    carried = DELIVERY_LOGS.alias("carried")
    sent_or_blocked = exists().where(
        email.c.notification_id == s.c.notification_id,
        email.c.channel == Channel.email.value,
        or_(
            email.c.status != Status.skipped.value,
            email.c.decision.not_in(REPLACEABLE_EMAIL_SKIPS),
        ),
    )
    already = exists().where(replaced.c.replaces_id == s.c.id)
    # a quiet-hours digest carries SMS of other notifications: their emails went (or their
    # template refuses a fallback), and its own notification has no email to tell; it fails
    # with its rows, as a mute made after the gather leaves it (notify.recheck)
    a_digest = exists().where(carried.c.carried_by_id == s.c.id)
    suppressed = exists().where(
        suppression_stops(
            addresses=[r.c.email], channel=Channel.email.value, title=n.c.title, now=now
        )
    )
    conditions: list[Any] = [
        s.c.id.in_(ids),
        s.c.channel == Channel.sms.value,
        s.c.status == status.value,
        r.c.email.is_not(None),
        r.c.email != "",
        ~sent_or_blocked,
        ~already,
        ~suppressed,
        ~a_digest,
    ]
    if policy is not None and policy.blocked_templates:
        conditions.append(n.c.template_name.not_in(sorted(policy.blocked_templates)))
    query = (
        select(s.c.id, s.c.notification_id, r.c.email, s.c.decision)
        .join_from(s, n, n.c.id == s.c.notification_id)
        .join(r, r.c.id == n.c.recipient_id)
        .where(*conditions)
        .order_by(s.c.id)
    )
    return [(row[0], row[1], row[2], row[3]) for row in conn.execute(query)]


# --- the email failover's memory ---------------------------------------------------------------


class MarkMemory:
    """The email failover's clock in `receipt_marks` (shared by every process on the database).

    Best effort: a database that cannot be read or written leaves the failover to its own
    process's memory; it never fails a send."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine

    def load(self) -> FailoverMarks:
        try:
            with transaction(self._engine()) as session:
                failing = read_mark(session, FAILING_SINCE_MARK)
                smtp = read_mark(session, SMTP_SINCE_MARK)
                refused = read_mark(session, LAST_REFUSAL_MARK)
        except Exception:
            return FailoverMarks()
        return FailoverMarks(
            failing_since=failing[0] if failing else None,
            smtp_since=smtp[0] if smtp else None,
            last_error=refused[1] if refused else "",
            last_refused=refused[0] if refused else None,
        )

    def save(self, marks: FailoverMarks) -> None:
        try:
            with transaction(self._engine()) as session:
                now = utcnow()
                note = marks.last_error
                set_mark(session, FAILING_SINCE_MARK, marks.failing_since, now=now, note=note)
                set_mark(session, SMTP_SINCE_MARK, marks.smtp_since, now=now, note=note)
                set_mark(session, LAST_REFUSAL_MARK, marks.last_refused, now=now, note=note)
        except Exception:
            return
