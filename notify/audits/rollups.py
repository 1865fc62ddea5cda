"""Hourly rollups the audits read instead of aggregating every delivery row of their window.

Rows are folded by id, not by hour. A fold takes the delivery rows with an id above the watermark
(`audit_rollup_state.through_id`) up to a safe id, and for each row either

- adds it to the hourly rollups, when it is *settled* (sent, delivered or skipped: statuses no
  writer changes any more, except sent -> delivered, which no audit tells apart), or
- lists it in `audit_open_rows`, when it can still change (pending, claimed, sending,
  pending_retry, unknown, failed, failed_permanent: a failed row can be redriven at any age).

Each fold also promotes open rows that have settled since (moved into the rollups) and fills
`delivery_logs.error_norm` where it is NULL on open rows. So every row is in exactly one place:
the rollups (settled, id <= through_id), the open rows (not settled when folded, id <= through_id),
or above the watermark. An audit over a time range reads

- whole UTC hours of the range from the rollups,
- the same hours' rows above the watermark and their open rows, live from delivery_logs,
- a partial hour at either end of the range (the window's first hour, the open hour) either live
  with the range's exact bounds, or, when the part outside the range is the smaller one, from the
  rollups minus that part's rolled rows (read live: folded, settled, not open).

Which makes the result the full scan's, to the unit. Two facts about the writers make it hold:

- An insert commits within FOLD_GRACE of taking its id (ids are handed out in order, so a fold
  only goes up to the largest id seen at least FOLD_GRACE before: `mark_id`).
- A row gets `sent_at` only when it becomes `sent`, stamped at most OUTCOME_LAG before the
  commit: open rows are read by sent_at only from `folded_at - OUTCOME_LAG` on.

SMS are summed at the price known: the receipt's (`actual_cost`) where one arrived, else our
estimate (`cost`), as `sms_cost_known` says, in the rollups and in the live reads alike. A
receipt's price often arrives after its row was folded (a carrier reports within 72 h), so the
one writer of `actual_cost`, `notify.receipts.store`, moves a rolled-up SMS in the same
transaction: `repriced` takes the row out of its audit_sms_hours / audit_sms_totals buckets at the
old price before the write and puts it back at the new price after it. For that to be exact no
fold may commit in between (it could read the old price and not be seen as folded yet):
`hold_folds` holds the state row FOR SHARE from before the receipts lock any delivery row until
they commit, and a fold skips while it is held, as while an audit reads. Rows that are open or
above the watermark need nothing: they are read live, and folded at the price known then.

Why move the folded row rather than keep an SMS open until its price arrives (or a cut-off): a
price can come at any age (carriers report within 72 h, and a stalled receipts pipeline delivers
later still) or never (no delivery-status logging, a dropped log line), so any cut-off would fold
some rows before their price and the audits would no longer equal the full scan; and every SMS of
the last days held open would be read live by every audit. Moving costs once per price, in the
receipts: four INSERT ... SELECT ... ON CONFLICT per batch of priced rows (out of and back into
the two tables), each over the batch's rows by id; and a batch that comes while a fold runs waits
for the fold to commit. Rollups folded at the estimate (before migration 0010) were emptied by it.

Loops look at who repeats, not at statuses: `audit_loop_rows` holds (a superset of) every folded
row that has another row of the same recipient, channel and title within LOOP_SPAN (a loop's rows
all do); loops.py counts the candidates it yields exactly.

A fold costs about the rows it takes plus one pass over the open rows; it runs inside whichever
audit finds it due (at most once per FOLD_GRACE). Deleting delivery rows (a retention purge) must
be followed by `reset_rollups`, after which the next folds rebuild everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Interval,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.audits.sql import (
    POSTGRES,
    latency_ms,
    latency_us,
    micros_sum,
    rollup_hour,
)
from notify.db import (
    ACCEPTED_STATUSES,
    FAILED_STATUSES,
    Channel,
    CreatedHour,
    DeliveryLog,
    LatencyHour,
    LoopRow,
    Notification,
    RollupOpenRow,
    RollupState,
    SmsHour,
    SmsTotalHour,
    Status,
    among,
    dialect_of,
    lookup_chunks,
    sms_cost_known,
    utcnow,
)
from notify.error_messages import normalise_error_message

SETTLED_STATUSES = (*ACCEPTED_STATUSES, Status.skipped.value)
PAID_STATUSES = ACCEPTED_STATUSES  # an SMS the provider accepted was paid for, delivered or not
FOLD_GRACE = timedelta(minutes=10)
OUTCOME_LAG = timedelta(minutes=10)
LOOP_SPAN = timedelta(hours=48)
ENQUEUE_SKEW = timedelta(hours=1)  # a delivery row's created_at vs its notification's
HOUR = timedelta(hours=1)
HALF_HOUR = timedelta(minutes=30)
STATE_ID = 1
NORMS_PER_STATEMENT = 1_000


@dataclass(frozen=True)
class RollupPolicy:
    """How an audit uses the rollups. `use=False` is the full scan (the reference the rollups
    must equal); `fold=False` reads what is folded without folding; `grace=0` folds up to the
    newest row at once (only when nothing is writing: benchmarks, tests)."""

    use: bool = True
    fold: bool = True
    grace: timedelta = FOLD_GRACE
    clock: Callable[[], datetime] = utcnow


ROLLUPS = RollupPolicy()
FULL_SCAN = RollupPolicy(use=False, fold=False)


class Key(StrEnum):
    created = "created_at"
    sent = "sent_at"


@dataclass(frozen=True)
class View:
    """What is folded, as this transaction sees it."""

    use: bool
    through_id: int = 0
    sent_cutoff: datetime | None = None  # open rows sent after this may be missing from rollups


@dataclass(frozen=True)
class Parts:
    """A time range of `key` split into disjoint sets of rows: whole UTC hours [first, end) from
    the rollups (`hours`), minus the rolled-up rows of those hours outside the range (`minus`),
    plus rows read live from delivery_logs (`raw`: the range's rows outside those hours, and the
    rows of the hours that are not rolled up)."""

    hours: tuple[datetime, datetime] | None
    raw: tuple[ColumnElement[bool], ...]
    minus: tuple[ColumnElement[bool], ...] = ()

    @property
    def signed(self) -> tuple[tuple[int, ColumnElement[bool]], ...]:
        """The live row sets to add (+1) and the rolled rows to take away (-1)."""
        return (*((1, rows) for rows in self.raw), *((-1, rows) for rows in self.minus))

    def hour_range(self, column: Any) -> ColumnElement[bool]:
        assert self.hours is not None
        return and_(column >= self.hours[0], column < self.hours[1])


@dataclass(frozen=True)
class FoldResult:
    folded: bool
    new_rows: int = 0
    promoted: int = 0
    through_id: int = 0


def open_view(session: Session, policy: RollupPolicy) -> View:
    """Fold when due (see `fold`), then pin the watermark for this transaction: on PostgreSQL
    a FOR SHARE lock on the state row keeps a concurrent fold from committing between this
    audit's statements; SQLite transactions read one snapshot anyway."""
    if not policy.use:
        return View(use=False)
    if policy.fold:
        fold(session, now=policy.clock(), grace=policy.grace)
    query = select(RollupState).where(RollupState.id == STATE_ID).with_for_update(read=True)
    fresh = query.execution_options(populate_existing=True)  # not the copy fold() looked at
    state = session.execute(fresh).scalar_one_or_none()
    if state is None:
        return View(use=True)
    cutoff = state.folded_at - OUTCOME_LAG if state.folded_at is not None else None
    return View(use=True, through_id=state.through_id, sent_cutoff=cutoff)


