"""Deciding a request chunk by chunk without per-row overhead.

`decide_channels` is pure: its answer depends only on a handful of inputs (the recipient's
preferences, whether it has an address, its time zone and quiet hours, active suppressions, recent
sends when they reach the loop threshold, whether the SMS would cross the daily cap), the rest
being the same for the whole request. The planner computes that key per recipient and calls
`decide_channels` once per distinct key; a roster of a million recipients has a few dozen keys.
The decisions, the stored values derived from them (status, reason, cost, next attempt) and their
encodings are computed once per key. The SMS estimate is computed once per message text (and
destination country when prices differ by country). Recipients are read as plain rows, not ORM
objects. The answers are the ones `decide_channels` gives row by row (tests compare both).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from notify.conditions import BatchConditions
from notify.db import RECIPIENTS, Channel, Recipient, Status, among, dialect_of, lookup_chunks
from notify.policies import (
    EMAIL_EMPTY,
    Action,
    ChannelDecision,
    RecipientPrefs,
    SendConditions,
    decide_channels,
    email_is_empty,
    sms_refusal,
)
from notify.pricing import estimate_sms_cost
from notify.rendering import RenderedMessage
from notify.settings import Priority, Settings

_NO_SUPPRESSION: frozenset[Channel] = frozenset()
_COST_CACHE_MAX = 50_000
_ZERO = Decimal("0")

RECIPIENT_COLUMNS = (
    "id",
    "external_id",
    "name",
    "email",
    "phone",
    "timezone",
    "receive_email",
    "receive_sms",
    "quiet_hours_start",
    "quiet_hours_end",
)


def recipient_rows(*, session: Session, external_ids: Sequence[str]) -> list[Row[Any]]:
    """The recipients named, as rows with Recipient's attribute names, in the order given."""
    table = RECIPIENTS
    query = select(*(table.c[name] for name in RECIPIENT_COLUMNS))
    dialect = dialect_of(session)
    found = {
        row.external_id: row
        for chunk in lookup_chunks(external_ids, dialect=dialect)
        for row in session.execute(query.where(among(table.c.external_id, chunk, dialect=dialect)))
    }
    return [found[name] for name in external_ids if name in found]


def known_external_ids(*, session: Session, external_ids: Sequence[str]) -> set[str]:
    """Which of these external ids exist (ids only, so a million of them stay cheap)."""
    column = RECIPIENTS.c.external_id
    dialect = dialect_of(session)
    return {
        name
        for chunk in lookup_chunks(external_ids, dialect=dialect)
        for name in session.scalars(select(column).where(among(column, chunk, dialect=dialect)))
    }


@dataclass(eq=False)
class Outcome:
    """What one decision key stores: the two decisions and their delivery-row values.

    `logs` holds one (channel, values) per decision; the values lack the notification id and the
    addresses, which the store adds per row."""

    decisions: tuple[ChannelDecision, ChannelDecision]
    sms_live: bool
    logs: tuple[tuple[Channel, dict[str, Any]], ...]
    counts: tuple[tuple[str, str], ...]  # ("email", "pending"), ("sms", "skipped")


@dataclass(frozen=True)
class Planned:
    """One recipient of a chunk: what it gets and how it is decided."""

    recipient: Any  # a recipient row (see recipient_rows)
    message: RenderedMessage
    priority: Priority
    outcome: Outcome


_Index = dict[tuple[str, str], list[tuple[str | None, datetime | None]]]


@dataclass(frozen=True)
class Loaded:
    """A chunk ready to decide: its recipients, their messages, the suppressions among them."""

    recipients: Sequence[Any]
    rendered: list[RenderedMessage]
    suppressions: _Index


