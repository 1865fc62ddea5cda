"""Pure delivery rules: channel choice, quiet hours, SMS cap, loop guard, retry schedule.

Values in, values out: no database, no I/O, no clock reads (the caller passes `now`), no Prefect.
Every decision carries a human-readable `reason` that is stored in `delivery_logs.decision`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notify.db import Channel, Status
from notify.money import usd
from notify.pricing import sms_size_problem
from notify.settings import Priority

REASON_MAX_CHARS = 300
TITLE_MAX_CHARS = 80
_MAX_EXPONENT = 64  # 2**64 * any sane base is far past any cap; keeps the float finite
_SYSTEM_RNG = random.Random()
# How a quiet-hours deferral reads (`sms: deferred to 07:00 America/Chicago (quiet hours
# 22:00-07:00)`): notify.digest finds the rows to gather by these two pieces (QUIET_HOURS_LIKE),
# and no other decision contains both.
DEFERRED_TO = "deferred to "
QUIET_HOURS = "(quiet hours "
QUIET_HOURS_LIKE = f"%: {DEFERRED_TO}% {QUIET_HOURS}%"


class Action(StrEnum):
    send = "send"
    defer = "defer"
    skip = "skip"


@dataclass(frozen=True)
class RecipientPrefs:
    external_id: str
    email: str | None  # already validated syntax or None
    phone: str | None  # E.164 or None
    timezone: str  # IANA
    receive_email: bool
    receive_sms: bool
    quiet_hours_start: time | None
    quiet_hours_end: time | None


@dataclass(frozen=True)
class SendConditions:
    """What the caller knows at enqueue time."""

    priority: Priority
    title: str
    now: datetime  # aware UTC
    sms_min_priority: Priority
    sms_spent_today_usd: Decimal  # spend so far today, incl. rows already decided in this batch
    sms_daily_cap_usd: Decimal
    sms_estimated_cost_usd: Decimal  # this message's SMS estimate
    loop_threshold: int
    recent_sent: Mapping[Channel, int]  # same title and recipient, per channel, last 24 h
    suppressed: frozenset[Channel]  # channels with an active suppression for this address/title
    # why SNS would refuse this recipient's SMS text (empty: SMS_EMPTY; too long: its size,
    # notify.pricing), or None: a part never sent is never counted in the estimate
    sms_refused: str | None = None
    # why the email would reach its reader empty (EMAIL_EMPTY), or None
    email_refused: str | None = None


@dataclass(frozen=True)
class ChannelDecision:
    channel: Channel
    action: Action
    reason: str  # stored in delivery_logs.decision, at most REASON_MAX_CHARS
    not_before: datetime | None = None  # aware UTC, set for defer


def decide_channels(
    prefs: RecipientPrefs, cond: SendConditions
) -> tuple[ChannelDecision, ChannelDecision]:
    """One decision per channel, (email, sms).

    email, first failing check wins: preference off -> no address -> suppression -> loop guard;
    otherwise send (no quiet hours for email).
    sms, first failing check wins: preference off / no phone -> suppression -> priority below
    `sms_min_priority` -> text empty or over SNS's size -> loop guard -> daily cap -> quiet hours.
    Over the cap, sms is skipped and email (if it is sent anyway) says it is also the fallback; an
    email opt-out, suppression or loop guard is never overridden, the sms reason then says no
    fallback was possible. In quiet hours sms is deferred to the window's end, except urgent,
    which is sent and says so.
    """
    email = _decision(Channel.email, _email_skip_reason(prefs, cond))
    sms_skip = _sms_skip_reason(prefs, cond)
    if sms_skip is not None:
        return email, _skip(Channel.sms, sms_skip)
    if cond.sms_spent_today_usd + cond.sms_estimated_cost_usd > cond.sms_daily_cap_usd:
        return _cap_fallback(email, cond)
    return email, _sms_timing(prefs, cond)


def in_quiet_hours(local: time, start: time | None, end: time | None) -> bool:
    """Whether local wall time is inside [start, end); windows may wrap midnight.

    A missing bound or start == end means no quiet hours.
    """
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(now: datetime, tz: str, start: time, end: time) -> datetime | None:
    """Aware UTC end of the quiet window `now` is in, or None when not in one.

    The end is the first instant whose local wall time in `tz` reaches `end`, so it is right on
    DST nights: an end time skipped by spring-forward maps to the moment of the change, an end
    time repeated by fall-back maps to its first occurrence still ahead of `now`. An unknown `tz`
    counts as UTC.
    """
    zone, now_utc = _zone(tz), _as_utc(now)
    local = now_utc.astimezone(zone)
    if not in_quiet_hours(local.time(), start, end):
        return None
    day: date = local.date()
    if start > end and local.time() >= start:
        # Past today's end, unless a fall-back repeats it still ahead: 23:30-23:00 when the
        # clocks go back from 24:00 to 23:00 ends at the change, not at tomorrow's 23:00.
        again = datetime.combine(day, end).replace(tzinfo=zone, fold=1).astimezone(UTC)
        if again > now_utc:
            return again
        day += timedelta(days=1)
    wall = datetime.combine(day, end)
    until = _first_instant_at(wall, zone)
    if until <= now_utc:  # in the repeated hour after fall-back: the end's second occurrence
        until = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return until


def retry_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    jitter: float,
    rng: random.Random | None = None,
) -> timedelta:
    """base_s * 2**(attempt-1), capped at max_s, times (1 + jitter * u) with u uniform in [-1, 1].

    `attempt` counts from 1 (smaller values count as 1). Pass `rng` (e.g. `random.Random(7)`) for
    a reproducible delay; without it a module-level generator is used. Never negative.
    """
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    capped = min(base_s * 2.0**exponent, max_s)
    u = (rng or _SYSTEM_RNG).uniform(-1.0, 1.0)
    return timedelta(seconds=max(capped * (1.0 + jitter * u), 0.0))


def next_status_after_failure(error_class: str, attempts: int, max_attempts: int) -> Status:
    """The delivery_logs status after a failed send (a `Status`, which is a str).

    permanent -> failed_permanent; maybe_sent -> unknown (the provider may have the message: never
    retried automatically); quota and config -> pending_retry (config stops the batch, the
    message is not the culprit); transient (and any unknown class) -> pending_retry until
    attempts >= max_attempts, then failed. (The deliverer does not count an attempt for a
    failure on the provider's side, so a provider outage never exhausts attempts.)
    """
    kind = str(error_class).lower()
    if kind == "permanent":
        return Status.failed_permanent
    if kind == "maybe_sent":
        return Status.unknown
    if kind in ("quota", "config"):
        return Status.pending_retry
    return Status.failed if attempts >= max_attempts else Status.pending_retry


# --- decisions ---------------------------------------------------------------------------


def _email_skip_reason(prefs: RecipientPrefs, cond: SendConditions) -> str | None:
    if not prefs.receive_email:
        return "off in preferences"
    if not prefs.email:
        return "no email address"
    if Channel.email in cond.suppressed:
        return "address suppressed"
    if cond.email_refused:
        return cond.email_refused
    return _loop_reason(Channel.email, cond)


def _sms_skip_reason(prefs: RecipientPrefs, cond: SendConditions) -> str | None:
    if not prefs.receive_sms:
        return "off in preferences"
    if not prefs.phone:
        return "no phone number"
    if Channel.sms in cond.suppressed:
        return "phone number suppressed"
    if cond.priority.rank < cond.sms_min_priority.rank:
        return f"priority {cond.priority} below SMS minimum {cond.sms_min_priority}"
    if cond.sms_refused:  # SNS would refuse the text at send time
        return cond.sms_refused
    return _loop_reason(Channel.sms, cond)


SMS_EMPTY = "the template's SMS text is empty for this context"


def sms_refusal(text: str) -> str | None:
    """Why SNS would refuse this SMS text: empty (SMS_EMPTY), or over its size
    (notify.pricing.sms_size_problem); None when it takes it."""
    return SMS_EMPTY if not text.strip() else sms_size_problem(text)


EMAIL_EMPTY = "the template's email subject and text are empty for this context"


def email_is_empty(subject: str, text: str) -> bool:
    """No subject and no text body: the reader would get an empty email (the HTML part says
    what the text says, in a layout)."""
    return not subject.strip() and not text.strip()


LOOP_GUARD = "loop guard: "  # how a decision the loop guard made begins, after the channel


def _loop_reason(channel: Channel, cond: SendConditions) -> str | None:
    count = cond.recent_sent.get(channel, 0)
    if count < cond.loop_threshold:
        return None
    title = _shorten(cond.title, TITLE_MAX_CHARS)
    return f"{LOOP_GUARD}{count} of '{title}' to this recipient by {channel} in 24 h"


def _cap_fallback(
    email: ChannelDecision, cond: SendConditions
) -> tuple[ChannelDecision, ChannelDecision]:
    cap = (
        f"daily SMS cap {usd(cond.sms_daily_cap_usd)} reached "
        f"({usd(cond.sms_spent_today_usd)} spent today)"
    )
    if email.action is Action.send:
        reason = _clip(f"{email.reason}; also the fallback for sms ({cap})")
        return replace(email, reason=reason), _skip(Channel.sms, f"{cap}; email instead")
    return email, _skip(Channel.sms, f"{cap}; no email fallback ({email.reason})")


def _sms_timing(prefs: RecipientPrefs, cond: SendConditions) -> ChannelDecision:
    start, end = prefs.quiet_hours_start, prefs.quiet_hours_end
    if start is None or end is None:
        return _decision(Channel.sms, None)
    until = quiet_hours_end(cond.now, prefs.timezone, start, end)
    if until is None:
        return _decision(Channel.sms, None)
    zone = _zone(prefs.timezone)
    if cond.priority is Priority.urgent:
        window = f"quiet hours {start:%H:%M}-{end:%H:%M}"
        return _decision(Channel.sms, None, f"urgent overrides {window} {zone.key}")
    return ChannelDecision(Channel.sms, Action.defer, _deferred(until, zone, start, end), until)


def _deferred(until: datetime, zone: ZoneInfo, start: time, end: time) -> str:
    when = f"{until.astimezone(zone):%H:%M} {zone.key}"
    return _clip(f"sms: {DEFERRED_TO}{when} {QUIET_HOURS}{start:%H:%M}-{end:%H:%M})")


@dataclass(frozen=True)
class QuietHold:
    """How a waiting SMS is held back when its recipient is inside quiet hours at delivery time:
    until the window's end, with the deferral enqueue writes (a row never tried) or the note a
    tried row's decision gains (`" | held by quiet hours until 07:00 America/Chicago"`)."""

    until: datetime  # aware UTC
    deferral: str
    note: str


def quiet_hold(now: datetime, tz: str, start: time, end: time) -> QuietHold | None:
    """The hold for an SMS (not urgent) about to go at `now` to a recipient with time zone `tz`
    and quiet hours `start`-`end`, or None when `now` is outside that window."""
    until = quiet_hours_end(now, tz, start, end)
    if until is None:
        return None
    zone = _zone(tz)
    note = f" | held by quiet hours until {until.astimezone(zone):%H:%M} {zone.key}"
    return QuietHold(until, _deferred(until, zone, start, end), note)


def held_sms_again(prefs: RecipientPrefs, now: datetime, held: str) -> tuple[datetime, str] | None:
    """An SMS quiet hours hold (decision `held`), decided again at `now` with the recipient's
    current time zone and quiet hours: (when it is due, decision), or None when `held` was
    decided with this zone and window already (it stands as it is).

    Still inside the quiet window: the window's end, worded as enqueue words a deferral.
    Otherwise it is due at `now`, and the decision says so and what held it before
    (`sms: deferred to 16:10 America/Los_Angeles (quiet hours 22:00-07:00 since a roster import;
    was to 07:00 Europe/London)`); it still reads as a deferral, so the rows released together go
    out as one digest.
    """
    zone, start, end = _zone(prefs.timezone), prefs.quiet_hours_start, prefs.quiet_hours_end
    if start is not None and end is not None:
        if held.endswith(f" {zone.key} {QUIET_HOURS}{start:%H:%M}-{end:%H:%M})"):
            return None
        hold = quiet_hold(now, prefs.timezone, start, end)
        if hold is not None:
            return hold.until, hold.deferral
    now_utc = _as_utc(now)
    window = f"{start:%H:%M}-{end:%H:%M}" if start is not None and end is not None else "none"
    was = held.partition(DEFERRED_TO)[2].partition(f" {QUIET_HOURS}")[0] or "the window's end"
    reason = (
        f"sms: {DEFERRED_TO}{now_utc.astimezone(zone):%H:%M} {zone.key} {QUIET_HOURS}{window} "
        f"since a roster import; was to {was})"
    )
    return now_utc, _clip(reason)


def _decision(channel: Channel, skip_reason: str | None, note: str = "") -> ChannelDecision:
    if skip_reason is not None:
        return _skip(channel, skip_reason)
    reason = f"{channel}: send" + (f" ({note})" if note else "")
    return ChannelDecision(channel, Action.send, _clip(reason))


def _skip(channel: Channel, why: str) -> ChannelDecision:
    return ChannelDecision(channel, Action.skip, _clip(f"{channel}: {why}"))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(reason: str) -> str:
    return _shorten(reason, REASON_MAX_CHARS)


# --- time --------------------------------------------------------------------------------


def _zone(tz: str) -> ZoneInfo:
    """The IANA zone, or UTC for a string zoneinfo cannot load (validated upstream anyway)."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return ZoneInfo("UTC")


def _as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _first_instant_at(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first UTC instant whose wall time in `zone` is `wall` or later."""
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: first of a repeated time
    if _wall_time(first, zone) == wall:
        return first
    # `wall` falls in a spring-forward gap: find the change between the two readings of it.
    low = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall_time(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _wall_time(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)
