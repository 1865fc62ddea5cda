"""What the peers do, shared by the Celery and the naive Prefect versions.

The runbook's system: the web app stores a notification row per recipient (template name and
context), then queues one job per notification; the job loads the notification and its
recipient, renders the template, sends the email and the SMS, and writes the rendered text and
one `delivery_logs` row per channel. Both peers run exactly this code; only the orchestration
around `send_notification` differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, text, update

from bench.common import PRIORITY, TEMPLATE
from notify.db import DeliveryLog, Notification, Recipient, Status, transaction, utcnow
from notify.pacing import Pacer
from notify.rendering import RenderedMessage, TemplateCatalog
from notify.senders.base import OutgoingEmail, OutgoingSms
from notify.senders.memory import MemorySender

INSERT_CHUNK = 1000
EMAIL_FROM = "notifications@example.com"


@dataclass(frozen=True)
class PeerTools:
    """One per worker process."""

    engine: Engine
    catalog: TemplateCatalog
    sender: MemorySender
    pacers: Mapping[str, Pacer]


def store_notifications(
    engine: Engine, recipient_ids: Sequence[int], context: Mapping[str, Any], request_id: str
) -> list[int]:
    """The web app's side: one row per recipient, in bulk (the producer is not the bottleneck)."""
    now = utcnow()
    ids: list[int] = []
    with transaction(engine) as session:
        for start in range(0, len(recipient_ids), INSERT_CHUNK):
            values = [
                _pending_notification(rid, context, request_id, now)
                for rid in recipient_ids[start : start + INSERT_CHUNK]
            ]
            statement = insert(Notification).returning(
                Notification.id, sort_by_parameter_order=True
            )
            ids.extend(session.scalars(statement, values))
    return ids


def _pending_notification(
    recipient_id: int, context: Mapping[str, Any], request_id: str, now: datetime
) -> dict[str, Any]:
    return {
        "recipient_id": recipient_id,
        "template_name": TEMPLATE,
        "title": "",
        "message": "",
        "priority": PRIORITY,
        "category": "repairs",
        "context": dict(context),
        "request_id": request_id,
        "read": False,
        "created_at": now,
    }


def recipient_ids(engine: Engine, count: int) -> list[int]:
    wanted = [f"bench:{n}" for n in range(count)]
    with transaction(engine) as session:
        query = select(Recipient.external_id, Recipient.id).where(Recipient.external_id.in_(wanted))
        found = {name: rid for name, rid in session.execute(query)}
    return [found[name] for name in wanted]


def send_notification(tools: PeerTools, notification_id: int) -> None:
    """Load, render, send both channels, record: the whole job for one notification."""
    with transaction(tools.engine) as session:
        note, who = session.execute(
            select(Notification, Recipient)
            .join(Recipient, Recipient.id == Notification.recipient_id)
            .where(Notification.id == notification_id)
        ).one()
        context = {**note.context, "recipient": {"name": who.name, "external_id": who.external_id}}
        email, phone = who.email, who.phone
    message = tools.catalog.render(note.template_name, context)
    tools.pacers["email"].acquire()
    email_receipt = tools.sender.send_email(
        OutgoingEmail(
            to=email or "",
            subject=message.subject,
            text=message.text,
            html=message.html,
            sender=EMAIL_FROM,
        )
    )
    tools.pacers["sms"].acquire()
    sms_receipt = tools.sender.send_sms(
        OutgoingSms(phone=phone or "", body=message.sms, transactional=True)
    )
    receipts = {"email": email_receipt.provider_message_id, "sms": sms_receipt.provider_message_id}
    _record(tools.engine, notification_id, message, email, phone, receipts)


def _record(
    engine: Engine,
    notification_id: int,
    message: RenderedMessage,
    email: str | None,
    phone: str | None,
    receipts: Mapping[str, str],
) -> None:
    now = utcnow()
    rows = [
        _sent_row(notification_id, "email", receipts["email"], now, email, None),
        _sent_row(notification_id, "sms", receipts["sms"], now, None, phone),
    ]
    rendered = {
        "title": message.subject[:300],
        "message": message.text,
        "html": message.html,
        "sms_text": message.sms,
    }
    with transaction(engine) as session:
        session.execute(
            update(Notification).where(Notification.id == notification_id).values(**rendered)
        )
        session.execute(insert(DeliveryLog).execution_options(render_nulls=True), rows)


def _sent_row(
    notification_id: int,
    channel: str,
    receipt: str,
    now: datetime,
    email: str | None,
    phone: str | None,
) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "channel": channel,
        "recipient_email": email,
        "recipient_phone": phone,
        "status": Status.sent.value,
        "decision": "sent",
        "attempts": 1,
        "provider_message_id": receipt,
        "created_at": now,
        "sent_at": now,
    }


def sent_count(engine: Engine) -> int:
    """Delivery rows in `sent` (what the driver polls to see a run finish)."""
    with engine.connect() as connection:
        return int(connection.scalar(_COUNT_SENT) or 0)


_COUNT_SENT = text("SELECT count(*) FROM delivery_logs WHERE status = 'sent'")
