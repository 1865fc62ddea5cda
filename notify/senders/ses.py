"""Email through the SES v2 API (`sesv2.send_email`, simple content)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from notify.errors import classify_exception
from notify.senders.base import (
    PROVIDER_EXCEPTIONS,
    OutgoingEmail,
    SendReceipt,
    answered_message_id,
    sender_aware,
)

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sesv2.type_defs import BodyTypeDef, ContentTypeDef, SendEmailRequestTypeDef

__all__ = ["SesEmailSender", "send_email_request", "sender_aware"]

CHARSET = "UTF-8"
DELIVERY_ID_TAG = "delivery_id"  # SES publishes it in every event as mail.tags.delivery_id


class SesEmailSender:
    """One SES v2 client, shared by all threads (boto3 clients are thread-safe)."""

    def __init__(self, client: SESV2Client, *, configuration_set: str | None = None) -> None:
        self._client = client
        self._configuration_set = configuration_set

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        request = send_email_request(message, configuration_set=self._configuration_set)
        try:
            response = self._client.send_email(**request)
        except PROVIDER_EXCEPTIONS as exc:
            raise sender_aware(classify_exception(exc), message.sender) from exc
        return answered_message_id(response, "SES")

    def close(self) -> None:
        self._client.close()


def send_email_request(
    message: OutgoingEmail, *, configuration_set: str | None = None
) -> SendEmailRequestTypeDef:
    """The `send_email` keyword arguments for one message to one recipient; with a
    configuration set SES publishes its events, with a delivery id they carry our tag."""
    body: BodyTypeDef = {"Text": _content(message.text)}
    if message.html is not None:
        body["Html"] = _content(message.html)
    request: SendEmailRequestTypeDef = {
        "FromEmailAddress": message.sender,
        "Destination": {"ToAddresses": [message.to]},
        "Content": {"Simple": {"Subject": _content(message.subject), "Body": body}},
    }
    if configuration_set:
        request["ConfigurationSetName"] = configuration_set
    if message.delivery_id is not None:
        request["EmailTags"] = [{"Name": DELIVERY_ID_TAG, "Value": str(message.delivery_id)}]
    return request


def _content(data: str) -> ContentTypeDef:
    return {"Data": data, "Charset": CHARSET}