def fold(session: Session, *, now: datetime, grace: timedelta = FOLD_GRACE) -> FoldResult:
    """Fold new rows and promote settled open rows, at most once per `grace` (cheap otherwise:
    one SELECT). Skips when another transaction holds the state row (it is folding, or reading
    what is folded); the next audit folds instead."""
    state = session.get(RollupState, STATE_ID)
    if state is None:
        _create_state(session)
    elif not _due(state, now, grace):
        return FoldResult(folded=False, through_id=state.through_id)
    locked = select(RollupState).where(RollupState.id == STATE_ID)
    state = session.execute(
        locked.with_for_update(skip_locked=True).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if state is None or not _due(state, now, grace):
        return FoldResult(folded=False, through_id=state.through_id if state else 0)
    return _fold_locked(session, state, now, grace)


def _due(state: RollupState, now: datetime, grace: timedelta) -> bool:
    return grace <= timedelta(0) or state.mark_at is None or now - state.mark_at >= grace


def _create_state(session: Session) -> None:
    values = {"id": STATE_ID, "through_id": 0}
    session.execute(_insert(session, RollupState.__table__).values(values).on_conflict_do_nothing())


def _fold_locked(
    session: Session, state: RollupState, now: datetime, grace: timedelta
) -> FoldResult:
    newest = int(session.scalar(select(func.max(DeliveryLog.id))) or 0)
    safe = newest if grace <= timedelta(0) else (state.mark_id or 0)
    start, end = state.through_id, max(state.through_id, safe)
    new_rows = _fold_new(session, start, end) if end > start else 0
    promoted = _promote(session)
    _fill_error_norms(session)
    state.through_id, state.mark_id, state.mark_at, state.folded_at = end, newest, now, now
    session.flush()
    return FoldResult(folded=True, new_rows=new_rows, promoted=promoted, through_id=end)


def _fold_new(session: Session, start: int, end: int) -> int:
    """Rows start < id <= end: unsettled ones to the open rows first, then the rest (settled,
    and not listed open by the first statement) into the rollups; then their repeats."""
    dl, o = DeliveryLog, RollupOpenRow
    batch = and_(dl.id > start, dl.id <= end)
    unsettled = select(dl.id, dl.created_at, false()).where(
        batch, dl.status.not_in(SETTLED_STATUSES)
    )
    columns = ["id", "created_at", "settled"]
    insert_open = _insert(session, o.__table__).from_select(columns, unsettled)
    session.execute(insert_open.on_conflict_do_nothing())
    not_open = ~exists().where(o.id == dl.id)
    _add_rollups(session, and_(batch, dl.status.in_(SETTLED_STATUSES), not_open))
    _add_loop_rows(session, start, end)
    return end - start


def _promote(session: Session) -> int:
    """Open rows that settled since they were folded move into the rollups."""
    dl, o = DeliveryLog, RollupOpenRow
    settled_now = exists().where(dl.id == o.id, dl.status.in_(SETTLED_STATUSES))
    flagged = session.execute(
        update(o).where(o.settled.is_(False), settled_now).values(settled=True)
    )
    count = int(getattr(flagged, "rowcount", 0) or 0)
    if count:
        _add_rollups(session, dl.id.in_(select(o.id).where(o.settled.is_(True))))
        session.execute(delete(o).where(o.settled.is_(True)))
    return count


def paid_sms() -> ColumnElement[bool]:
    """SMS rows the provider accepted, each a message of its own: a row a quiet-hours digest
    carried (cost 0) went out inside the digest's SMS, which is the one counted."""
    dl = DeliveryLog
    return and_(
        dl.channel == Channel.sms.value,
        dl.status.in_(PAID_STATUSES),
        dl.carried_by_id.is_(None),
    )


def _add_rollups(session: Session, rows: ColumnElement[bool]) -> None:
    """Add the settled rows matched by `rows` to the three hourly rollups."""
    dl = DeliveryLog
    dialect = dialect_of(session)
    _add_created(session, rows)
    _add_sms(session, rows)
    sent = rollup_hour(dl.sent_at, dialect)
    micros = latency_us(dl.sent_at, dl.created_at, dialect)
    millis = latency_ms(micros)
    latency = select(sent, millis, func.count(), func.coalesce(func.sum(micros), 0))
    latency = latency.where(rows, dl.sent_at.is_not(None), dl.channel.in_(ALL_CHANNELS))
    _upsert(
        session,
        LatencyHour.__table__,
        ("hour", "latency_ms"),
        ("count", "micros"),
        latency.group_by(sent, millis),
    )


def _add_created(session: Session, rows: ColumnElement[bool], sign: int = 1) -> None:
    """Add (sign 1) or take away (sign -1) the paid rows among `rows` to or from the rollup by
    created hour: their count, and for SMS their cost at the price known now (what the daily cap
    counts; a carried row costs 0)."""
    dl = DeliveryLog
    created = rollup_hour(dl.created_at, dialect_of(session))
    cost = case((dl.channel == Channel.sms.value, sms_cost_known()), else_=None)
    sums = tuple(total if sign > 0 else -total for total in (func.count(), micros_sum(cost)))
    paid = dl.status.in_(PAID_STATUSES)
    _upsert(
        session,
        CreatedHour.__table__,
        ("hour", "channel"),
        ("count", "micros"),
        select(created, dl.channel, *sums).where(rows, paid).group_by(created, dl.channel),
    )


def _add_sms(session: Session, rows: ColumnElement[bool], sign: int = 1) -> None:
    """Add (sign 1) or take away (sign -1) the paid SMS among `rows` to or from the two SMS
    rollups, at the price known now (`sms_cost_known`: the receipt's, else the estimate)."""
    dl, n = DeliveryLog, Notification
    sent = rollup_hour(dl.sent_at, dialect_of(session))
    sums = tuple(
        total if sign > 0 else -total
        for total in (
            func.count(),
            func.coalesce(func.sum(dl.segments), 0),
            micros_sum(sms_cost_known()),
        )
    )
    sent_sms = and_(rows, paid_sms(), dl.sent_at.is_not(None))
    sms = select(sent, n.recipient_id, *sums).join(n, n.id == dl.notification_id)
    _upsert(
        session,
        SmsHour.__table__,
        ("hour", "recipient_id"),
        ("count", "segments", "micros"),
        sms.where(sent_sms).group_by(sent, n.recipient_id),
    )
    _upsert(
        session,
        SmsTotalHour.__table__,
        ("hour",),
        ("count", "segments", "micros"),
        select(sent, *sums).where(sent_sms).group_by(sent),
    )


ALL_CHANNELS = tuple(channel.value for channel in Channel)


def _upsert(
    session: Session,
    table: Any,
    keys: tuple[str, ...],
    sums: tuple[str, ...],
    source: Any,
) -> None:
    """INSERT ... SELECT ... ON CONFLICT (keys) DO UPDATE SET each sum = old + new."""
    statement = _insert(session, table).from_select([*keys, *sums], source)
    added = {name: table.c[name] + statement.excluded[name] for name in sums}
    session.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=added))


