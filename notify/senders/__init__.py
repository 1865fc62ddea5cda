"""Senders: settings into email and SMS senders (called by notify.bootstrap, the composition root).

`from_settings` picks `aws` (SES v2 + SNS), `smtp` (SES SMTP + SNS) or `memory`. boto3 honours
AWS_ENDPOINT_URL (how tests and the demo point it at moto); credentials come from boto3's own chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from email_validator import EmailNotValidError

from notify.errors import InputError
from notify.senders.base import (
    PROVIDER_EXCEPTIONS,
    EmailSender,
    OutgoingEmail,
    OutgoingSms,
    SendReceipt,
    SmsSender,
)
from notify.senders.failover import FailoverEmailSender, FailoverMemory
from notify.senders.memory import MemorySender
from notify.senders.ses import SesEmailSender
from notify.senders.smtp import SmtpEmailSender
from notify.senders.sns import SnsSmsSender
from notify.settings import SenderKind, Settings, SettingsError

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sns import SNSClient

__all__ = [
    "EmailSender",
    "OutgoingEmail",
    "OutgoingSms",
    "SendReceipt",
    "Senders",
    "SmsSender",
    "aws_client",
    "email_sender_from_settings",
    "from_settings",
    "send_test_email",
    "with_email_failover",
]

# SES and SNS have no idempotency key: an SDK retry of a lost response would send twice.
SEND_ATTEMPTS = 1
READ_ATTEMPTS = 3
TEST_SUBJECT = "notifyops test email"


@dataclass
class Senders:
    email: EmailSender
    sms: SmsSender

    def close(self) -> None:
        self.email.close()
        if self.sms is not self.email:
            self.sms.close()

    def __enter__(self) -> Senders:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def aws_client(service: str, settings: Settings, *, retries: bool = False) -> Any:
    """A boto3 client; send calls use retries=False (exactly one HTTP attempt per call).

    retries=True (reads, CloudWatch, alerts) is botocore's standard mode with 3 attempts.
    """
    config = Config(
        retries={
            "total_max_attempts": READ_ATTEMPTS if retries else SEND_ATTEMPTS,
            "mode": "standard",
        },
        connect_timeout=5,
        read_timeout=10,
        max_pool_connections=settings.send_concurrency * 2,
    )
    session = boto3.session.Session()
    return session.client(service, region_name=settings.aws_region, config=config)  # type: ignore[call-overload]


ClientFactory = Callable[[str], Any]


def from_settings(settings: Settings, *, client: ClientFactory | None = None) -> Senders:
    """The senders NOTIFY_SENDER names. `client(service)` gives the boto3 send clients (the
    runtime's, so they are built once per process); without it they are built here."""
    if settings.sender is SenderKind.memory:
        memory = MemorySender()
        return Senders(email=memory, sms=memory)
    client = client or (lambda service: aws_client(service, settings))
    sns = cast("SNSClient", client("sns"))
    return Senders(email=email_sender_from_settings(settings, client=client), sms=SnsSmsSender(sns))


def email_sender_from_settings(
    settings: Settings, *, client: ClientFactory | None = None
) -> EmailSender:
    if settings.sender is SenderKind.memory:
        return MemorySender()
    if settings.sender is SenderKind.smtp:
        return _smtp_sender(settings)
    client = client or (lambda service: aws_client(service, settings))
    return SesEmailSender(
        cast("SESV2Client", client("sesv2")), configuration_set=settings.ses_configuration_set
    )


def with_email_failover(
    senders: Senders,
    settings: Settings,
    *,
    clock: Callable[[], datetime],
    memory: FailoverMemory | None = None,
) -> Senders:
    """`senders` with email failing over from the SES API to SES SMTP, when it can: the API
    sender (NOTIFY_SENDER=aws), SMTP credentials set and NOTIFY_EMAIL_FAILOVER_AFTER_S > 0;
    otherwise `senders` unchanged."""
    configured = settings.smtp_username and settings.smtp_password is not None
    if settings.sender is not SenderKind.aws or not configured:
        return senders
    if settings.email_failover_after_s <= 0:
        return senders
    email = FailoverEmailSender(
        senders.email,
        _smtp_sender(settings),
        after=timedelta(seconds=settings.email_failover_after_s),
        probe_every=timedelta(seconds=settings.email_failover_probe_s),
        clock=clock,
        memory=memory,
    )
    return Senders(email=email, sms=senders.sms)


def _smtp_sender(settings: Settings) -> SmtpEmailSender:
    if not settings.smtp_username or settings.smtp_password is None:
        raise SettingsError(
            "NOTIFY_SMTP_USERNAME and NOTIFY_SMTP_PASSWORD are required when NOTIFY_SENDER=smtp "
            "(accepted: SES SMTP credentials from the SES console)"
        )
    return SmtpEmailSender(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_username,
        settings.smtp_password.get_secret_value(),
        starttls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_s,
        configuration_set=settings.ses_configuration_set,
    )


def send_test_email(sender: EmailSender, settings: Settings, address: str) -> SendReceipt:
    """One real email through `sender`; DeliveryError or InputError on failure."""
    return sender.send_email(_test_email(settings, _valid_address(address)))


def _valid_address(address: str) -> str:
    """The address as the roster would store it (spaces around it are not part of it)."""
    from notify.validation import ses_address

    try:
        return ses_address(address)
    except EmailNotValidError as exc:
        raise InputError(
            f"ADDRESS {address!r}: {exc} (accepted: an email address such as ops@example.com)"
        ) from exc


def _test_email(settings: Settings, to: str) -> OutgoingEmail:
    text = (
        f"This is a test email from notifyops, sent through NOTIFY_SENDER={settings.sender}.\n"
        "If you can read it, email delivery works.\n"
    )
    html = f"<p>{text.replace(chr(10), '<br>')}</p>"
    return OutgoingEmail(
        to=to, subject=TEST_SUBJECT, text=text, html=html, sender=settings.email_from
    )


def ses_rate(settings: Settings, ses_client: Callable[[], Any] | None = None) -> float:
    """NOTIFY_SES_RATE, or with `auto` the account's MaxSendRate (SES GetSendQuota)."""
    if settings.ses_rate != "auto":
        return settings.ses_rate
    try:
        client = ses_client() if ses_client else aws_client("ses", settings, retries=True)
        return float(client.get_send_quota()["MaxSendRate"])
    except PROVIDER_EXCEPTIONS as exc:
        from notify.errors import classify_exception, provider_text

        error = classify_exception(exc, written=False)
        raise SettingsError(
            f"NOTIFY_SES_RATE=auto: SES GetSendQuota failed in {settings.aws_region} "
            f"({error.code}: {provider_text(error.message, 120)}), so the email send rate is "
            "unknown (no delivery runs without it: queued rows wait): allow ses:GetSendQuota to "
            "the workers' AWS "
            "identity, or set NOTIFY_SES_RATE to the account's maximum send rate (SES console, "
            "Account dashboard)"
        ) from exc
