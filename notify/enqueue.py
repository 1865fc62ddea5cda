"""Accept a send request: render, decide per recipient and channel, store it all in one transaction.

The template and context are checked before anything is stored. Notifications and their delivery
rows (one per channel, with the policy's decision) are inserted in bulk. The same idempotency key
again is a no-op that answers with the first request's notification ids.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from notify.conditions import BatchConditions, start_conditions
from notify.db import DELIVERY_LOGS, Channel, Notification, Recipient, Status
from notify.errors import InputError
from notify.policies import Action, ChannelDecision, RecipientPrefs, SendConditions, decide_channels
from notify.pricing import estimate_sms_cost
from notify.recipients import known_external_ids, recipients_by_external_id
from notify.rendering import RenderedMessage, TemplateCatalog
from notify.settings import Priority, Settings

CHUNK = 1000  # recipients rendered, decided and inserted at a time


@dataclass(frozen=True)
class SendRequest:
    template: str
    to: tuple[str, ...]
    context: Mapping[str, Any] = field(default_factory=dict)
    priority: Priority | None = None
    idempotency_key: str | None = None
    skip_unknown: bool = False


@dataclass(frozen=True)
class Attribution:
    """Who created the notifications (shown by loop detection)."""

    flow_run_id: str | None = None
    deployment_name: str | None = None


@dataclass(frozen=True)
class EnqueueResult:
    request_id: str
    notification_ids: tuple[int, ...]
    duplicate: bool
    unknown_recipients: tuple[str, ...]
    rows: Mapping[str, Mapping[str, int]]  # channel -> status -> rows: {"email": {"pending": 3}}


def recipient_context(context: Mapping[str, Any], recipient: Recipient) -> dict[str, Any]:
    """What a template sees: the request's context plus `recipient` (name, external_id)."""
    who = {"name": recipient.name, "external_id": recipient.external_id}
    return {**context, "recipient": who}


def enqueue(
    *,
    session: Session,
    request: SendRequest,
    catalog: TemplateCatalog,
    settings: Settings,
    now: datetime,
    attribution: Attribution = Attribution(),
) -> EnqueueResult:
    """Store the notifications and delivery rows; a repeated idempotency key is a no-op.

    The request is processed CHUNK recipients at a time inside the caller's transaction, so
    memory stays bounded however many recipients it names.
    """
    if request.idempotency_key:
        existing = existing_request(session=session, request_id=request.idempotency_key)
        if existing:
            return EnqueueResult(request.idempotency_key, existing, True, (), {})
    wanted, unknown = preflight(session=session, request=request, catalog=catalog)
    request_id = request.idempotency_key or uuid.uuid4().hex
    conditions = start_conditions(session=session, now=now)
    shared = _shared_columns(request, request_id, attribution)
    renderer = _Renderer(catalog, request)
    ids: list[int] = []
    counts: Counter[tuple[str, str]] = Counter()
    for start in range(0, len(wanted), CHUNK):
        found = recipients_by_external_id(
            session=session, external_ids=wanted[start : start + CHUNK]
        )
        recipients = [found[name] for name in wanted[start : start + CHUNK] if name in found]
        plan = _plan(session, request, recipients, renderer, conditions, settings, now)
        ids += _store(session, plan, shared, request.idempotency_key, len(ids))
        counts.update(plan.counts)
    return EnqueueResult(request_id, tuple(ids), False, unknown, nest_counts(counts))


def nest_counts(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """{("email", "sent"): 3} -> {"email": {"sent": 3}}, channels and statuses sorted."""
    nested: dict[str, dict[str, int]] = {}
    for (channel, status), count in sorted(counts.items()):
        nested.setdefault(channel, {})[status] = count
    return nested


def preflight(
    *, session: Session, request: SendRequest, catalog: TemplateCatalog
) -> tuple[list[str], tuple[str, ...]]:
    """The checks made before anything is stored: recipients known (or skipped on request),
    template and context complete. Returns (known external ids in order, unknown ones)."""
    wanted = list(dict.fromkeys(name.strip() for name in request.to if name.strip()))
    if not wanted:
        raise InputError("to: no recipients given (use --to EXTERNAL_ID or --to-file FILE)")
    known = known_external_ids(session=session, external_ids=wanted)
    unknown = tuple(name for name in wanted if name not in known)
    if unknown and not request.skip_unknown:
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise InputError(
            f"to: {len(unknown)} unknown recipient(s): {shown} "
            "(import them first, or pass --skip-unknown)"
        )
    wanted = [name for name in wanted if name in known]
    if not wanted:
        raise InputError("to: none of the recipients is known")
    first = recipients_by_external_id(session=session, external_ids=wanted[:1])[wanted[0]]
    catalog.check(request.template, recipient_context(request.context, first))
    return wanted, unknown


def existing_request(*, session: Session, request_id: str) -> tuple[int, ...]:
    query = select(Notification.id).where(Notification.request_id == request_id)
    return tuple(session.scalars(query.order_by(Notification.id)))


class _Renderer:
    """Renders per recipient, or once when the template never reads `recipient`."""

    def __init__(self, catalog: TemplateCatalog, request: SendRequest) -> None:
        self.catalog, self.request = catalog, request
        self.personal = "recipient" in catalog.info(request.template).required_variables
        self._shared: RenderedMessage | None = None

    def __call__(self, recipient: Recipient) -> RenderedMessage:
        if self.personal or self._shared is None:
            context = recipient_context(self.request.context, recipient)
            message = self.catalog.render(self.request.template, context)
            if not self.personal:
                self._shared = message
            return message
        return self._shared


@dataclass
class _Plan:
    notifications: list[dict[str, Any]] = field(default_factory=list)
    logs: list[list[dict[str, Any]]] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)


