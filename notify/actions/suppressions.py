"""Mute, unmute and list suppressions (runbook section 2, "Temporarily disable SMS for affected
users"): the same `suppressions` records loop detection's automatic mute writes, which the
enqueue policy already honours (a suppressed channel is skipped: "phone number suppressed").

A mute suppresses a recipient's current address on one channel (all titles, or one title like a
loop mute) until a time; muting again while an equal or longer mute is active adds nothing. The
rows already queued that the mute stops (the recipient's, and those of every recipient sharing the
address) are skipped at once, in the same transaction
(notify.recheck: `sms: muted after it was queued (suppression #N: ...)`, with the email fallback
enqueue gives a muted SMS), and the result says how many: a delivery run already under way claims
no row after the mute returns, and the operator sees what the mute stopped. Rows already handed to
a provider (`sending`) cannot be called back.
Unmuting ends the active suppressions of that address and channel now (their `until` becomes
now and the reason says who lifted them); nothing is deleted. Both leave an operator action.

A suppression is of an address, not of a recipient (SNS opt-outs, bounces and the enqueue policy
all go by the number or address), so recipients sharing a phone number or an email address share
its mutes: muting one mutes the others, unmuting one unmutes the others. The results say so:
each suppression's `recipients` names everyone whose current address it is, and `also_muted` /
`also_unmuted` the ones besides the recipient asked for.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from notify.actions.audit_trail import Actor, record_action
from notify.conditions import suppression_active
from notify.db import Channel, Recipient, Suppression, SuppressionSource
from notify.errors import InputError
from notify.fallback import FallbackPolicy
from notify.forms import empty_is_none
from notify.masking import mask_address
from notify.recheck import Rechecked, skip_muted

REASON_MAX_CHARS = 300
LIST_LIMIT = 200


class MuteRequest(BaseModel):
    """Stop one channel for one recipient for a while (a key it does not know is refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recipient: str = Field(
        ..., min_length=1, max_length=128, description="External id, e.g. technician:123"
    )
    channel: Channel = Field(..., description="email or sms")
    hours: float = Field(24.0, gt=0, le=24 * 366, description="How long the mute lasts")
    reason: str = Field(..., min_length=1, max_length=200, description="Why (kept with the mute)")
    title: str | None = Field(
        None, max_length=300, description="Only notifications with this title (like a loop mute)"
    )

    @field_validator("title", mode="before")
    @classmethod
    def _empty_is_every_title(cls, value: Any) -> Any:
        """A form's title left empty sends "": every title, not a title no notification has
        (such a mute said it muted the channel and stopped nothing)."""
        return empty_is_none(value)

    @field_validator("reason", mode="before")
    @classmethod
    def _a_reason_said(cls, value: Any) -> Any:
        """A mute needs its reason (the command's --reason is required): one of spaces only was
        stored as `    (muted by ...)`, saying nothing. Spaces around it are dropped."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            raise ValueError("empty or only spaces: say why the channel is muted")
        return value.strip()


class UnmuteRequest(BaseModel):
    """End the active mutes of one recipient (a key it does not know is refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recipient: str = Field(
        ..., min_length=1, max_length=128, description="External id, e.g. technician:123"
    )
    channel: Channel | None = Field(None, description="email or sms (empty: both)")
    title: str | None = Field(None, max_length=300, description="Only the mute of this title")
    reason: str = Field("", max_length=200, description="Why (added to each lifted mute)")

    @field_validator("title", mode="before")
    @classmethod
    def _empty_is_every_title(cls, value: Any) -> Any:
        """A form's title left empty sends "": the mutes of every title (it lifted none)."""
        return empty_is_none(value)

    @field_validator("reason", mode="before")
    @classmethod
    def _spaces_are_no_reason(cls, value: Any) -> Any:
        """A reason of spaces only is none, as one left out (each lifted mute's reason got
        `(    )`); spaces around a reason are dropped."""
        return value.strip() if isinstance(value, str) else value


class SuppressionView(BaseModel):
    """A suppression as `suppressions list` shows it (address masked)."""

    model_config = ConfigDict(frozen=True)

    id: int | None  # None: a dry run's mute, not stored
    recipients: list[str]  # external ids whose current address it is
    channel: str
    address_masked: str | None
    title: str | None
    reason: str
    until: datetime | None
    created_at: datetime
    active: bool
    source: str  # who made it: operator, loop (a loop mute) or provider (bounce, opt-out, ...)


class MuteResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    action_id: int
    actor: str
    applied: bool
    created: bool  # (would be) added; False: an equal or longer mute was already active
    suppression: SuppressionView
    also_muted: list[str]  # other recipients with the same address: the mute stops them too
    # queued rows skipped now, the recipient's and the also-muted ones' (a dry run: would be)
    queued_skipped: int = 0
    fallbacks: int = 0  # email rows made for muted SMS (notify.fallback)


class UnmuteResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    action_id: int
    actor: str
    applied: bool
    lifted: list[SuppressionView]  # (would be) lifted
    also_unmuted: list[str]  # other recipients with a lifted mute's address: lifted for them too


def mute(
    *,
    session: Session,
    request: MuteRequest,
    now: datetime,
    actor: Actor,
    fallback: FallbackPolicy,
    apply: bool = True,
) -> MuteResult:
    """Add the suppression and skip the queued rows it stops, the recipient's and those of the
    recipients sharing the address (without `apply`: say what would be added, how many queued
    rows it would skip and how many email fallbacks it would make, all done in a savepoint that
    is rolled back). `fallback`: which templates let a muted SMS fall back to email."""
    recipient = _recipient(session, request.recipient)
    address = _address(recipient, request.channel)
    until = now + timedelta(hours=request.hours)
    existing = _covering(session, address, request.channel, request.title, now, until)
    row = existing or _new(request, recipient.external_id, address, now, until, actor)
    if existing is None and apply:
        session.add(row)
        session.flush()
    conn = session.connection()
    # everyone whose current address it is: their rows queued to it stop as the recipient's do
    stopped = _holders(session, address, first=recipient.id)
    # a dry run mutes and skips in a savepoint it rolls back: it counts what the mute would do,
    # the email fallbacks of muted SMS included
    trial = None if apply else session.begin_nested()
    if trial is not None and existing is None:
        session.add(_new(request, recipient.external_id, address, now, until, actor))
        session.flush()
    done = Rechecked()
    for holder in stopped:
        done += skip_muted(conn, now=now, fallback=fallback, recipient_id=holder)
    if trial is not None:
        trial.rollback()
    skipped, fallbacks = done.muted, done.fallbacks
    record = record_action(
        session=session,
        actor=actor,
        action="mute",
        now=now,
        applied=apply,
        filters=request.model_dump(mode="json", exclude_none=True),
        counts={
            "suppression_id": row.id,
            "created": existing is None,
            "until": until.isoformat(),
            "queued_skipped": skipped,
            "fallbacks": fallbacks,
        },
    )
    sharing = _owners(session, {address}).get(address, [recipient.external_id])
    return MuteResult(
        action_id=record.id,
        actor=actor.describe(),
        applied=apply,
        created=existing is None,
        suppression=_view(row, sharing, now),
        also_muted=[other for other in sharing if other != recipient.external_id],
        queued_skipped=skipped,
        fallbacks=fallbacks,
    )


def unmute(
    *, session: Session, request: UnmuteRequest, now: datetime, actor: Actor, apply: bool = True
) -> UnmuteResult:
    """End the active suppressions the request names (without `apply`: list them)."""
    recipient = _recipient(session, request.recipient)
    channels = [request.channel] if request.channel else list(Channel)
    rows = [
        row
        for channel in channels
        if (address := _address_or_none(recipient, channel))
        for row in _active(session, address, channel, request.title, now)
    ]
    note = f"; unmuted by {actor.name} at {now:%Y-%m-%d %H:%M} UTC"
    if request.reason:
        note += f" ({request.reason})"
    previous = {row.id: row.until for row in rows}
    if apply:
        for row in rows:
            row.until = now
            row.reason = (row.reason + note)[:REASON_MAX_CHARS]
        session.flush()
    record = record_action(
        session=session,
        actor=actor,
        action="unmute",
        now=now,
        applied=apply,
        filters=request.model_dump(mode="json", exclude_none=True),
        counts={
            "lifted": len(rows),
            "previous_until": {str(k): v.isoformat() if v else None for k, v in previous.items()},
        },
    )
    owners = _owners(session, {row.address for row in rows})
    views = [_view(row, owners.get(row.address, [recipient.external_id]), now) for row in rows]
    sharing = {other for view in views for other in view.recipients}
    others = sorted(sharing - {recipient.external_id})
    return UnmuteResult(
        action_id=record.id,
        actor=actor.describe(),
        applied=apply,
        lifted=views,
        also_unmuted=others,
    )


def list_suppressions(
    *,
    session: Session,
    now: datetime,
    recipient: str | None = None,
    channel: Channel | None = None,
    include_expired: bool = False,
    limit: int = LIST_LIMIT,
) -> list[SuppressionView]:
    """Suppressions, newest first: active ones unless `include_expired`."""
    s = Suppression
    query = select(s).order_by(s.id.desc()).limit(limit)
    if not include_expired:
        query = query.where(_is_active(now))
    if channel:
        query = query.where(s.channel == channel.value)
    if recipient:
        found = _recipient(session, recipient)
        addresses = [a for a in (found.email, found.phone) if a]
        query = query.where(s.address.in_(addresses))
    rows = list(session.scalars(query))
    owners = _owners(session, {row.address for row in rows})
    return [_view(row, owners.get(row.address, []), now) for row in rows]


def _recipient(session: Session, external_id: str) -> Recipient:
    found = session.scalar(select(Recipient).where(Recipient.external_id == external_id))
    if found is None:
        raise InputError(
            f"recipient {external_id!r} is not known (see `notifyops recipients list`)"
        )
    return found


def _address_or_none(recipient: Recipient, channel: Channel) -> str | None:
    return recipient.phone if channel is Channel.sms else recipient.email


def _address(recipient: Recipient, channel: Channel) -> str:
    address = _address_or_none(recipient, channel)
    if not address:
        what = "phone number" if channel is Channel.sms else "email address"
        raise InputError(f"recipient {recipient.external_id!r} has no {what}: nothing to mute")
    return address


def _is_active(now: datetime) -> ColumnElement[bool]:
    return suppression_active(now)


def _active(
    session: Session, address: str, channel: Channel, title: str | None, now: datetime
) -> list[Suppression]:
    s = Suppression
    query = select(s).where(s.address == address, s.channel == channel.value, _is_active(now))
    if title is not None:
        query = query.where(s.title == title)
    return list(session.scalars(query.order_by(s.id)))


def _covering(
    session: Session,
    address: str,
    channel: Channel,
    title: str | None,
    now: datetime,
    until: datetime,
) -> Suppression | None:
    """An active mute of this address, channel and title lasting at least until `until`."""
    for row in _active(session, address, channel, None, now):
        if row.title == title and (row.until is None or row.until >= until):
            return row
    return None


def _new(
    request: MuteRequest,
    external_id: str,
    address: str,
    now: datetime,
    until: datetime,
    actor: Actor,
) -> Suppression:
    """The reason names whom the mute was made for: others sharing the address see it too."""
    reason = f"{request.reason} (muted by {actor.name} for {external_id})"
    return Suppression(
        address=address,
        channel=request.channel.value,
        title=request.title,
        reason=reason[:REASON_MAX_CHARS],
        until=until,
        created_at=now,
        source=SuppressionSource.operator.value,
    )


def _holders(session: Session, address: str, *, first: int) -> list[int]:
    """The ids of the recipients whose current email address or phone number is `address`,
    `first` first."""
    r = Recipient
    query = select(r.id).where(or_(r.email == address, r.phone == address), r.id != first)
    return [first, *sorted(session.scalars(query))]


def _owners(session: Session, addresses: set[str]) -> dict[str, list[str]]:
    if not addresses:
        return {}
    r = Recipient
    query = select(r.external_id, r.email, r.phone).where(
        or_(r.email.in_(addresses), r.phone.in_(addresses))
    )
    owners: dict[str, list[str]] = {}
    for external_id, email, phone in session.execute(query.order_by(r.external_id)):
        for address in {email, phone} & addresses:
            owners.setdefault(str(address), []).append(external_id)
    return owners


def _view(row: Suppression, recipients: list[str], now: datetime) -> SuppressionView:
    return SuppressionView(
        id=row.id,
        recipients=recipients,
        channel=row.channel,
        address_masked=mask_address(row.address),
        title=row.title,
        reason=row.reason,
        until=row.until,
        created_at=row.created_at,
        active=row.until is None or row.until > now,
        source=row.source,
    )
