"""Parse SNS envelopes carrying SES events, and SNS SMS delivery-status log lines.

Tolerant of what real AWS and moto differ on (receipts-facts.md): the envelope's `Message` is a
JSON string on AWS and an object on moto; identity feedback says `notificationType` (moto: the
literal "Bounce, Complaint, or Delivery.") where event publishing says `eventType`; tags may be
absent. A raw-delivery body (no envelope) is accepted too. Anything else raises MalformedReceipt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from notify.db import Status
from notify.receipts.events import MalformedReceipt, ReceiptEvent, Source
from notify.senders.ses import DELIVERY_ID_TAG
from notify.validation import refuse_unstorable

# eventType -> the key of its event object in the record
SES_EVENT_KEYS = {
    "Send": "send",
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Reject": "reject",
    "DeliveryDelay": "deliveryDelay",
    "RenderingFailure": "failure",
}
OPTED_OUT_RESPONSES = ("opted out", "has blocked sms")
MAX_KEY = 200
MAX_MESSAGE_ID = 200  # receipts.provider_message_id
MAX_ADDRESS = 320  # receipts.address (an email address is at most 254)
MAX_TAGGED_ID = 2**31 - 1  # delivery_logs.id is an integer: a larger tag is none of ours
MAX_PRICE = Decimal("1000000")  # receipts.price holds 12 digits, 6 after the point


def parse_sqs_body(body: str) -> ReceiptEvent:
    """One SQS message body (SNS envelope or raw record) -> the SES event it carries."""
    return _readable(lambda: _checked(_sqs_body(body)))


def _sqs_body(body: str) -> ReceiptEvent:
    document = _json_object(body, "body")
    if "mail" not in document and document.get("Type") == "Notification":
        message = document.get("Message")
        document = message if isinstance(message, dict) else _json_object(message, "Message")
    return parse_ses_record(document)


def parse_ses_record(record: dict[str, Any]) -> ReceiptEvent:
    mail = record.get("mail")
    if not isinstance(mail, dict) or not mail.get("messageId"):
        raise MalformedReceipt("no mail.messageId: not an SES event")
    event_type = _ses_event_type(record)
    body = record.get(SES_EVENT_KEYS[event_type]) or {}
    if not isinstance(body, dict):
        raise MalformedReceipt(f"{event_type}: event object is not a JSON object")
    return _SES_PARSERS[event_type](record, mail, body)


def _ses_event_type(record: dict[str, Any]) -> str:
    named = str(record.get("eventType") or record.get("notificationType") or "").replace(" ", "")
    if named in SES_EVENT_KEYS:
        return named
    present = [name for name, key in SES_EVENT_KEYS.items() if key in record]
    if len(present) == 1:
        return present[0]
    raise MalformedReceipt(f"unknown SES event type {named or 'missing'!r}")


def _base(event_type: str, mail: dict[str, Any], key_part: str, **values: Any) -> ReceiptEvent:
    message_id = str(mail["messageId"])
    return ReceiptEvent(
        source=Source.ses,
        event_type=event_type,
        dedupe_key=dedupe_key("ses", event_type, message_id, key_part),
        provider_message_id=message_id,
        delivery_id=_tagged_delivery_id(mail),
        sent_at=_iso(mail.get("timestamp")),
        **values,
    )


def _send(record: dict[str, Any], mail: dict[str, Any], body: dict[str, Any]) -> ReceiptEvent:
    return _base("Send", mail, "", outcome=Status.sent, occurred_at=_iso(mail.get("timestamp")))


def _delivery(record: dict[str, Any], mail: dict[str, Any], body: dict[str, Any]) -> ReceiptEvent:
    at = _iso(body.get("timestamp"))
    recipients = tuple(str(a) for a in body.get("recipients") or ())
    detail = {"smtp": str(body.get("smtpResponse", ""))[:200]}
    return _base(
        "Delivery",
        mail,
        str(body.get("timestamp", "")),
        outcome=Status.delivered,
        occurred_at=at,
        addresses=recipients,
        detail=detail,
    )


def _bounce(record: dict[str, Any], mail: dict[str, Any], body: dict[str, Any]) -> ReceiptEvent:
    kind = str(body.get("bounceType") or "Undetermined")
    permanent = kind == "Permanent"
    bounced = body.get("bouncedRecipients") or []
    addresses = tuple(str(r.get("emailAddress")) for r in bounced if isinstance(r, dict))
    diagnostic = next(
        (
            str(r.get("diagnosticCode"))
            for r in bounced
            if isinstance(r, dict) and r.get("diagnosticCode")
        ),
        "",
    )
    detail = {"type": kind, "subtype": body.get("bounceSubType"), "diagnostic": diagnostic[:200]}
    return _base(
        "Bounce",
        mail,
        str(body.get("feedbackId") or body.get("timestamp", "")),
        outcome=Status.bounced if permanent else None,
        suppress=permanent,
        occurred_at=_iso(body.get("timestamp")),
        addresses=addresses,
        detail=detail,
    )


def _complaint(record: dict[str, Any], mail: dict[str, Any], body: dict[str, Any]) -> ReceiptEvent:
    feedback = body.get("complaintFeedbackType")
    real = feedback != "not-spam"
    complained = body.get("complainedRecipients") or []
    addresses = tuple(str(r.get("emailAddress")) for r in complained if isinstance(r, dict))
    detail = {"type": feedback, "subtype": body.get("complaintSubType")}
    return _base(
        "Complaint",
        mail,
        str(body.get("feedbackId") or body.get("timestamp", "")),
        outcome=Status.complained if real else None,
        suppress=real,
        occurred_at=_iso(body.get("timestamp")),
        addresses=addresses,
        detail=detail,
    )


def _reject(record: dict[str, Any], mail: dict[str, Any], body: dict[str, Any]) -> ReceiptEvent:
    detail = {"reason": str(body.get("reason", ""))[:200]}
    return _base("Reject", mail, "", outcome=Status.undelivered, detail=detail)


def _delay(record: dict[str, Any], mail: dict[str, Any], body: dict[str, Any]) -> ReceiptEvent:
    delayed = body.get("delayedRecipients") or []
    addresses = tuple(str(r.get("emailAddress")) for r in delayed if isinstance(r, dict))
    detail = {"type": body.get("delayType"), "expires": body.get("expirationTime")}
    return _base(
        "DeliveryDelay",
        mail,
        str(body.get("timestamp", "")),
        occurred_at=_iso(body.get("timestamp")),
        addresses=addresses,
        detail=detail,
    )


def _rendering(record: dict[str, Any], mail: dict[str, Any], body: dict[str, Any]) -> ReceiptEvent:
    detail = {
        "reason": str(body.get("errorMessage", ""))[:200],
        "template": body.get("templateName"),
    }
    return _base("RenderingFailure", mail, "", outcome=Status.undelivered, detail=detail)


_SES_PARSERS: dict[
    str, Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], ReceiptEvent]
] = {
    "Send": _send,
    "Delivery": _delivery,
    "Bounce": _bounce,
    "Complaint": _complaint,
    "Reject": _reject,
    "DeliveryDelay": _delay,
    "RenderingFailure": _rendering,
}


def parse_sms_log(message: str, *, logged_at: datetime | None = None) -> ReceiptEvent:
    """One SNS SMS delivery-status log line (the CloudWatch Logs event's `message`)."""
    return _readable(lambda: _checked(_sms_log(message, logged_at)))


def _sms_log(message: str, logged_at: datetime | None) -> ReceiptEvent:
    line = _json_object(message, "log line")
    notification, delivery = line.get("notification"), line.get("delivery")
    if not isinstance(notification, dict) or not isinstance(delivery, dict):
        raise MalformedReceipt("not an SMS delivery-status line (no notification/delivery)")
    message_id, status = notification.get("messageId"), line.get("status")
    if not message_id or status not in ("SUCCESS", "FAILURE"):
        raise MalformedReceipt(f"SMS log line without messageId or known status ({status!r})")
    response = str(delivery.get("providerResponse", ""))[:200]
    ok = status == "SUCCESS"
    return ReceiptEvent(
        source=Source.sms,
        event_type="SmsSuccess" if ok else "SmsFailure",
        dedupe_key=dedupe_key("sms", str(status), str(message_id), ""),
        provider_message_id=str(message_id),
        addresses=(str(delivery.get("destination", "")),),
        occurred_at=logged_at,
        sent_at=_sns_time(notification.get("timestamp")),
        outcome=Status.delivered if ok else Status.undelivered,
        suppress=not ok and any(text in response.lower() for text in OPTED_OUT_RESPONSES),
        price=_price(delivery.get("priceInUSD")),
        detail={"response": response, "parts": delivery.get("numberOfMessageParts")},
    )


def _readable(parse: Callable[[], ReceiptEvent]) -> ReceiptEvent:
    """Whatever a message holds, its parse ends in an event or a MalformedReceipt: a shape no
    check here foresaw is kept as malformed, never an error that fails the whole poll (and sends
    the good receipts read with it to the dead-letter queue)."""
    try:
        return parse()
    except MalformedReceipt:
        raise
    except Exception as error:  # any surprise in a message is the message's
        raise MalformedReceipt(f"unreadable: {type(error).__name__}: {error}"[:300]) from error


def _checked(event: ReceiptEvent) -> ReceiptEvent:
    """What the receipts table can hold: a message id of at most MAX_MESSAGE_ID characters,
    addresses of at most MAX_ADDRESS, and nothing `notify.validation.refuse_unstorable` refuses
    (a NUL character, which PostgreSQL refuses in text and JSON)."""
    message_id = event.provider_message_id or ""
    if len(message_id) > MAX_MESSAGE_ID:
        raise MalformedReceipt(
            f"messageId is {len(message_id)} characters (a provider's is at most {MAX_MESSAGE_ID})"
        )
    for address in event.addresses:
        if len(address) > MAX_ADDRESS:
            raise MalformedReceipt(
                f"an address is {len(address)} characters (at most {MAX_ADDRESS})"
            )
    try:
        refuse_unstorable(event.stored())
    except ValueError as problem:
        raise MalformedReceipt(str(problem)) from None
    return event


def dedupe_key(*parts: str) -> str:
    key = ":".join(parts)
    if len(key) <= MAX_KEY:
        return key
    return f"{parts[0]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def malformed_key(raw: str) -> str:
    return f"bad:sha256:{hashlib.sha256(raw.encode('utf-8', 'replace')).hexdigest()}"


def _json_object(text: Any, what: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise MalformedReceipt(f"{what} is not a JSON string")
    try:
        value = json.loads(text)
    except ValueError as error:
        raise MalformedReceipt(f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise MalformedReceipt(f"{what} is not a JSON object")
    return value


def _tagged_delivery_id(mail: dict[str, Any]) -> int | None:
    tags = mail.get("tags")
    values = tags.get(DELIVERY_ID_TAG) if isinstance(tags, dict) else None
    if not isinstance(values, list) or not values:
        return None
    try:
        tagged = int(values[0])
    except (TypeError, ValueError):
        return None
    return tagged if 0 < tagged <= MAX_TAGGED_ID else None


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":  # 2018-10-08T14:05:45 +0000
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        moment = datetime.fromisoformat(text.replace(" +", "+").replace(" -", "-"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _sns_time(value: Any) -> datetime | None:
    """`2016-06-28 00:40:34.558` (UTC, no T, no zone)."""
    return _iso(value.replace(" ", "T", 1)) if isinstance(value, str) else None


def _price(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    return price if price.is_finite() and 0 <= price < MAX_PRICE else None