def _plan(
    session: Session,
    request: SendRequest,
    recipients: Sequence[Recipient],
    render: _Renderer,
    conditions: BatchConditions,
    settings: Settings,
    now: datetime,
) -> _Plan:
    plan = _Plan()
    rendered = [render(r) for r in recipients]
    titles = {message.subject for message in rendered}
    conditions.load_chunk(session=session, recipients=recipients, titles=titles, now=now)
    for recipient, message in zip(recipients, rendered, strict=True):
        priority = request.priority or message.priority
        note, logs = _decide_one(recipient, message, priority, conditions, settings, now)
        plan.notifications.append(note)
        plan.logs.append(logs)
        plan.counts.update((log["channel"], log["status"]) for log in logs)
    return plan


def _decide_one(
    recipient: Recipient,
    message: RenderedMessage,
    priority: Priority,
    conditions: BatchConditions,
    settings: Settings,
    now: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    segments, cost = _sms_estimate(recipient, message, settings)
    cond = SendConditions(
        priority=priority,
        title=message.subject,
        now=now,
        sms_min_priority=settings.sms_min_priority,
        sms_spent_today_usd=conditions.sms_spent_today,
        sms_daily_cap_usd=settings.sms_daily_cap_usd,
        sms_estimated_cost_usd=cost,
        loop_threshold=settings.loop_threshold,
        recent_sent=conditions.recent_for(recipient.id, message.subject),
        suppressed=conditions.suppressed_for(recipient, message.subject, now),
    )
    decisions = decide_channels(_prefs(recipient), cond)
    conditions.record(recipient.id, message.subject, decisions, cost)
    note = _notification_values(recipient, message, priority, now)
    logs = [_log_values(recipient, d, segments, cost, now) for d in decisions]
    return note, logs


def _sms_estimate(
    recipient: Recipient, message: RenderedMessage, settings: Settings
) -> tuple[int | None, Decimal]:
    if not recipient.phone:
        return None, Decimal("0")
    return estimate_sms_cost(
        message.sms, recipient.phone, prices=settings.sms_prices, default=settings.sms_price_usd
    )


def _prefs(recipient: Recipient) -> RecipientPrefs:
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


def _notification_values(
    recipient: Recipient, message: RenderedMessage, priority: Priority, now: datetime
) -> dict[str, Any]:
    return {
        "recipient_id": recipient.id,
        "template_name": message.template_name,
        "title": message.subject[:300],
        "message": message.text,
        "html": message.html,
        "sms_text": message.sms,
        "priority": priority.value,
        "category": message.category,
        "read": False,
        "created_at": now,
    }


def _log_values(
    recipient: Recipient,
    decision: ChannelDecision,
    segments: int | None,
    cost: Decimal,
    now: datetime,
) -> dict[str, Any]:
    sms = decision.channel == Channel.sms
    live = decision.action != Action.skip
    return {
        "channel": decision.channel.value,
        "recipient_email": None if sms else recipient.email,
        "recipient_phone": recipient.phone if sms else None,
        "status": (Status.pending if live else Status.skipped).value,
        "decision": decision.reason[:300],
        "attempts": 0,
        "segments": segments if sms else None,
        "cost": cost if sms and live else None,
        "created_at": now,
        "next_attempt_at": (decision.not_before or now) if live else None,
    }


def _shared_columns(
    request: SendRequest, request_id: str, attribution: Attribution
) -> dict[str, Any]:
    return {
        "context": dict(request.context),
        "request_id": request_id,
        "flow_run_id": attribution.flow_run_id,
        "deployment_name": attribution.deployment_name,
    }


def _store(
    session: Session, plan: _Plan, shared: dict[str, Any], key: str | None, offset: int
) -> list[int]:
    """Bulk-insert one chunk: notifications (ids back, in order), then their delivery rows as
    one Core executemany (every row has the same keys, so one statement takes them all)."""
    values = [
        {**note, **shared, "idempotency_key": f"{key}#{offset + n}" if key else None}
        for n, note in enumerate(plan.notifications)
    ]
    statement = insert(Notification).returning(Notification.id, sort_by_parameter_order=True)
    ids = list(session.scalars(statement, values))
    rows = [
        {**log, "notification_id": nid}
        for nid, group in zip(ids, plan.logs, strict=True)
        for log in group
    ]
    session.connection().execute(insert(DELIVERY_LOGS), rows)
    return ids
