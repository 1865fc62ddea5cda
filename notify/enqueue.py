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

from notify.conditions import BatchConditions, load_conditions
from notify.db import Channel, DeliveryLog, Notification, Recipient, Status
from notify.errors import InputError
from notify.policies import Action, ChannelDecision, RecipientPrefs, SendConditions, decide_channels
from notify.pricing import estimate_sms_cost
from notify.recipients import recipients_by_external_id
from notify.rendering import RenderedMessage, TemplateCatalog
from notify.settings import Priority, Settings

INSERT_CHUNK = 1000


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
    rows: Mapping[str, int]  # "email:pending" -> count, "sms:skipped" -> count, ...


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
    """Store the notifications and delivery rows; a repeated idempotency key is a no-op."""
    if request.idempotency_key:
        existing = existing_request(session=session, request_id=request.idempotency_key)
        if existing:
            return EnqueueResult(request.idempotency_key, existing, True, (), {})
    recipients, unknown = _resolve(session, request)
    catalog.check(request.template, recipient_context(request.context, recipients[0]))
    request_id = request.idempotency_key or uuid.uuid4().hex
    plan = _plan(session, request, recipients, catalog, settings, now)
    ids = _store(session, plan, request, request_id, attribution, now)
    return EnqueueResult(request_id, tuple(ids), False, unknown, dict(plan.counts))


def preflight(*, session: Session, request: SendRequest, catalog: TemplateCatalog) -> None:
    """The checks enqueue makes before storing anything, without storing anything."""
    recipients, _ = _resolve(session, request)
    catalog.check(request.template, recipient_context(request.context, recipients[0]))


def existing_request(*, session: Session, request_id: str) -> tuple[int, ...]:
    query = select(Notification.id).where(Notification.request_id == request_id)
    return tuple(session.scalars(query.order_by(Notification.id)))


def _resolve(session: Session, request: SendRequest) -> tuple[list[Recipient], tuple[str, ...]]:
    wanted = list(dict.fromkeys(name.strip() for name in request.to if name.strip()))
    if not wanted:
        raise InputError("to: no recipients given (use --to EXTERNAL_ID or --to-file FILE)")
    found = recipients_by_external_id(session=session, external_ids=wanted)
    unknown = tuple(name for name in wanted if name not in found)
    if unknown and not request.skip_unknown:
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise InputError(
            f"to: {len(unknown)} unknown recipient(s): {shown} "
            "(import them first, or pass --skip-unknown)"
        )
    known = [found[name] for name in wanted if name in found]
    if not known:
        raise InputError("to: none of the recipients is known")
    return known, unknown


@dataclass
class _Plan:
    notifications: list[dict[str, Any]] = field(default_factory=list)
    logs: list[list[dict[str, Any]]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def _plan(
    session: Session,
    request: SendRequest,
    recipients: Sequence[Recipient],
    catalog: TemplateCatalog,
    settings: Settings,
    now: datetime,
) -> _Plan:
    plan = _Plan()
    rendered = [
        catalog.render(request.template, recipient_context(request.context, r)) for r in recipients
    ]
    conditions = load_conditions(
        session=session,
        recipients=recipients,
        titles={message.subject for message in rendered},
        now=now,
    )
    for recipient, message in zip(recipients, rendered, strict=True):
        priority = request.priority or message.priority
        note, logs = _decide_one(recipient, message, priority, conditions, settings, now)
        plan.notifications.append(note)
        plan.logs.append(logs)
        plan.counts.update(f"{log['channel']}:{log['status']}" for log in logs)
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


def _store(
    session: Session,
    plan: _Plan,
    request: SendRequest,
    request_id: str,
    attribution: Attribution,
    now: datetime,
) -> list[int]:
    shared = {
        "context": dict(request.context),
        "request_id": request_id,
        "flow_run_id": attribution.flow_run_id,
        "deployment_name": attribution.deployment_name,
    }
    key = request.idempotency_key
    ids: list[int] = []
    for start in range(0, len(plan.notifications), INSERT_CHUNK):
        chunk = plan.notifications[start : start + INSERT_CHUNK]
        values = [
            {**note, **shared, "idempotency_key": f"{key}#{start + n}" if key else None}
            for n, note in enumerate(chunk)
        ]
        statement = insert(Notification).returning(Notification.id, sort_by_parameter_order=True)
        chunk_ids = list(session.scalars(statement, values))
        groups = plan.logs[start : start + len(chunk)]
        rows = [
            {**log, "notification_id": nid}
            for nid, group in zip(chunk_ids, groups, strict=True)
            for log in group
        ]
        session.execute(insert(DeliveryLog), rows)
        ids.extend(chunk_ids)
    return ids