def _insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT (with ON CONFLICT) for `table`."""
    if dialect_of(session) == POSTGRES:
        return postgresql.insert(table)
    return sqlite.insert(table)


def _add_loop_rows(session: Session, start: int, end: int) -> None:
    """Keep every folded row (id <= end) of a (recipient, title, channel) of this batch that lies
    within LOOP_SPAN of the batch's rows of that pair, when there are at least two: a superset of
    the rows that have another row of their pair within LOOP_SPAN. Linear in those rows (no
    pairwise join: a runaway loop of 5,000 rows stays 5,000 rows)."""
    dl, n = DeliveryLog, Notification
    dialect = dialect_of(session)
    pairs = (
        select(n.recipient_id, n.title, dl.channel)
        .add_columns(func.min(dl.created_at).label("lo"), func.max(dl.created_at).label("hi"))
        .join(n, n.id == dl.notification_id)
        .where(dl.id > start, dl.id <= end)
        .group_by(n.recipient_id, n.title, dl.channel)
        .subquery()
    )
    near = LOOP_SPAN + ENQUEUE_SKEW
    members = (
        select(dl.id, dl.created_at)
        .add_columns(
            func.count()
            .over(partition_by=(pairs.c.recipient_id, pairs.c.title, pairs.c.channel))
            .label("rows")
        )
        .select_from(pairs)
        .join(
            n,
            and_(
                n.recipient_id == pairs.c.recipient_id,
                n.title == pairs.c.title,
                _between(n.created_at, pairs.c.lo, pairs.c.hi, near, dialect),
            ),
        )
        .join(dl, and_(dl.notification_id == n.id, dl.channel == pairs.c.channel))
        .where(dl.id <= end, _between(dl.created_at, pairs.c.lo, pairs.c.hi, LOOP_SPAN, dialect))
        .subquery()
    )
    source = select(members.c.id, members.c.created_at).where(members.c.rows > 1)
    statement = _insert(session, LoopRow.__table__).from_select(["id", "created_at"], source)
    session.execute(statement.on_conflict_do_nothing())


def _between(column: Any, lo: Any, hi: Any, margin: timedelta, dialect: str) -> ColumnElement[bool]:
    """lo - margin <= column <= hi + margin."""
    if dialect == POSTGRES:
        interval = literal(margin, Interval())
        return and_(column >= lo - interval, column <= hi + interval)
    days = margin.total_seconds() / 86_400
    moment = func.julianday(column)
    return and_(moment >= func.julianday(lo) - days, moment <= func.julianday(hi) + days)


def _fill_error_norms(session: Session) -> None:
    """delivery_logs.error_norm for open failed rows that have none (the outbox does not write
    it yet). Compare-and-set on the message, so a row that failed again meanwhile is skipped."""
    dl, o = DeliveryLog, RollupOpenRow
    query = (
        select(dl.id, dl.error_message)
        .join(o, o.id == dl.id)
        .where(dl.status.in_(FAILED_STATUSES), dl.error_norm.is_(None))
        .where(dl.error_message.is_not(None))
    )
    rows = [
        {"b_id": row_id, "b_message": message, "b_norm": normalise_error_message(message)}
        for row_id, message in session.execute(query)
    ]
    table: Table = DeliveryLog.__table__  # type: ignore[assignment]
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.error_message == bindparam("b_message"),
            table.c.error_norm.is_(None),
        )
        .values(error_norm=bindparam("b_norm"))
    )
    for start in range(0, len(rows), NORMS_PER_STATEMENT):
        session.connection().execute(statement, rows[start : start + NORMS_PER_STATEMENT])


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def parts(
    view: View, key: Key, start: datetime, end: datetime, *, include_start: bool = False
) -> Parts:
    """Split the range (start, end] ([start, end] with include_start) of `key`.

    A partial hour at either end is read from the rollups minus its rolled rows outside the range
    when the outside part is the smaller one (always so for an `as_of` of now: nothing is sent
    or created after now), else its part inside the range is read live."""
    column = DeliveryLog.created_at if key is Key.created else DeliveryLog.sent_at
    whole = _span(column, start, end, include_start)
    if not view.use:
        return Parts(hours=None, raw=(whole,))
    first, last = floor_hour(start), floor_hour(end)
    raw: list[ColumnElement[bool]] = []
    outside: list[ColumnElement[bool]] = []
    if include_start and first == start:
        pass
    elif start - first < HALF_HOUR:
        outside.append(_span(column, first, start, True, include_end=not include_start))
    else:
        first += HOUR
        raw.append(_span(column, start, first, include_start, include_end=False))
    if end - last >= HALF_HOUR:
        last += HOUR
        outside.append(_span(column, end, last, False, include_end=False))
    else:
        raw.append(_span(column, last, end, True))
    if first >= last:
        return Parts(hours=None, raw=(whole,))
    inside = and_(whole, _span(column, first, last, True, include_end=False))
    raw.extend(_live(view, key, inside, first, last))
    minus = tuple(and_(span, _rolled(view)) for span in outside)
    return Parts(hours=(first, last), raw=tuple(raw), minus=minus)


def _rolled(view: View) -> ColumnElement[bool]:
    """Rows the rollups hold: folded, settled, not listed open."""
    dl, o = DeliveryLog, RollupOpenRow
    listed = exists().where(o.id == dl.id)
    return and_(dl.id <= view.through_id, dl.status.in_(SETTLED_STATUSES), ~listed)


def _span(
    column: Any, start: datetime, end: datetime, include_start: bool, *, include_end: bool = True
) -> ColumnElement[bool]:
    after = column >= start if include_start else column > start
    before = column <= end if include_end else column < end
    return and_(after, before)


def _live(
    view: View, key: Key, inside: ColumnElement[bool], first: datetime, last: datetime
) -> tuple[ColumnElement[bool], ...]:
    """Rows in `inside` (within the whole hours [first, last)) that the rollups do not hold."""
    dl, o = DeliveryLog, RollupOpenRow
    new = and_(dl.id > view.through_id, inside)
    if key is Key.created:
        listed = select(o.id).where(o.created_at >= first, o.created_at < last)
        return (new, and_(dl.id.in_(listed), inside))
    cutoff = view.sent_cutoff
    if cutoff is None or cutoff >= last:
        return (new,)
    listed_open = exists().where(o.id == dl.id)
    return (new, and_(inside, dl.sent_at >= cutoff, dl.id <= view.through_id, listed_open))


def hold_folds(session: Session) -> int:
    """For a writer about to change the price of delivery rows (receipts): no fold commits from
    now until this transaction ends (a FOR SHARE lock on the state row: a fold skips, as it does
    while an audit reads; on SQLite one writer at a time anyway). Take it before locking any
    delivery row (a fold locks some: error norms). Returns the watermark to give `repriced`."""
    state = session.scalar(select(RollupState.id).where(RollupState.id == STATE_ID))
    if state is None:  # a first fold could otherwise start now, reading the old prices
        _create_state(session)
    query = select(RollupState.through_id).where(RollupState.id == STATE_ID)
    return int(session.scalar(query.with_for_update(read=True)) or 0)


@contextmanager
def repriced(session: Session, ids: Sequence[int], through_id: int) -> Iterator[None]:
    """Around a statement that changes the known price (actual_cost) of rows `ids`: those of them
    the SMS rollups hold are taken out of their buckets at the old price before it, and put back
    at the new one after it. `through_id` from `hold_folds` in the same transaction."""
    if not ids or through_id <= 0:
        yield
        return
    dialect = dialect_of(session)
    rolled = _rolled(View(use=True, through_id=through_id))
    chunks = lookup_chunks(sorted(ids), dialect=dialect)
    for sign in (-1, 1):  # out at the old price before the change, back at the new one after
        if sign > 0:
            yield
        for chunk in chunks:
            rows = and_(among(DeliveryLog.id, chunk, dialect=dialect), rolled)
            _add_sms(session, rows, sign)
            _add_created(session, rows, sign)  # the count goes out and back: only the cost moves


def reset_rollups(session: Session) -> None:
    """Forget every rollup (the next folds rebuild them from delivery_logs). Needed after rows
    are deleted from delivery_logs (a retention purge): the rollups would still count them."""
    models = (CreatedHour, SmsHour, SmsTotalHour, LatencyHour, LoopRow, RollupOpenRow, RollupState)
    for model in models:
        session.execute(delete(model))
