"""Quiet-hours digests: the rows quiet hours held back for one recipient and channel go out as one
message when the window ends, instead of a burst of SMS at 07:00.

`gather_digests` runs at the start of every delivery run (flows/delivery.py), and a delivery
batch gathers again before a claim when a held row came due since it last looked
(`DigestsWhileClaiming`: a batch still claiming when a window ends). It takes the rows
that are due now, still `pending` and never tried, whose decision is a quiet-hours deferral
(`policies.QUIET_HOURS_LIKE`) and that no digest carries yet; it groups them by recipient and
channel, leaving out rows whose template says `"digest": false` in its meta.json (those go out on
their own). For every group of two or more rows it stores, in one transaction:

- a `digest` notification for the recipient (the `digest` template rendered from the carried
  notifications' titles and SMS texts; the SMS lists as many as fit in DIGEST_SMS_MAX_PARTS parts
  and counts the rest) and its delivery row, `pending` and due now, whose decision names the rows
  it carries (`sms: digest of 3 rows: #12,#15,#19`);
- the carried rows: `carried` (out of the due set: never claimed, never sent on their own),
  `carried_by_id` = the digest row, decision `sms: carried by digest #N; <the deferral>`, cost and
  parts 0 (the digest row holds the price of what is sent).

Two deliverers at once: on PostgreSQL gathers take turns (a transaction-level advisory lock, taken
before any row is read: two gathers locking candidates side by side split a recipient's rows
between them, and the half with one row went out alone beside the other half's digest), and the
candidates are locked `FOR UPDATE SKIP LOCKED`, so a row is gathered or claimed by a deliverer,
never both; every carried row is moved
by an UPDATE fenced on `status = 'pending' AND carried_by_id IS NULL` whose row count is checked
(SQLite's reads are not locked): a row taken meanwhile rolls the whole gather back and it starts
again. Run twice, it finds nothing left to gather.

Statuses follow (`follow_digests`, at the start and the end of every delivery run, and the idle
check of deliver-pending looks for work of it): once the digest row has an outcome that a carried
row can take without being sent or counted again (sent, delivered, bounced, complained,
undelivered, failed, failed_permanent, purged, skipped), each carried row takes that status and the
digest's sent/delivered times and error. While the digest is pending, in flight, waiting for a
retry or `unknown`, its carried rows stay `carried` (a carried row is never due, so it never counts
as backlog and a redrive or purge never touches it: operators act on the digest row).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    and_,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from notify.bulk_insert import insert_returning_ids
from notify.db import DELIVERY_LOGS, NOTIFICATIONS, Channel, Status, Turn, take_turn, transaction
from notify.errors import InputError
from notify.policies import QUIET_HOURS_LIKE, REASON_MAX_CHARS, sms_refusal
from notify.pricing import estimate_sms_cost, sms_length
from notify.rendering import RenderedMessage, TemplateCatalog
from notify.settings import Priority, Settings

DIGEST_TEMPLATE = "digest"
DIGEST_SMS_MAX_PARTS = 3  # a longer digest lists fewer messages and counts the rest
# A row still `carried` follows its digest whatever its age (a digest may get its outcome days
# later: an outage, a redrive); one that already took an outcome follows the digest's later ones
# (receipts: delivered, bounced) for this long
FOLLOW_SPAN = timedelta(days=7)
GATHER_ATTEMPTS = 3  # a gather that lost a row to a deliverer starts again, this many times
# The digest's outcomes its carried rows take: an accepted message, a failure, or skipped (the
# recipient turned SMS off or was muted while the digest waited: notify.recheck). Not pending,
# claimed, sending, pending_retry or unknown: the digest is still on its way, its carried rows
# stay `carried` (never due) until it gets there.
FOLLOWED = (
    Status.skipped.value,
    Status.sent.value,
    Status.delivered.value,
    Status.bounced.value,
    Status.complained.value,
    Status.undelivered.value,
    Status.failed.value,
    Status.failed_permanent.value,
    Status.purged.value,
)
FOLLOWED_COLUMNS = (
    "status",
    "sent_at",
    "delivered_at",
    "error_code",
    "error_class",
    "error_message",
    "error_norm",
    "receipt_event",
    "receipt_at",
)
LOGS, NOTES = DELIVERY_LOGS, NOTIFICATIONS
_log = logging.getLogger(__name__)
# Quiet-hours rows not yet tried, in SQL literals as the partial index ix_delivery_logs_quiet
# declares them (with bound parameters the planners cannot prove the index applies).
QUIET_PENDING = and_(
    LOGS.c.status == literal_column(f"'{Status.pending.value}'"),
    LOGS.c.decision.like(literal_column(f"'{QUIET_HOURS_LIKE}'")),
)


@dataclass(frozen=True)
class Gathered:
    """What one gather did: digest rows made, rows they carry, and whether a race gave up."""

    digests: int = 0
    carried: int = 0
    raced: bool = False


@dataclass(frozen=True)
class _Candidate:
    id: int
    channel: str
    recipient_email: str | None
    recipient_phone: str | None
    recipient_id: int
    template_name: str
    title: str
    sms_text: str | None
    priority: str


class _Raced(Exception):
    """A candidate row left `pending` while the gather was under way (a deliverer claimed it)."""


def gather_digests(
    *, engine: Engine, catalog: TemplateCatalog, settings: Settings, now: datetime
) -> Gathered:
    """Make the digests due at `now` (see the module's docstring); idempotent."""
    with engine.connect() as conn:
        return _gather_committed(conn, catalog, settings, now)


@dataclass(frozen=True)
class DigestsWhileClaiming:
    """A delivery batch's digests: before each claim, rows quiet hours held whose window ended
    since the batch last looked join their recipient's digest, so a batch still claiming when a
    window ends never sends that recipient's held SMS one by one (the run gathered only the
    digests due when it started)."""

    catalog: TemplateCatalog
    settings: Settings

    def gather(self, conn: Connection, *, seen: datetime | None, now: datetime) -> Gathered:
        """On `conn` (no write of its own pending; committed): one probe of the quiet index for
        a held row that came due after `seen` (None: any due by `now`), then the gather."""
        if not held_rows_came_due(conn, after=seen, now=now):
            return Gathered()
        return _gather_committed(conn, self.catalog, self.settings, now)


def held_rows_came_due(conn: Connection, *, after: datetime | None, now: datetime) -> bool:
    """Whether a row quiet hours held (never tried, carried by no digest) came due in (`after`,
    `now`]: the partial quiet index's entries, one probe."""
    query = select(LOGS.c.id).where(*_held_due(now))
    if after is not None:
        query = query.where(LOGS.c.next_attempt_at > after)
    return conn.execute(query.limit(1)).first() is not None


def _held_due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Rows a digest may carry at `now`: held by quiet hours, due, never tried, carried by none
    (the gather's candidates, and what the deliverer's probe looks for)."""
    return (
        QUIET_PENDING,
        LOGS.c.next_attempt_at <= now,
        LOGS.c.attempts == 0,
        LOGS.c.carried_by_id.is_(None),
    )


def _gather_committed(
    conn: Connection, catalog: TemplateCatalog, settings: Settings, now: datetime
) -> Gathered:
    """`_gather` in a transaction of its own on `conn`, again when it lost a row to a deliverer."""
    for _ in range(GATHER_ATTEMPTS):
        try:
            gathered = _gather(conn, catalog, settings, now)
        except _Raced:
            conn.rollback()
            continue
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return gathered
    return Gathered(raced=True)


def _gather(
    conn: Connection, catalog: TemplateCatalog, settings: Settings, now: datetime
) -> Gathered:
    take_turn(conn, Turn.DIGEST_GATHER)  # one gather at a time, until this transaction ends
    pairs = _rendered(catalog, _groups(_candidates(conn, now), _digest_allowed(catalog)))
    if not pairs:
        return Gathered()
    groups = [group for group, _ in pairs]
    note_ids = insert_returning_ids(conn, NOTES, [_notification(g, m, now) for g, m in pairs])
    digest_ids = insert_returning_ids(
        conn,
        LOGS,
        [
            _digest_row(group, message, nid, settings, now)
            for (group, message), nid in zip(pairs, note_ids, strict=True)
        ],
    )
    for group, digest_id in zip(groups, digest_ids, strict=True):
        _carry(conn, group, digest_id)
    return Gathered(digests=len(groups), carried=sum(len(group) for group in groups))


def _candidates(conn: Connection, now: datetime) -> list[_Candidate]:
    query = (
        select(
            LOGS.c.id,
            LOGS.c.channel,
            LOGS.c.recipient_email,
            LOGS.c.recipient_phone,
            NOTES.c.recipient_id,
            NOTES.c.template_name,
            NOTES.c.title,
            NOTES.c.sms_text,
            NOTES.c.priority,
        )
        .join_from(LOGS, NOTES, NOTES.c.id == LOGS.c.notification_id)
        .where(*_held_due(now))
        .order_by(NOTES.c.recipient_id, LOGS.c.channel, LOGS.c.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=LOGS, skip_locked=True)
    return [_Candidate(*row) for row in conn.execute(query)]


def _digest_allowed(catalog: TemplateCatalog) -> Callable[[str], bool]:
    """Whether a template's rows may join a digest (its meta.json), read once per name."""
    cache: dict[str, bool] = {}

    def allowed(name: str) -> bool:
        if name not in cache:
            try:
                cache[name] = name != DIGEST_TEMPLATE and catalog.info(name).digest
            except InputError:  # a template since removed or broken: send the row as it is
                cache[name] = False
        return cache[name]

    return allowed


def _groups(
    candidates: Iterable[_Candidate], allowed: Callable[[str], bool]
) -> list[list[_Candidate]]:
    """Rows by recipient and channel (templates that opt out left alone), two or more a group."""
    grouped: dict[tuple[int, str], list[_Candidate]] = {}
    for row in candidates:
        if allowed(row.template_name):
            grouped.setdefault((row.recipient_id, row.channel), []).append(row)
    return [rows for rows in grouped.values() if len(rows) >= 2]


def _rendered(
    catalog: TemplateCatalog, groups: Sequence[list[_Candidate]]
) -> list[tuple[list[_Candidate], RenderedMessage]]:
    """Each group with its digest; a group whose digest cannot be rendered (a broken override of
    the `digest` template in NOTIFY_TEMPLATES_DIR) is left alone: its rows go out one by one."""
    pairs = []
    for group in groups:
        try:
            pairs.append((group, render_digest(catalog, group)))
        except InputError as problem:
            _log.warning("no digest for rows %s: %s", [row.id for row in group], problem)
    return pairs


def digest_context(items: Sequence[Mapping[str, Any]], listed: int) -> dict[str, Any]:
    """The `digest` template's context: every item, the first `listed` of them for the SMS, and
    how many the SMS leaves out."""
    return {
        "total": len(items),
        "items": list(items),
        "sms_items": list(items[:listed]),
        "more": len(items) - listed,
    }


def render_digest(catalog: TemplateCatalog, group: Sequence[_Candidate]) -> RenderedMessage:
    """The digest of these rows: the SMS lists as many of them as fit DIGEST_SMS_MAX_PARTS parts
    (in the order they were sent) and counts the rest; the email parts list them all."""
    items = [{"id": row.id, "title": row.title, "sms": row.sms_text or row.title} for row in group]
    message = catalog.render(DIGEST_TEMPLATE, digest_context(items, len(items)))
    listed = len(items)
    while listed > 0 and sms_length(message.sms).segments > DIGEST_SMS_MAX_PARTS:
        listed -= 1
        message = catalog.render(DIGEST_TEMPLATE, digest_context(items, listed))
    # an override whose SMS comes out empty (the deliverer would send the subject alone, and the
    # rows it carries would count as sent) or longer than SNS takes: no digest, rows one by one
    problem = sms_refusal(message.sms)
    if problem is not None:
        raise InputError(f"the {DIGEST_TEMPLATE} template: {problem}")
    return message


def digest_decision(channel: str, ids: Sequence[int]) -> str:
    """`sms: digest of 3 rows: #12,#15,#19`, the ids cut short to fit the decision column."""
    head = f"{channel}: digest of {len(ids)} rows: "
    listed = ",".join(f"#{i}" for i in ids)
    if len(head) + len(listed) <= REASON_MAX_CHARS:
        return head + listed
    tail = ",… (see carried_by_id)"
    room = REASON_MAX_CHARS - len(head) - len(tail)
    shown: list[str] = []
    for i in ids:
        if len(",".join([*shown, f"#{i}"])) > room:
            break
        shown.append(f"#{i}")
    return head + ",".join(shown) + tail


def _highest(priorities: Iterable[str]) -> Priority:
    return max((Priority(p) for p in priorities), key=lambda p: p.rank)


def _notification(
    group: Sequence[_Candidate], message: RenderedMessage, now: datetime
) -> dict[str, Any]:
    ids = [row.id for row in group]
    return {
        "recipient_id": group[0].recipient_id,
        "template_name": DIGEST_TEMPLATE,
        "title": message.subject[:300],
        "message": message.text,
        "html": message.html,
        "sms_text": message.sms,
        "priority": _highest(row.priority for row in group).value,
        "category": message.category,
        "context": {"carried": ids},
        # One digest per first carried row, ever: a second gather of the same rows cannot store.
        "idempotency_key": f"digest:{group[0].channel}:{ids[0]}",
        "request_id": None,
        "flow_run_id": None,
        "deployment_name": None,
        "read": True,  # the in-app feed already holds each carried notification
        "created_at": now,
    }


def _digest_row(
    group: Sequence[_Candidate],
    message: RenderedMessage,
    notification_id: int,
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    channel, newest = group[0].channel, group[-1]
    segments, cost = None, None
    if channel == Channel.sms.value and newest.recipient_phone:
        segments, cost = estimate_sms_cost(
            message.sms,
            newest.recipient_phone,
            prices=settings.sms_prices,
            default=settings.sms_price_usd,
        )
    return {
        "notification_id": notification_id,
        "channel": channel,
        "recipient_email": newest.recipient_email,
        "recipient_phone": newest.recipient_phone,
        "status": Status.pending.value,
        "decision": digest_decision(channel, [row.id for row in group]),
        "attempts": 0,
        "segments": segments,
        "cost": cost,
        "created_at": now,
        "next_attempt_at": now,
    }


def _carry(conn: Connection, group: Sequence[_Candidate], digest_id: int) -> None:
    """The group's rows leave the due set, naming the digest; every one of them or _Raced."""
    ids = [row.id for row in group]
    sms = group[0].channel == Channel.sms.value
    note = literal(f"{group[0].channel}: carried by digest #{digest_id}; ")
    statement = (
        update(LOGS)
        .where(
            LOGS.c.id.in_(ids),
            LOGS.c.status == Status.pending.value,
            LOGS.c.carried_by_id.is_(None),
        )
        .values(
            status=Status.carried.value,
            carried_by_id=digest_id,
            next_attempt_at=None,
            decision=func.substr(note + LOGS.c.decision, 1, REASON_MAX_CHARS),
            cost=0 if sms else None,  # the digest row holds the price of what is sent
            segments=0 if sms else None,
        )
    )
    if _rowcount(conn.execute(statement)) != len(ids):
        raise _Raced()


def _rowcount(result: Any) -> int:
    return max(result.rowcount or 0, 0) if isinstance(result, CursorResult) else 0


# --- statuses follow ------------------------------------------------------------------------


def lagging(now: datetime) -> ColumnElement[bool]:
    """Carried rows whose digest has an outcome they have not taken: any still `carried`, and
    those of the last FOLLOW_SPAN that took an earlier one."""
    digest = LOGS.alias("digest")
    behind = exists().where(
        digest.c.id == LOGS.c.carried_by_id,
        digest.c.status.in_(FOLLOWED),
        digest.c.status != LOGS.c.status,
    )
    waiting_or_recent = or_(
        LOGS.c.status == Status.carried.value, LOGS.c.created_at >= now - FOLLOW_SPAN
    )
    return and_(LOGS.c.carried_by_id.is_not(None), waiting_or_recent, behind)


def follow_digests(*, engine: Engine, now: datetime) -> int:
    """Carried rows take their digest row's outcome (status, sent and delivered times, error);
    returns how many moved. One UPDATE; running it again moves nothing."""
    digest = LOGS.alias("digest")
    values = {
        name: select(digest.c[name]).where(digest.c.id == LOGS.c.carried_by_id).scalar_subquery()
        for name in FOLLOWED_COLUMNS
    }
    statement = update(LOGS).where(lagging(now)).values(values)
    with transaction(engine) as session:
        return _rowcount(session.execute(statement))


def carried_rows(conn: Connection, digest_id: int) -> list[int]:
    """The ids a digest row carries, in order."""
    query = select(LOGS.c.id).where(LOGS.c.carried_by_id == digest_id).order_by(LOGS.c.id)
    return list(conn.scalars(query))
