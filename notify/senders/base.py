"""What every sender speaks: outgoing messages, the receipt, the sender Protocols.

A sender raises `DeliveryError` (already classified) on any provider failure, never a raw provider
exception, and is safe to call from several threads at once (a deliverer keeps
NOTIFY_SEND_CONCURRENCY calls in flight from its sender threads). A connection failure is
classified by whether the request can have reached the provider: `transient` if not (retried),
`maybe_sent` if it may have (the row becomes `unknown`, never retried automatically).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from notify.errors import (
    ADDRESS_NOT_VERIFIED,
    PROVIDER_UNAVAILABLE,
    SENDER_NOT_VERIFIED,
    DeliveryError,
)


# slotted, not frozen: built once per message on the delivery path (notify.outbox.ClaimedRow)
@dataclass(slots=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str | None
    sender: str
    delivery_id: int | None = None  # our delivery_logs.id, tagged on the send (receipts find it)


@dataclass(slots=True)
class OutgoingSms:
    phone: str  # E.164, e.g. +15551234567
    body: str
    transactional: bool
    delivery_id: int | None = None  # SNS has no per-message tag that reaches the delivery log


@dataclass(slots=True)
class SendReceipt:
    provider_message_id: str
    route: str | None = None  # set when a failover sent it another way (notify.senders.failover)


class EmailSender(Protocol):
    def send_email(self, message: OutgoingEmail) -> SendReceipt: ...

    def close(self) -> None: ...


class SmsSender(Protocol):
    def send_sms(self, message: OutgoingSms) -> SendReceipt: ...

    def is_opted_out(self, phone: str) -> bool: ...

    def close(self) -> None: ...


# What a sender catches and classifies; anything else is a bug in our code and propagates.
PROVIDER_EXCEPTIONS: tuple[type[Exception], ...] = (
    ClientError,
    BotoCoreError,
    ResponseParserError,
    OSError,  # sockets, ssl and every smtplib exception
)


def answered_message_id(response: Mapping[str, Any], provider: str) -> SendReceipt:
    """The receipt of an AWS send's answer; one without a MessageId was not `provider`'s."""
    found = response.get("MessageId")
    if not found:
        raise foreign_answer(provider)
    return SendReceipt(provider_message_id=str(found))


def foreign_answer(provider: str) -> DeliveryError:
    """Something between this host and AWS (a proxy, a captive portal) answered 200 with a page
    of its own: botocore reads it as an empty answer (JSON APIs) or fails to find its result in
    it (KeyError, XML APIs). Classified as the provider being unavailable, as an answer botocore
    cannot parse at all is: the request did not reach the provider, and is sent again later."""
    return DeliveryError(
        PROVIDER_UNAVAILABLE,
        f"the answer held no MessageId: not {provider}'s own (a proxy or captive portal "
        "between this host and AWS?)",
        "NoMessageId",
    )


def sender_aware(error: DeliveryError, sender: str) -> DeliveryError:
    """SES says "not verified" for an unverified sender and for a sandboxed recipient alike, on
    the API and on SMTP (554); when the text names our own sender (its address, with or without
    the display name of `Ops <ops@example.com>`), it is a configuration error that stops the
    batch."""
    address = (parseaddr(sender)[1] or sender).strip().lower()
    if error.kind is ADDRESS_NOT_VERIFIED and address and address in error.message.lower():
        return DeliveryError(SENDER_NOT_VERIFIED, error.message, error.code)
    return error
