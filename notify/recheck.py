"""Queued rows checked again before they are claimed: the recipient's current channel preferences
and active suppressions, as the enqueue policy would decide them now.

Enqueue decides each channel once, when the request is stored; a row may then wait (quiet hours,
a retry, a backlog) while the recipient turns the channel off (`receive_email` /
`receive_sms` re-imported false) or is muted (`recipients mute`, a loop mute, a bounce or an
opt-out). Before any claim, every delivery run (`tasks.dispatch.prepare_delivery`, before the
digests are gathered, so a digest never carries such a row) skips the waiting rows (`pending`,
`pending_retry`) that are due and may no longer go:

- `<channel>: turned off in preferences after it was queued`: the recipient's preference for the
  row's channel is off now. Not for an email fallback row (`replaces_id`): a fallback exists
  because email was off (notify.fallback), it is the one email such a recipient gets;
- `<channel>: muted after it was queued (suppression #N: <reason>)`: a suppression in force stops
  the row, matched as the enqueue policy matches (`conditions.suppression_stops`: the channel,
  every title or the notification's, in force now) on the address the row would go to (and, for
  the rows of one recipient a mute names, on its current address too). A muted SMS whose number
  is muted as a whole (an operator's mute: `fallback.whole_number_mute`) gets the email fallback
  enqueue gives such an SMS, on the same conditions (notify.fallback); not a digest row, whose
  notification has no email of its own.

A digest row is checked like any row; the rows it carries then take its `skipped` as they take
any outcome (`digest.follow_digests`). Rows in flight or final are never touched: each UPDATE is
fenced on the waiting statuses (on PostgreSQL a row a deliverer claims meanwhile is locked or no
longer waiting, and the UPDATE leaves it).

Set-based: three UPDATEs over the due rows (preferences; suppressions, one per channel so the
row's address is one column, hash-joined to the suppressions in force), plus one query and the
fallback rows (notify.fallback, one INSERT each) when muted SMS were skipped. Measured over
100,000 due rows: 45-50 ms on PostgreSQL, 190-560 ms on SQLite; following the addresses (below)
adds 90-150 ms on PostgreSQL (four statements joined to the recipients). `recipients mute`
applies the suppression half at once to the muted recipient's rows (due or not), and
`recipients import` the preference half to every waiting row: what they say is what happens,
and a delivery run already under way claims none of those rows after the command returns.

A row also copies its address when it is stored (`recipient_email`, `recipient_phone`). After
the preference half, `recipients import` makes every waiting row follow its recipient's current
address (`follow_addresses`), and every delivery run its due rows (a row that became waiting
after the import: redriven, back from a stopped batch, a retry of a row in flight then), so a
number or address the roster changed is where the queued messages go, never the old one:

- `<channel>: <phone number | email address> removed after it was queued`: the recipient has
  none now (skipped, as enqueue skips a channel without an address);
- otherwise a row whose address is not the recipient's is moved to it (an SMS's estimated cost
  priced again for the new number, its parts unchanged) and then checked against the
  suppressions like any row (`muted after it was queued`, with the email fallback a
  whole-number mute gives): a moved row never goes to a suppressed address.

The decision stays as enqueue wrote it (a held-back row is found for its digest by it).

Quiet hours, too, are decided when a request is stored: an SMS decided `sms: send` that then
waits (a backlog, SMS pacing, a retry, a provider outage, a redrive) could go out inside its
recipient's quiet hours. Every delivery run, after the skips above, holds back the due SMS (not
urgent, not a digest row, not carried) whose recipient is inside its quiet hours at the run's
`now`, by its current time zone and window (`hold_quiet_hours`), until the window's end
(`policies.quiet_hold`, DST-correct as enqueue's deferral): a row with no attempt counted (never
tried, or failed on the provider's side only: a 5xx, throttling) takes the deferral enqueue
writes (`sms: deferred to 07:00 America/Chicago (quiet hours 22:00-07:00)`) and is `pending`, so
it joins the recipient's digest at the window's end like any held SMS; a tried one (attempts)
keeps its status and attempts and its decision gains
` | held by quiet hours until 07:00 America/Chicago`. One query reads the candidate rows with
their recipient's window, starting from the due rows; each (time zone, window) is decided once,
and one UPDATE per window `now` is inside moves, by row id, those still waiting; counted in
`held`. The hold takes the roster's turn (shared, `recipients.hold_roster`), so the windows it read
are the recipients' until it commits. Measured on PostgreSQL: 100,000 due SMS rows (50,000
recipients, 300 with quiet hours) 29-30 ms, 0.5 s right after their enqueue, before the planner's
statistics caught up; 10,000 recipients with quiet hours and 10,000 due SMS 0.25 s. The UPDATE
joined to the recipients it replaced took 80 s there, the stale planner reading every recipient
again for each row (and 3.9 s in the first case); on SQLite an EXISTS per recipient did the same
(84 s). SQLite now: 133-154 ms and 0.32 s.

A run's check covers the SMS due when it starts; one that takes a while (SMS paced at 20 a
second, a backlog of thousands) can still be sending when a recipient's window opens. So each
delivery batch holds them again while it runs, at most every `QUIET_RECHECK_S` of its clock,
before it claims more (`notify.delivery`): an SMS goes at most that long, plus the time to send
what the batch already holds in `sending` (up to NOTIFY_SEND_WINDOW rows), into its recipient's
quiet hours. On PostgreSQL holds take turns (`notify.db.take_turn`, `Turn.QUIET_HOLD`):
two at once over the same rows could deadlock; a batch finding another hold under way leaves it
to that one.

An import also times again the SMS quiet hours still hold (`follow_quiet_hours`) by the
recipient's time zone and quiet hours as it leaves them: a recipient moved to another zone gets
them at the end of its window there (not at the old zone's end, inside or hours after its new
window), or at once when the import falls outside its window (or removed it). Fenced on
the waiting statuses as above: a row in flight keeps the address it was claimed with. A store
under way when an import starts commits first, and the import then moves its rows; a store that
starts during an import reads the new addresses (`notify.recipients.hold_roster`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    CursorResult,
    FromClause,
    Row,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)

from notify.conditions import suppression_stops
from notify.db import (
    DELIVERY_LOGS,
    DUE_STATUSES,
    NOTIFICATIONS,
    RECIPIENTS,
    SUPPRESSIONS,
    Channel,
    Status,
    Turn,
    among,
    lookup_chunks,
    take_turn,
)
from notify.digest import DIGEST_TEMPLATE, QUIET_PENDING
from notify.enqueue_plan import RECIPIENT_COLUMNS, recipient_prefs
from notify.fallback import FallbackPolicy, make_fallbacks, whole_number_mute
from notify.policies import REASON_MAX_CHARS, held_sms_again, quiet_hold
from notify.pricing import parts_cost
from notify.recipients import hold_roster
from notify.settings import Priority, Settings

QUIET_RECHECK_S = 15.0  # a delivery batch holds quiet hours again at most this often (its clock)

LOGS, NOTES, PEOPLE, MUTES = DELIVERY_LOGS, NOTIFICATIONS, RECIPIENTS, SUPPRESSIONS
TURNED_OFF = "turned off in preferences after it was queued"
MUTED = "muted after it was queued"
MUTED_FALLBACK_WHY = "sms: number muted"
ADDRESS_REMOVED = "removed after it was queued"


@dataclass(frozen=True)
class Rechecked:
    """Waiting rows skipped by a recheck, the email fallbacks made for muted SMS, (after a roster
    import) the rows moved to their recipient's new address, skipped ones not counted, and the
    held SMS timed again; and (a delivery run) the due SMS quiet hours held back (`held`)."""

    turned_off: int = 0
    muted: int = 0
    fallbacks: int = 0
    unaddressed: int = 0
    readdressed: int = 0
    rescheduled: int = 0
    held: int = 0

    @property
    def skipped(self) -> int:
        return self.turned_off + self.unaddressed + self.muted

    def __add__(self, other: Rechecked) -> Rechecked:
        return Rechecked(
            turned_off=self.turned_off + other.turned_off,
            muted=self.muted + other.muted,
            fallbacks=self.fallbacks + other.fallbacks,
            unaddressed=self.unaddressed + other.unaddressed,
            readdressed=self.readdressed + other.readdressed,
            rescheduled=self.rescheduled + other.rescheduled,
            held=self.held + other.held,
        )


def recheck_queued(
    conn: Connection, *, now: datetime, fallback: FallbackPolicy, settings: Settings
) -> Rechecked:
    """Skip the rows due at `now` that the recipient's current preferences or a suppression in
    force no longer let go, move the others to the recipient's current address, then hold back
    the SMS its quiet hours cover at `now` (the module's docstring); the caller commits. On
    PostgreSQL the whole recheck is the quiet hold's turn: two runs' rechecks, or one and a
    batch's hold, never write the same rows at once."""
    _quiet_hold_turns(conn, wait=True)  # before any row is written
    turned_off = skip_turned_off(conn, now=now, due_only=True)
    followed = follow_addresses(conn, now=now, fallback=fallback, settings=settings, due_only=True)
    return (
        Rechecked(turned_off=turned_off)
        + followed
        + skip_muted(conn, now=now, fallback=fallback, due_only=True)
        + Rechecked(held=_hold_quiet(conn, now=now))
    )


def hold_quiet_hours(conn: Connection, *, now: datetime, wait: bool = True) -> int:
    """Hold back the due SMS (not urgent, not a digest, not carried) whose recipient is inside
    its quiet hours at `now`, by its current time zone and window, to the window's end: a row
    with no attempt counted takes the deferral enqueue writes and is `pending` (the digests find
    it), a tried one keeps its status and attempts and its decision gains a note. One read of
    the rows with their window, each distinct (time zone, window) decided once, then one UPDATE
    by row id per window `now` is inside; returns how many rows it held. The caller commits
    (which ends the turns, on PostgreSQL); without `wait`, a hold under way in another
    transaction makes this one hold nothing."""
    if not _quiet_hold_turns(conn, wait=wait):
        return 0
    return _hold_quiet(conn, now=now)


def _quiet_hold_turns(conn: Connection, *, wait: bool) -> bool:
    """The quiet hold's turn, then the roster's (shared: the windows read stay the recipients'
    until commit), in that order wherever they are taken; False when `wait` is off and another
    transaction holds the first."""
    if not take_turn(conn, Turn.QUIET_HOLD, wait=wait):
        return False
    hold_roster(conn, to_change=False)
    return True


def _hold_quiet(conn: Connection, *, now: datetime) -> int:
    """`hold_quiet_hours` once its turns are taken."""
    # The rows and their recipient's window in one read that starts from the due rows, then one
    # UPDATE per window by row id: joined to the recipients in the UPDATE, a planner that has
    # not seen a large enqueue yet (stale statistics) read every recipient again for each row
    # (80 s for 10,000 SMS on PostgreSQL; on SQLite an EXISTS per recipient did the same).
    rows = select(
        LOGS.c.id, PEOPLE.c.timezone, PEOPLE.c.quiet_hours_start, PEOPLE.c.quiet_hours_end
    ).where(
        *_quiet_candidates(now),
        PEOPLE.c.id == NOTES.c.recipient_id,
        PEOPLE.c.quiet_hours_start.is_not(None),
        PEOPLE.c.quiet_hours_end.is_not(None),
    )
    windows: dict[tuple[str, str, str], list[int]] = {}
    for row_id, *window in conn.execute(rows):
        windows.setdefault((window[0], window[1], window[2]), []).append(row_id)
    held = 0
    for (zone, start, end), row_ids in windows.items():
        hold = quiet_hold(now, zone, time.fromisoformat(start), time.fromisoformat(end))
        if hold is None:
            continue
        # no attempt counted: never tried, or failed on the provider's side only (5xx,
        # throttling: `pending_retry` with 0 attempts); it waits as a deferral, pending, and
        # joins the digest, instead of going alone beside it at the window's end
        never_tried = LOGS.c.attempts == 0
        noted = func.substr(LOGS.c.decision.concat(literal(hold.note)), 1, REASON_MAX_CHARS)
        for chunk in lookup_chunks(row_ids, dialect=conn.dialect.name):
            statement = (
                update(LOGS)
                .where(
                    among(LOGS.c.id, chunk, dialect=conn.dialect.name),
                    *_waiting(LOGS, now, True, None),  # still waiting (a claim may have won)
                )
                .values(
                    next_attempt_at=hold.until,
                    decision=case((never_tried, literal(hold.deferral)), else_=noted),
                    status=case((never_tried, literal(Status.pending.value)), else_=LOGS.c.status),
                )
            )
            held += _rowcount(conn.execute(statement))
    return held


def _quiet_candidates(now: datetime) -> list[ColumnElement[bool]]:
    """The due SMS rows quiet hours may hold, joined to their notification: waiting, not a
    digest's (it carries rows already held), not carried, not urgent."""
    return [
        *_waiting(LOGS, now, True, None),
        LOGS.c.channel == Channel.sms.value,
        LOGS.c.carried_by_id.is_(None),
        NOTES.c.id == LOGS.c.notification_id,
        NOTES.c.priority != Priority.urgent.value,
        NOTES.c.template_name != DIGEST_TEMPLATE,
    ]


def recheck_imported(
    conn: Connection, *, now: datetime, fallback: FallbackPolicy, settings: Settings
) -> Rechecked:
    """What a roster import does at once to every waiting row, due or not: the channels it
    turned off are skipped, then the rest follow their recipients' addresses; the caller
    commits."""
    turned_off = skip_turned_off(conn, now=now)
    return (
        Rechecked(turned_off=turned_off)
        + follow_addresses(conn, now=now, fallback=fallback, settings=settings)
        + Rechecked(rescheduled=follow_quiet_hours(conn, now=now))
    )


def follow_quiet_hours(conn: Connection, *, now: datetime) -> int:
    """The SMS quiet hours still hold (not yet due at `now`) decided again with their
    recipient's current time zone and quiet hours: held to the end of the recipient's window
    now, or due at `now` when it is outside it (`policies.held_sms_again`). A row held by the
    zone and window the recipient still has is left as it is; returns how many moved. The caller
    commits."""
    held = (
        select(
            LOGS.c.id.label("row_id"),
            LOGS.c.next_attempt_at,
            LOGS.c.decision,
            *(PEOPLE.c[name] for name in RECIPIENT_COLUMNS),
        )
        .join_from(LOGS, NOTES, NOTES.c.id == LOGS.c.notification_id)
        .join(PEOPLE, PEOPLE.c.id == NOTES.c.recipient_id)
        .where(
            QUIET_PENDING,
            LOGS.c.channel == Channel.sms.value,
            LOGS.c.next_attempt_at > now,
            LOGS.c.attempts == 0,
            LOGS.c.carried_by_id.is_(None),
        )
    )
    moved: dict[tuple[datetime, str], list[int]] = {}
    for row in conn.execute(held):
        again = held_sms_again(recipient_prefs(row), now, row.decision)
        if again is not None:
            moved.setdefault(again, []).append(row.row_id)
    for (due, decision), ids in moved.items():
        for chunk in lookup_chunks(ids, dialect=conn.dialect.name):
            statement = (
                update(LOGS)
                .where(
                    LOGS.c.id.in_(chunk),
                    QUIET_PENDING,
                    LOGS.c.attempts == 0,
                    LOGS.c.carried_by_id.is_(None),
                )
                .values(next_attempt_at=due, decision=decision)
            )
            conn.execute(statement)
    return sum(len(ids) for ids in moved.values())


def skip_turned_off(
    conn: Connection, *, now: datetime, due_only: bool = False, recipient_id: int | None = None
) -> int:
    """Skip the waiting rows (due at `now` only, with `due_only`) of a channel the recipient has
    turned off; returns how many."""
    off = exists().where(
        NOTES.c.id == LOGS.c.notification_id,
        PEOPLE.c.id == NOTES.c.recipient_id,
        or_(
            and_(LOGS.c.channel == Channel.sms.value, PEOPLE.c.receive_sms.is_(False)),
            and_(LOGS.c.channel == Channel.email.value, PEOPLE.c.receive_email.is_(False)),
        ),
    )
    decision = LOGS.c.channel.concat(literal(f": {TURNED_OFF}"))
    statement = (
        update(LOGS)
        .where(*_waiting(LOGS, now, due_only, recipient_id), LOGS.c.replaces_id.is_(None), off)
        .values(_skip(decision))
    )
    return _rowcount(conn.execute(statement))


def follow_addresses(
    conn: Connection,
    *,
    now: datetime,
    fallback: FallbackPolicy,
    settings: Settings,
    due_only: bool = False,
) -> Rechecked:
    """Every waiting row (due at `now` only, with `due_only`) whose address is not its
    recipient's current one: skipped when the recipient has none for the channel now, else moved
    to it (an SMS priced again for its new number); a moved row a suppression in force stops at
    its new address is then skipped (skip_muted). The caller commits."""
    waiting = _waiting(LOGS, now, due_only, None)
    unaddressed = sum(_skip_unaddressed(conn, channel, waiting) for channel in Channel)
    moved = [row for channel in Channel for row in _move_to_current(conn, channel, waiting)]
    _reprice(conn, moved, settings)
    muted = Rechecked()
    for chunk in lookup_chunks([row.id for row in moved], dialect=conn.dialect.name):
        muted += skip_muted(conn, now=now, fallback=fallback, only=chunk)
    return muted + Rechecked(unaddressed=unaddressed, readdressed=len(moved) - muted.muted)


def skip_muted(
    conn: Connection,
    *,
    now: datetime,
    fallback: FallbackPolicy,
    due_only: bool = False,
    recipient_id: int | None = None,
    only: Sequence[int] | None = None,
) -> Rechecked:
    """Skip the waiting rows (due at `now` only, with `due_only`; of the ids `only`, with it)
    a suppression in force stops, naming it; muted SMS of a whole-number mute get their email
    fallback. The rows of one recipient (`recipient_id`) are matched on its current address
    too. One UPDATE per channel: the row's address is then one column, which the planner joins
    to the suppressions by hash and estimates from its statistics."""
    scoped = recipient_id is not None
    muted: list[int] = []
    sms: list[int] = []
    for channel in Channel:
        queued = LOGS.alias("queued")
        hit = select(queued.c.id).where(
            *_waiting(queued, now, due_only, recipient_id, only),
            _stopping(now, queued, MUTES, channel, scoped),
        )
        stopping = MUTES.alias("stopping")
        newest = (  # evaluated for the rows skipped only
            select(
                literal("#")
                .concat(cast(stopping.c.id, String))
                .concat(": ")
                .concat(stopping.c.reason)
            )
            .where(_stopping(now, LOGS, stopping, channel, scoped))
            .order_by(stopping.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        decision = func.substr(
            literal(f"{channel}: {MUTED} (suppression ").concat(newest).concat(")"),
            1,
            REASON_MAX_CHARS,
        )
        statement = (
            update(LOGS)
            .where(_waiting_status(LOGS), LOGS.c.id.in_(hit))
            .values(_skip(decision))
            .returning(LOGS.c.id)
        )
        ids = list(conn.scalars(statement))
        muted += ids
        if channel is Channel.sms:
            sms = ids
    made = _fallbacks(conn, sms, now=now, policy=fallback, scoped=scoped) if sms else 0
    return Rechecked(muted=len(muted), fallbacks=made)


def _waiting(
    logs: FromClause,
    now: datetime | None,
    due_only: bool,
    recipient_id: int | None,
    only: Sequence[int] | None = None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [_waiting_status(logs)]
    if due_only and now is not None:
        conditions.append(logs.c.next_attempt_at <= now)
    if recipient_id is not None:  # its notifications (their index), then their rows
        own = select(NOTES.c.id).where(NOTES.c.recipient_id == recipient_id)
        conditions.append(logs.c.notification_id.in_(own))
    if only is not None:
        conditions.append(logs.c.id.in_(only))
    return conditions


def _waiting_status(logs: FromClause) -> ColumnElement[bool]:
    """The waiting statuses as SQL literals, as the partial due index declares them (with bound
    parameters SQLite's planner cannot prove the index applies)."""
    return logs.c.status.in_([literal_column(f"'{status}'") for status in DUE_STATUSES])


def _stopping(
    now: datetime, logs: FromClause, mutes: FromClause, channel: Channel, recipient_too: bool
) -> ColumnElement[bool]:
    """A suppression (of `mutes`) in force stops a row of `logs` on `channel`: matched on the
    address the row goes to, and with `recipient_too` on the recipient's current address as
    well (the rows of one recipient)."""
    sms = channel is Channel.sms
    addresses = [logs.c.recipient_phone if sms else logs.c.recipient_email]
    joined = [logs.c.channel == channel.value, NOTES.c.id == logs.c.notification_id]
    if recipient_too:
        addresses.append(PEOPLE.c.phone if sms else PEOPLE.c.email)
        joined.append(PEOPLE.c.id == NOTES.c.recipient_id)
    return and_(
        *joined,
        suppression_stops(
            addresses=addresses, channel=channel.value, title=NOTES.c.title, now=now, table=mutes
        ),
    )


def _addresses(channel: Channel) -> tuple[Column[Any], Column[Any], str]:
    """The row's address on `channel`, the recipient's, and what it is called."""
    if channel is Channel.sms:
        return LOGS.c.recipient_phone, PEOPLE.c.phone, "phone number"
    return LOGS.c.recipient_email, PEOPLE.c.email, "email address"


def _skip_unaddressed(
    conn: Connection, channel: Channel, waiting: Sequence[ColumnElement[bool]]
) -> int:
    """Skip the `waiting` rows on `channel` whose recipient has no address for it now."""
    _, current, called = _addresses(channel)
    gone = exists().where(
        NOTES.c.id == LOGS.c.notification_id,
        PEOPLE.c.id == NOTES.c.recipient_id,
        current.is_(None),
    )
    decision = literal(f"{channel}: {called} {ADDRESS_REMOVED}")
    statement = (
        update(LOGS).where(*waiting, LOGS.c.channel == channel.value, gone).values(_skip(decision))
    )
    return _rowcount(conn.execute(statement))


def _move_to_current(
    conn: Connection, channel: Channel, waiting: Sequence[ColumnElement[bool]]
) -> list[Row[Any]]:
    """Move the `waiting` rows on `channel` to their recipient's current address where it is
    another; returns the moved rows (id, segments, cost, the new address)."""
    address, current, _ = _addresses(channel)
    statement = (
        update(LOGS)
        .where(
            *waiting,
            LOGS.c.channel == channel.value,
            NOTES.c.id == LOGS.c.notification_id,
            PEOPLE.c.id == NOTES.c.recipient_id,
            current.is_not(None),
            address.is_distinct_from(current),
        )
        .values({address.name: current})
        .returning(LOGS.c.id, LOGS.c.segments, LOGS.c.cost, address.label("address"))
    )
    return list(conn.execute(statement))


def _reprice(conn: Connection, moved: Sequence[Row[Any]], settings: Settings) -> None:
    """The moved SMS rows' estimated cost at their new number's price (`cost` is set on an SMS
    row only, with its parts)."""
    changed = []
    for row in moved:
        if row.cost is None or row.segments is None:
            continue
        cost = parts_cost(
            row.segments, row.address, prices=settings.sms_prices, default=settings.sms_price_usd
        )
        if cost != row.cost:
            changed.append({"row_id": row.id, "new_cost": cost})
    if changed:
        statement = update(LOGS).where(LOGS.c.id == bindparam("row_id"))
        conn.execute(statement.values(cost=bindparam("new_cost")), changed)


def _skip(decision: ColumnElement[Any]) -> dict[str, Any]:
    return {
        "status": Status.skipped.value,
        "decision": decision,
        "next_attempt_at": None,
        "cost": None,  # as enqueue stores a skipped row: nothing will be spent
    }


def _fallbacks(
    conn: Connection,
    sms_ids: Sequence[int],
    *,
    now: datetime,
    policy: FallbackPolicy,
    scoped: bool,
) -> int:
    """Email fallbacks for the muted SMS among `sms_ids` whose number is muted as a whole (not
    a digest's)."""
    muted: dict[int, str] = {}
    for chunk in lookup_chunks(sms_ids, dialect=conn.dialect.name):
        query = (
            select(LOGS.c.id)
            .join_from(LOGS, NOTES, NOTES.c.id == LOGS.c.notification_id)
            .where(
                LOGS.c.id.in_(chunk),
                NOTES.c.template_name != DIGEST_TEMPLATE,
                exists().where(
                    _stopping(now, LOGS, MUTES, Channel.sms, scoped), whole_number_mute()
                ),
            )
        )
        muted.update((row_id, MUTED_FALLBACK_WHY) for row_id in conn.scalars(query))
    if not muted:
        return 0
    return len(make_fallbacks(conn, muted, status=Status.skipped, policy=policy, now=now))


def _rowcount(result: Any) -> int:
    return max(result.rowcount or 0, 0) if isinstance(result, CursorResult) else 0
