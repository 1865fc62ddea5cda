"""Loop detection (runbook section 2, step 3): the same title to the same recipient on the same
channel more than `loop_threshold` times in the window (skipped rows do not count, except those
the loop guard refused: the source still repeats, and the guard stops it from ever sending more
than the threshold, so without them no loop would ever show), with the
template and the flow run / deployment / request that created the latest one; and `mute_loops`,
which adds a time-limited SMS suppression for the recipient's phone and that title.

Candidates come from `audit_loop_rows` (folded rows that repeat within rollups.LOOP_SPAN, by
exact created_at) plus the rows not folded yet, then are counted exactly; windows longer than
MAX_ROLLUP_WINDOW fall back to grouping the window's notifications.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, func, or_, select, tuple_, union_all
from sqlalchemy.orm import Session

from notify.audits.common import Report, Window, header, resolve_window
from notify.audits.rollups import LOOP_SPAN, ROLLUPS, RollupPolicy, View, open_view
from notify.audits.sql import any_channel
from notify.db import (
    Channel,
    DeliveryLog,
    LoopRow,
    Notification,
    Recipient,
    Status,
    Suppression,
    SuppressionSource,
)
from notify.masking import mask_address, mask_phone
from notify.policies import LOOP_GUARD
from notify.settings import Settings
from notify.severity import Facts, assess

REASON_MAX_CHARS = 300
CANDIDATES_PER_QUERY = 500
ENQUEUE_SKEW = timedelta(hours=1)  # notifications looked at this much before the window
MAX_ROLLUP_WINDOW = LOOP_SPAN - timedelta(hours=1)  # longer windows find candidates by a scan


class Loop(BaseModel):
    model_config = ConfigDict(frozen=True)

    recipient: str  # external_id
    channel: str
    title: str
    count: int
    first_seen: datetime
    last_seen: datetime
    template_name: str  # of the latest row
    flow_run_id: str | None  # attribution of the latest row
    deployment_name: str | None
    request_id: str | None
    address_masked: str | None  # the channel's address of the latest row, masked


class MutedLoop(BaseModel):
    model_config = ConfigDict(frozen=True)

    recipient: str
    title: str
    channel: str  # always sms
    phone_masked: str | None
    until: datetime | None  # when the mute ends (None: no end)
    created: bool  # False: an identical suppression was already active (its own `until`)


class LoopReport(Report):
    threshold: int
    auto_mute: bool
    loops: tuple[Loop, ...]
    muted: tuple[MutedLoop, ...] = ()

    def with_muted(self, muted: Iterable[MutedLoop]) -> LoopReport:
        return self.model_copy(update={"muted": tuple(muted)})


def loop_detection(
    *,
    session: Session,
    as_of: datetime,
    window: timedelta,
    settings: Settings,
    rollups: RollupPolicy = ROLLUPS,
) -> LoopReport:
    """(recipient, channel, title) with more than settings.loop_threshold rows in the window."""
    w = resolve_window(as_of, window)
    groups = _groups(session, w, settings.loop_threshold, open_view(session, rollups))
    latest = _latest_rows(session, [g.latest_id for g in groups])
    loops = tuple(_loop(g, latest[g.latest_id]) for g in groups)
    breaches = [f"loop: {x.count} x '{x.title}' to {x.recipient} by {x.channel}" for x in loops]
    return LoopReport(
        threshold=settings.loop_threshold,
        auto_mute=settings.loop_auto_mute,
        loops=loops,
        **header(w, assess(Facts(loops=len(loops))), breaches),
    )


class _Group(BaseModel):
    channel: str
    title: str
    count: int
    first_seen: datetime
    last_seen: datetime
    latest_id: int


def _groups(session: Session, w: Window, threshold: int, view: View) -> list[_Group]:
    """Two steps: candidate (recipient, title) pairs (from the repeating rows the rollups keep,
    or from `notifications` alone without them), then exact per-channel counts of non-skipped
    delivery rows for those pairs only."""
    if view.use and w.end - w.start <= MAX_ROLLUP_WINDOW:
        candidates = _repeating(session, w, threshold, view)
    else:
        candidates = _candidates(session, w, threshold)
    groups = [
        group
        for start in range(0, len(candidates), CANDIDATES_PER_QUERY)
        for group in _counted(
            session, w, threshold, candidates[start : start + CANDIDATES_PER_QUERY]
        )
    ]
    return sorted(groups, key=lambda g: (-g.count, g.title, g.channel, g.latest_id))


def _candidates(session: Session, w: Window, threshold: int) -> list[tuple[int, str]]:
    """(recipient_id, title) with more than `threshold` notifications around the window: a
    superset of the loops, as a delivery row is created with its notification (one `now`)."""
    n = Notification
    query = (
        select(n.recipient_id, n.title)
        .where(n.created_at > w.start - ENQUEUE_SKEW, n.created_at <= w.end)
        .group_by(n.recipient_id, n.title)
        .having(func.count() > threshold)
    )
    return [(rid, title) for rid, title in session.execute(query)]


def _repeating(session: Session, w: Window, threshold: int, view: View) -> list[tuple[int, str]]:
    """(recipient_id, title) with at least `threshold` non-skipped rows on one channel among the
    window's folded repeating rows (`audit_loop_rows`, by exact created_at) and its rows not
    folded yet. Two folded rows of a pair in the window are within LOOP_SPAN of each other, so
    both are kept: at most one row of a loop is missing here, hence `>=` rather than `>`. The
    candidates are then counted exactly."""
    dl, n, lr = DeliveryLog, Notification, LoopRow
    pair = (n.recipient_id, n.title, dl.channel)
    in_window = (any_channel(), _attempted())
    folded = select(*pair).select_from(lr).join(dl, dl.id == lr.id)
    folded = folded.join(n, n.id == dl.notification_id).where(*in_window)
    folded = folded.where(lr.created_at > w.start, lr.created_at <= w.end)
    live = select(*pair).join(n, n.id == dl.notification_id).where(*in_window)
    live = live.where(dl.id > view.through_id, dl.created_at > w.start, dl.created_at <= w.end)
    rows = union_all(folded, live).subquery()
    query = (
        select(rows.c.recipient_id, rows.c.title)
        .group_by(rows.c.recipient_id, rows.c.title, rows.c.channel)
        .having(func.count() >= threshold)
    )
    return sorted({(rid, title) for rid, title in session.execute(query)})


def _counted(
    session: Session, w: Window, threshold: int, pairs: list[tuple[int, str]]
) -> list[_Group]:
    dl, n = DeliveryLog, Notification
    count = func.count(dl.id)
    query = (
        select(dl.channel, n.title, count, func.min(dl.created_at), func.max(dl.created_at))
        .add_columns(func.max(dl.id))
        .join(n, n.id == dl.notification_id)
        .where(tuple_(n.recipient_id, n.title).in_(pairs))
        .where(any_channel(), dl.created_at > w.start, dl.created_at <= w.end)
        .where(_attempted())
        .group_by(n.recipient_id, dl.channel, n.title)
        .having(count > threshold)
    )
    names = ("channel", "title", "count", "first_seen", "last_seen", "latest_id")
    return [_Group(**dict(zip(names, row, strict=True))) for row in session.execute(query)]


def _attempted() -> ColumnElement[bool]:
    """A row that counts towards a loop: not skipped, or skipped by the loop guard."""
    dl = DeliveryLog
    guarded = dl.decision.like(f"%: {LOOP_GUARD}%")
    return or_(dl.status != Status.skipped.value, guarded)


def _latest_rows(session: Session, ids: Sequence[int]) -> dict[int, Any]:
    if not ids:
        return {}
    dl, n, r = DeliveryLog, Notification, Recipient
    query = (
        select(dl.id, r.external_id, n.template_name, n.flow_run_id, n.deployment_name)
        .add_columns(n.request_id, dl.recipient_email, dl.recipient_phone, r.email, r.phone)
        .join(n, n.id == dl.notification_id)
        .join(r, r.id == n.recipient_id)
        .where(dl.id.in_(ids))
    )
    return {row.id: row for row in session.execute(query)}


def _loop(group: _Group, row: Any) -> Loop:
    is_sms = group.channel == Channel.sms.value
    address = (row.recipient_phone or row.phone) if is_sms else (row.recipient_email or row.email)
    return Loop(
        recipient=row.external_id,
        template_name=row.template_name,
        flow_run_id=row.flow_run_id,
        deployment_name=row.deployment_name,
        request_id=row.request_id,
        address_masked=mask_address(address),
        **group.model_dump(exclude={"latest_id"}),
    )


def mute_loops(
    *,
    session: Session,
    loops: Iterable[Loop],
    now: datetime,
    hours: int,
    reason: str | None = None,
) -> list[MutedLoop]:
    """An SMS suppression (recipient's phone, loop title, until now + hours) per SMS loop: the mute
    stops what a loop costs. An email-only loop gets none (muting the recipient's SMS would not
    stop it; the loop guard holds its repeats back at enqueue, NOTIFY_LOOP_THRESHOLD a day);
    recipients without a phone are skipped. A loop already dealt with is left alone: a
    suppression for that phone and title is active (listed with created=False and that
    suppression's own end), or ended (expired or lifted by an operator) after the loop's latest
    message (not listed: nothing mutes it now), so only messages that came after a mute ended
    mute the loop again.
    """
    until = now + timedelta(hours=hours)
    sms = Channel.sms.value
    unique = {(loop.recipient, loop.title): loop for loop in loops if loop.channel == sms}
    phones = _phones(session, [recipient for recipient, _ in unique])
    muted = (
        _mute(session, loop, phone, now, until, reason)
        for (recipient, _), loop in unique.items()
        if (phone := phones.get(recipient))
    )
    return [m for m in muted if m is not None]


def _phones(session: Session, external_ids: list[str]) -> dict[str, str | None]:
    if not external_ids:
        return {}
    query = select(Recipient.external_id, Recipient.phone).where(
        Recipient.external_id.in_(external_ids)
    )
    return {ext: phone for ext, phone in session.execute(query)}


def _mute(
    session: Session, loop: Loop, phone: str, now: datetime, until: datetime, reason: str | None
) -> MutedLoop | None:
    """Insert the suppression unless one for this phone and title dealt with the loop: an active
    one is the loop's mute (created=False, with its own end); one that ended after the loop's
    last message (lifted or expired) mutes nothing now, so the loop is not listed as muted."""
    text = reason or f"auto-muted loop: {loop.count} x by {loop.channel} (loop detection)"
    dealt = _dealt_with(session, phone, loop.title, loop.last_seen, now)
    if dealt is not None:
        active, ends = dealt
        if not active:
            return None
        return _muted(loop, phone, ends, created=False)
    sms = Channel.sms.value
    session.add(
        Suppression(
            address=phone,
            channel=sms,
            title=loop.title,
            until=until,
            created_at=now,
            reason=text[:REASON_MAX_CHARS],
            source=SuppressionSource.loop.value,
        )
    )
    session.flush()
    return _muted(loop, phone, until, created=True)


def _muted(loop: Loop, phone: str, until: datetime | None, *, created: bool) -> MutedLoop:
    return MutedLoop(
        recipient=loop.recipient,
        title=loop.title,
        channel=Channel.sms.value,
        phone_masked=mask_phone(phone),
        until=until,
        created=created,
    )


def _dealt_with(
    session: Session, phone: str, title: str, last_seen: datetime, now: datetime
) -> tuple[bool, datetime | None] | None:
    """(active, until) of a suppression for this phone and title that is active, or else of one
    that ended after the loop's last message; None when there is neither."""
    s = Suppression
    active = or_(s.until.is_(None), s.until > now)
    query = (
        select(active, s.until)
        .where(
            s.address == phone,
            s.channel == Channel.sms.value,
            s.title == title,
            or_(active, s.until >= last_seen),
        )
        .order_by(active.desc(), s.id.desc())
    )
    row = session.execute(query.limit(1)).first()
    return None if row is None else (bool(row[0]), row[1])