@dataclass
class Planner:
    """Decides recipients for one request; state carried across chunks: the SMS spend."""

    settings: Settings
    now: datetime
    conditions: BatchConditions
    request_priority: Priority | None
    _outcomes: dict[tuple[Any, ...], Outcome] = field(default_factory=dict)
    _costs: dict[tuple[str, str], tuple[int, Decimal]] = field(default_factory=dict)
    _refusals: dict[str, str | None] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def plan(
        self,
        session: Session,
        recipients: Sequence[Any],
        render: Callable[[Any], RenderedMessage],
    ) -> list[Planned]:
        return self.decide(self.load(session, recipients, render))

    def load(
        self,
        session: Session,
        recipients: Sequence[Any],
        render: Callable[[Any], RenderedMessage],
    ) -> Loaded:
        """Render the chunk and read what deciding it needs (recent sends, suppressions)."""
        rendered = [render(r) for r in recipients]
        titles = {message.subject for message in rendered}
        rows = cast(Sequence[Recipient], recipients)  # read as attributes, like the ORM objects
        self.conditions.load_chunk(session=session, recipients=rows, titles=titles, now=self.now)
        return Loaded(recipients, rendered, _suppression_index(self.conditions, self.now))

    def decide(self, loaded: Loaded) -> list[Planned]:
        """Decide a loaded chunk (no database access; the chunk loaded last)."""
        conditions = self.conditions
        planned = []
        seen: Counter[Outcome] = Counter()
        for recipient, message in zip(loaded.recipients, loaded.rendered, strict=True):
            priority = self.request_priority or message.priority
            outcome, cost = self._decide(recipient, message, priority, loaded.suppressions)
            if outcome.sms_live:
                conditions.sms_spent_today += cost
            planned.append(Planned(recipient, message, priority, outcome))
            seen[outcome] += 1
        for outcome, n in seen.items():
            for name in outcome.counts:
                self.counts[name] += n
        return planned

    def _decide(
        self,
        recipient: Any,
        message: RenderedMessage,
        priority: Priority,
        suppressions: _Index,
    ) -> tuple[Outcome, Decimal]:
        title = message.subject
        segments, cost = self._sms_cost(recipient, message)
        suppressed = (
            _suppressed(recipient, title, self.now, suppressions)
            if suppressions
            else _NO_SUPPRESSION
        )
        recent = self.conditions.recent
        threshold = self.settings.loop_threshold
        email_n = recent[(recipient.id, title, "email")]
        sms_n = recent[(recipient.id, title, "sms")]
        spent = self.conditions.sms_spent_today
        over_cap = spent + cost > self.settings.sms_daily_cap_usd
        refused = self._sms_refused(recipient, message)
        empty_email = EMAIL_EMPTY if email_is_empty(message.subject, message.text) else None
        key = (
            title,
            priority,
            recipient.receive_email,
            bool(recipient.email),
            recipient.receive_sms,
            bool(recipient.phone),
            recipient.timezone,
            recipient.quiet_hours_start,
            recipient.quiet_hours_end,
            suppressed,
            email_n if email_n >= threshold else -1,
            sms_n if sms_n >= threshold else -1,
            segments,
            cost,
            f"{spent:,.2f}" if over_cap else None,  # the cap's reason names the spend
            refused,
            empty_email,
        )
        outcome = self._outcomes.get(key)
        if outcome is None:
            cond = SendConditions(
                priority=priority,
                title=title,
                now=self.now,
                sms_min_priority=self.settings.sms_min_priority,
                sms_spent_today_usd=spent,
                sms_daily_cap_usd=self.settings.sms_daily_cap_usd,
                sms_estimated_cost_usd=cost,
                loop_threshold=threshold,
                recent_sent={Channel.email: email_n, Channel.sms: sms_n},
                suppressed=suppressed,
                sms_refused=refused,
                email_refused=empty_email,
            )
            decisions = decide_channels(recipient_prefs(recipient), cond)
            outcome = self._outcomes[key] = _outcome(decisions, segments, cost, self.now)
        return outcome, cost

    def _sms_refused(self, recipient: Any, message: RenderedMessage) -> str | None:
        """Why SNS would refuse this recipient's SMS text, once per text: empty (the template
        says nothing to text here), or over its size (the request's check rendered for the first
        recipient only: a template that reads `recipient` can come out longer for another)."""
        if not recipient.phone:
            return None
        text = message.sms
        if text not in self._refusals:
            if len(self._refusals) >= _COST_CACHE_MAX:
                self._refusals.clear()
            self._refusals[text] = sms_refusal(text)
        return self._refusals[text]

    def _sms_cost(self, recipient: Any, message: RenderedMessage) -> tuple[int | None, Decimal]:
        phone = recipient.phone
        if not phone:
            return None, _ZERO
        prices = self.settings.sms_prices
        key = (message.sms, phone if prices else "")  # one price everywhere: the text decides
        found = self._costs.get(key)
        if found is None:
            if len(self._costs) >= _COST_CACHE_MAX:
                self._costs.clear()
            found = self._costs[key] = estimate_sms_cost(
                message.sms, phone, prices=prices, default=self.settings.sms_price_usd
            )
        return found


def _outcome(
    decisions: tuple[ChannelDecision, ChannelDecision],
    segments: int | None,
    cost: Decimal,
    now: datetime,
) -> Outcome:
    logs = tuple((d.channel, _log_values(d, segments, cost, now)) for d in decisions)
    sms_live = any(d.channel == Channel.sms and d.action != Action.skip for d in decisions)
    counts = tuple((channel.value, str(values["status"])) for channel, values in logs)
    return Outcome(decisions, sms_live, logs, counts)


def _log_values(
    decision: ChannelDecision, segments: int | None, cost: Decimal, now: datetime
) -> dict[str, Any]:
    sms = decision.channel == Channel.sms
    live = decision.action != Action.skip
    return {
        "channel": decision.channel.value,
        "status": (Status.pending if live else Status.skipped).value,
        "decision": decision.reason[:300],
        "attempts": 0,
        "segments": segments if sms else None,
        "cost": cost if sms and live else None,
        "created_at": now,
        "next_attempt_at": (decision.not_before or now) if live else None,
    }


def recipient_prefs(recipient: Any) -> RecipientPrefs:
    """The policy's view of a recipient row (or object) with Recipient's attribute names."""
    return RecipientPrefs(
        external_id=recipient.external_id,
        email=recipient.email,
        phone=recipient.phone,
        timezone=recipient.timezone,
        receive_email=recipient.receive_email,
        receive_sms=recipient.receive_sms,
        quiet_hours_start=_hhmm(recipient.quiet_hours_start),
        quiet_hours_end=_hhmm(recipient.quiet_hours_end),
    )


def _hhmm(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def _suppression_index(conditions: BatchConditions, now: datetime) -> _Index:
    """(channel, address) -> [(title or None, until or None)] of the chunk's active suppressions."""
    index: _Index = {}
    for address, channel, only_title, until in conditions.suppressions:
        if until is None or until > now:
            index.setdefault((channel, address), []).append((only_title, until))
    return index


def _suppressed(
    recipient: Any,
    title: str,
    now: datetime,
    index: _Index,
) -> frozenset[Channel]:
    found = set()
    for channel, address in ((Channel.email, recipient.email), (Channel.sms, recipient.phone)):
        entries = index.get((channel.value, address)) if address is not None else None
        if entries and any(only is None or only == title for only, _ in entries):
            found.add(channel)
    return frozenset(found) if found else _NO_SUPPRESSION
