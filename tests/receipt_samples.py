"""SES event records shaped as the SES developer guide shows each type, the SNS envelope around
them, and SNS SMS delivery-status log lines (receipts-facts.md section 4)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

SENDER = "sender@example.com"


def mail(message_id: str, *, to: str, delivery_id: int | None, sent: str) -> dict[str, Any]:
    tags: dict[str, list[str]] = {
        "ses:configuration-set": ["notifyops-receipts"],
        "ses:source-ip": ["192.0.2.0"],
        "ses:from-domain": ["example.com"],
        "ses:caller-identity": ["ses_user"],
    }
    if delivery_id is not None:
        tags["delivery_id"] = [str(delivery_id)]
    return {
        "timestamp": sent,
        "source": SENDER,
        "sourceArn": f"arn:aws:ses:us-east-1:123456789012:identity/{SENDER}",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [to],
        "headersTruncated": False,
        "headers": [{"name": "From", "value": SENDER}, {"name": "To", "value": to}],
        "commonHeaders": {
            "from": [SENDER],
            "to": [to],
            "messageId": message_id,
            "subject": "Message sent from Amazon SES",
        },
        "tags": tags,
    }


def ses_event(
    kind: str,
    message_id: str,
    *,
    to: str = "recipient@example.com",
    delivery_id: int | None = None,
    sent: str = "2026-11-30T10:00:00.000Z",
    at: str = "2026-11-30T10:00:05.000Z",
    bounce_type: str = "Permanent",
    bounce_subtype: str = "General",
    feedback: str = "abuse",
) -> dict[str, Any]:
    """One SES event-publishing record of type `kind`."""
    record: dict[str, Any] = {
        "eventType": kind,
        "mail": mail(message_id, to=to, delivery_id=delivery_id, sent=sent),
    }
    feedback_id = f"01000157c44f053b-{uuid.uuid4()}-000000"
    bodies: dict[str, tuple[str, dict[str, Any]]] = {
        "Send": ("send", {}),
        "Delivery": (
            "delivery",
            {
                "timestamp": at,
                "processingTimeMillis": 11893,
                "recipients": [to],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "mta.example.com",
            },
        ),
        "Bounce": (
            "bounce",
            {
                "bounceType": bounce_type,
                "bounceSubType": bounce_subtype,
                "bouncedRecipients": [
                    {
                        "emailAddress": to,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": at,
                "feedbackId": feedback_id,
                "reportingMTA": "dsn; mta.example.com",
            },
        ),
        "Complaint": (
            "complaint",
            {
                "complainedRecipients": [{"emailAddress": to}],
                "timestamp": at,
                "feedbackId": feedback_id,
                "userAgent": "Mozilla/5.0 Chrome/60.0.3112.90 Safari/537.36",
                "complaintFeedbackType": feedback,
                "arrivalDate": at,
            },
        ),
        "Reject": ("reject", {"reason": "Bad content"}),
        "DeliveryDelay": (
            "deliveryDelay",
            {
                "timestamp": at,
                "delayType": "TransientCommunicationFailure",
                "expirationTime": "2026-12-01T10:00:00.000Z",
                "delayedRecipients": [
                    {
                        "emailAddress": to,
                        "status": "4.4.1",
                        "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
                    }
                ],
            },
        ),
        "RenderingFailure": (
            "failure",
            {
                "errorMessage": "Attribute 'name' is not present in the rendering data.",
                "templateName": "MyTemplate",
            },
        ),
    }
    key, body = bodies[kind]
    record[key] = body
    return record


def envelope(record: dict[str, Any] | str) -> str:
    """The SNS envelope SQS delivers with raw delivery off (Message is a JSON string)."""
    message = record if isinstance(record, str) else json.dumps(record)
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:notifyops-receipts",
            "Message": message,
            "Timestamp": "2026-11-30T10:00:06.000Z",
            "SignatureVersion": "2",
            "Signature": "M76Bu+1k==",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        }
    )


def sms_line(
    message_id: str,
    *,
    phone: str,
    ok: bool = True,
    price: float = 0.00645,
    published: datetime | str = "2026-11-30 10:00:00.000",
    response: str | None = None,
) -> str:
    """One SNS SMS delivery-status log line as CloudWatch Logs stores it."""
    when = (
        published.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        if isinstance(published, datetime)
        else published
    )
    delivery: dict[str, Any] = {
        "mnc": 270 if ok else 0,
        "numberOfMessageParts": 1,
        "destination": phone,
        "priceInUSD": price,
        "smsType": "Transactional",
        "mcc": 310 if ok else 0,
        "providerResponse": response
        or (
            "Message has been accepted by phone carrier"
            if ok
            else "Unknown error attempting to reach phone"
        ),
        "dwellTimeMs": 599,
    }
    if ok:
        delivery["phoneCarrier"] = "My Phone Carrier"
        delivery["dwellTimeMsUntilDeviceAck"] = 1344
    line = {
        "notification": {"messageId": message_id, "timestamp": when},
        "delivery": delivery,
        "status": "SUCCESS" if ok else "FAILURE",
    }
    return json.dumps(line)
