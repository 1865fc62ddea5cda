"""SMS through SNS `publish(PhoneNumber=...)`, with a per-sender opt-out cache."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from notify.errors import classify_exception
from notify.senders.base import (
    PROVIDER_EXCEPTIONS,
    OutgoingSms,
    SendReceipt,
    answered_message_id,
    foreign_answer,
)

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import PublishInputTypeDef

SMS_TYPE_ATTRIBUTE = "AWS.SNS.SMS.SMSType"


class SnsSmsSender:
    """One SNS client, shared by all threads; opt-out answers cached for the sender's lifetime."""

    def __init__(self, client: SNSClient) -> None:
        self._client = client
        self._opted_out: dict[str, bool] = {}
        self._lock = threading.Lock()

    def send_sms(self, message: OutgoingSms) -> SendReceipt:
        try:
            response = self._client.publish(**publish_request(message))
        except PROVIDER_EXCEPTIONS as exc:
            raise classify_exception(exc) from exc
        except KeyError as exc:  # botocore found no PublishResult in the answer
            raise foreign_answer("SNS") from exc
        return answered_message_id(response, "SNS")

    def is_opted_out(self, phone: str) -> bool:
        with self._lock:
            cached = self._opted_out.get(phone)
        if cached is None:
            cached = self._ask_opted_out(phone)
            with self._lock:
                self._opted_out[phone] = cached
        return cached

    def close(self) -> None:
        self._client.close()

    def _ask_opted_out(self, phone: str) -> bool:
        try:
            response = self._client.check_if_phone_number_is_opted_out(phoneNumber=phone)
        except PROVIDER_EXCEPTIONS as exc:  # a read, not a send: a lost answer sent nothing
            raise classify_exception(exc, written=False) from exc
        return response["isOptedOut"]


def publish_request(message: OutgoingSms) -> PublishInputTypeDef:
    """The `publish` keyword arguments for one SMS.

    No delivery-id tag: SNS writes no message attribute into the SMS delivery-status log, so a
    receipt finds its row by the MessageId publish returns, or (crash rows) by destination and
    time window (notify.receipts)."""
    sms_type = "Transactional" if message.transactional else "Promotional"
    return {
        "PhoneNumber": message.phone,
        "Message": message.body,
        "MessageAttributes": {
            SMS_TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": sms_type},
        },
    }
