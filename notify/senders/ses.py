"""Email through the SES v2 API (`sesv2.send_email`, simple content)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from notify.errors import (
    ADDRESS_NOT_VERIFIED,
    SENDER_NOT_VERIFIED,
    DeliveryError,
    classify_exception,
)
from notify.senders.base import PROVIDER_EXCEPTIONS, OutgoingEmail, SendReceipt

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sesv2.type_defs import BodyTypeDef, ContentTypeDef, SendEmailRequestTypeDef

CHARSET = "UTF-8"


class SesEmailSender:
    """One SES v2 client, shared by all threads (boto3 clients are thread-safe)."""

    def __init__(self, client: SESV2Client) -> None:
        self._client = client

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        try:
            response = self._client.send_email(**send_email_request(message))
        except PROVIDER_EXCEPTIONS as exc:
            raise sender_aware(classify_exception(exc), message.sender) from exc
        return SendReceipt(provider_message_id=response["MessageId"])

    def close(self) -> None:
        self._client.close()


def sender_aware(error: DeliveryError, sender: str) -> DeliveryError:
    """SES says "not verified" for an unverified sender and for a sandboxed recipient alike;
    when the text names our own sender, it is a configuration error that stops the batch."""
    if error.kind is ADDRESS_NOT_VERIFIED and sender.lower() in error.message.lower():
        return DeliveryError(SENDER_NOT_VERIFIED, error.message, error.code)
    return error


def send_email_request(message: OutgoingEmail) -> SendEmailRequestTypeDef:
    """The `send_email` keyword arguments for one message to one recipient."""
    body: BodyTypeDef = {"Text": _content(message.text)}
    if message.html is not None:
        body["Html"] = _content(message.html)
    return {
        "FromEmailAddress": message.sender,
        "Destination": {"ToAddresses": [message.to]},
        "Content": {"Simple": {"Subject": _content(message.subject), "Body": body}},
    }


def _content(data: str) -> ContentTypeDef:
    return {"Data": data, "Charset": CHARSET}
