"""notify.senders with real parts: boto3 against moto, smtplib against aiosmtpd, nothing patched.

Faults moto cannot produce are injected on the real boto3 client through botocore's `before-send`
event: the handler answers with a real-shaped error body, botocore parses it and runs its real
retry logic, and counting the handler's calls proves the client made exactly one HTTP attempt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders

from notify.errors import DeliveryError, ErrorClass, InputError, classify
from notify.senders import (
    TEST_SUBJECT,
    Senders,
    aws_client,
    email_sender_from_settings,
    from_settings,
    send_test_email,
)
from notify.senders.base import OutgoingEmail, OutgoingSms
from notify.senders.memory import MemorySender
from notify.senders.ses import SesEmailSender
from notify.senders.smtp import SmtpEmailSender
from notify.senders.sns import SnsSmsSender
from notify.settings import Settings, SettingsError, load_settings
from tests.aws_fixtures import (
    VERIFIED_SENDER,
    SmtpServer,
    SmtpServerFactory,
    TlsFiles,
    free_port,
    moto_sent,
)

pytest_plugins = ["tests.aws_fixtures"]

EMAIL = OutgoingEmail(
    to="tech@example.com",
    subject="Repair TEST-001 assigned",
    text="Unit 1234 needs a windshield repair.",
    html="<p>Unit <b>1234</b> needs a windshield repair.</p>",
    sender=VERIFIED_SENDER,
)
SMS = OutgoingSms(phone="+15551234567", body="Repair TEST-001 assigned", transactional=True)
SEND_EMAIL_EVENT = "before-send.sesv2.SendEmail"
PUBLISH_EVENT = "before-send.sns.Publish"


def aws_settings(**overrides: Any) -> Settings:
    return load_settings(**{"sender": "aws", "email_from": VERIFIED_SENDER, **overrides})


# --- SES against moto ---------------------------------------------------------------------------


def test_ses_sender_sends_subject_body_and_destination(aws_env: str) -> None:
    receipt = email_sender_from_settings(aws_settings()).send_email(EMAIL)
    [sent] = moto_sent(aws_env)["email"]
    assert sent["id"] == receipt.provider_message_id
    assert (sent["source"], sent["subject"], sent["body"]) == (
        VERIFIED_SENDER,
        EMAIL.subject,
        EMAIL.html,
    )
    assert sent["destinations"]["ToAddresses"] == [EMAIL.to]


def test_ses_sender_sends_text_when_there_is_no_html(aws_env: str) -> None:
    email_sender_from_settings(aws_settings()).send_email(replace(EMAIL, html=None))
    assert [sent["body"] for sent in moto_sent(aws_env)["email"]] == [EMAIL.text]


def test_ses_unverified_sender_is_a_config_error_that_stops_the_batch(aws_env: str) -> None:
    sender = email_sender_from_settings(aws_settings())
    with pytest.raises(DeliveryError) as caught:
        sender.send_email(replace(EMAIL, sender="nobody@example.com"))
    assert (caught.value.code, caught.value.error_class) == (
        "MessageRejected",
        ErrorClass.config,
    )
    assert caught.value.stops_batch
    assert "NOTIFY_EMAIL_FROM" in caught.value.fix
    assert moto_sent(aws_env)["email"] == []


# --- SNS against moto ---------------------------------------------------------------------------


def _observe(client: Any, event: str) -> list[AWSPreparedRequest]:
    """Record each request the real client sends (the handler returns None: moto answers)."""
    seen: list[AWSPreparedRequest] = []

    def record(request: AWSPreparedRequest, **_: Any) -> None:
        seen.append(request)

    client.meta.events.register(event, record)
    return seen


@pytest.mark.parametrize(
    ("transactional", "sms_type"), [(True, "Transactional"), (False, "Promotional")]
)
def test_sns_sender_publishes_sms_with_its_type(
    aws_env: str, transactional: bool, sms_type: str
) -> None:
    client = aws_client("sns", aws_settings())
    requests = _observe(client, PUBLISH_EVENT)
    receipt = SnsSmsSender(client).send_sms(replace(SMS, transactional=transactional))
    [sent] = moto_sent(aws_env)["sms"]
    assert sent == {
        "message_id": receipt.provider_message_id,
        "phone_number": SMS.phone,
        "message": SMS.body,
    }
    form = parse_qs(str(requests[0].body))
    assert form["MessageAttributes.entry.1.Name"] == ["AWS.SNS.SMS.SMSType"]
    assert form["MessageAttributes.entry.1.Value.StringValue"] == [sms_type]


def test_sns_opt_out_is_asked_once_per_phone(aws_env: str) -> None:
    client = aws_client("sns", aws_settings())
    asked = _observe(client, "before-send.sns.CheckIfPhoneNumberIsOptedOut")
    sender = SnsSmsSender(client)
    answers = [sender.is_opted_out(phone) for phone in ("+15551234599", "+15551234567") * 2]
    assert answers == [True, False, True, False]
    assert len(asked) == 2


def test_sns_bad_phone_is_a_permanent_error_with_the_e164_fix(aws_env: str) -> None:
    sender = SnsSmsSender(aws_client("sns", aws_settings()))
    with pytest.raises(DeliveryError) as caught:
        sender.send_sms(replace(SMS, phone="555-1234"))
    assert (caught.value.code, caught.value.error_class) == (
        "InvalidParameter",
        ErrorClass.permanent,
    )
    assert "E.164" in caught.value.fix


# --- fault injection on the real boto3 client: one HTTP attempt per send -------------------------


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


def _rest_json_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    headers = {
        "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/",
        "Content-Type": "application/json",
    }
    return status, headers, json.dumps({"message": message}).encode()


def _query_xml_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = (
        '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>9b6e5f2e-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
    )
    return status, {"Content-Type": "text/xml"}, body.encode()


def _headers(values: dict[str, str]) -> HTTPHeaders:
    headers = HTTPHeaders()
    for name, value in values.items():
        headers[name] = value
    return headers


@contextmanager
def _injected(
    client: Any, event: str, fault: tuple[int, dict[str, str], bytes]
) -> Iterator[list[int]]:
    """Answer `event` with `fault` instead of sending; yields the list of attempts made."""
    calls: list[int] = []

    def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        calls.append(1)
        status, headers, body = fault
        return AWSResponse(request.url, status, _headers(headers), _Body(body))

    client.meta.events.register(event, answer, unique_id="fault")
    try:
        yield calls
    finally:
        client.meta.events.unregister(event, unique_id="fault")


@pytest.fixture(scope="module")
def fault_clients(moto_server: str) -> dict[str, Any]:
    """Real send clients (our config), built once per module; faulted calls never reach moto."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", moto_server)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        settings = aws_settings()
        return {"sesv2": aws_client("sesv2", settings), "sns": aws_client("sns", settings)}


TR, QU, CF = ErrorClass.transient, ErrorClass.quota, ErrorClass.config
# a proxy or captive portal between this host and AWS answering 200 with a page of its own
PROXY_PAGE = (200, {"Content-Type": "text/html"}, b"<html><title>Log in</title></html>")
SES_FAULTS = [
    (_rest_json_error(400, "Throttling", "Maximum sending rate exceeded."), "Throttling", TR),
    (_rest_json_error(400, "Throttling", "Daily message quota exceeded."), "Throttling", QU),
    (_rest_json_error(429, "TooManyRequestsException", "Too many"), "TooManyRequestsException", TR),
    (
        _rest_json_error(400, "AccountSuspendedException", "Suspended"),
        "AccountSuspendedException",
        CF,
    ),
    (  # NOTIFY_SES_CONFIGURATION_SET names a set this region does not have
        _rest_json_error(404, "NotFoundException", "Configuration set <nope> does not exist."),
        "NotFoundException",
        CF,
    ),
    ((500, {"Content-Type": "text/plain"}, b"upstream connect error or disconnect"), "500", TR),
    ((503, {}, b""), "503", TR),
    (PROXY_PAGE, "NoMessageId", TR),  # not SES's answer: sent again, as a 5xx is
]
SNS_FAULTS = [
    (_query_xml_error(400, "Throttling", "Rate exceeded"), "Throttling", TR),
    (_query_xml_error(429, "Throttled", "Rate exceeded"), "Throttled", TR),
    (_query_xml_error(500, "InternalError", "Internal error"), "InternalError", TR),
    ((500, {}, b"Internal Server Error"), "ResponseParserError", TR),
    (_query_xml_error(403, "AuthorizationError", "Not authorized"), "AuthorizationError", CF),
    (PROXY_PAGE, "NoMessageId", TR),
    ((200, {"Content-Type": "text/html"}, b"<html><body><hr><p>Log in"), "ResponseParserError", TR),
]


@pytest.mark.parametrize(("fault", "code", "error_class"), SES_FAULTS)
def test_ses_fault_is_classified_after_exactly_one_http_attempt(
    fault_clients: dict[str, Any],
    fault: tuple[int, dict[str, str], bytes],
    code: str,
    error_class: ErrorClass,
) -> None:
    client = fault_clients["sesv2"]
    with (
        _injected(client, SEND_EMAIL_EVENT, fault) as calls,
        pytest.raises(DeliveryError) as caught,
    ):
        SesEmailSender(client).send_email(EMAIL)
    assert (caught.value.code, caught.value.error_class) == (code, error_class)
    assert len(calls) == 1, "botocore retried a send: an SDK retry can deliver twice"


@pytest.mark.parametrize(("fault", "code", "error_class"), SNS_FAULTS)
def test_sns_fault_is_classified_after_exactly_one_http_attempt(
    fault_clients: dict[str, Any],
    fault: tuple[int, dict[str, str], bytes],
    code: str,
    error_class: ErrorClass,
) -> None:
    client = fault_clients["sns"]
    with _injected(client, PUBLISH_EVENT, fault) as calls, pytest.raises(DeliveryError) as caught:
        SnsSmsSender(client).send_sms(SMS)
    assert (caught.value.code, caught.value.error_class) == (code, error_class)
    assert len(calls) == 1, "botocore retried a send: an SDK retry can deliver twice"


def test_aws_client_config_one_attempt_for_sends_three_for_reads(aws_env: str) -> None:
    settings = aws_settings(send_concurrency=6, aws_region="eu-west-1")
    send, read = aws_client("sesv2", settings), aws_client("cloudwatch", settings, retries=True)
    assert send.meta.config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert read.meta.config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert (send.meta.region_name, send.meta.config.max_pool_connections) == ("eu-west-1", 12)
    assert send.meta.endpoint_url == aws_env  # AWS_ENDPOINT_URL honoured, no custom setting


# --- SMTP against aiosmtpd (STARTTLS + AUTH required) ---------------------------------------------


def smtp_sender(server: SmtpServer, *, password: str | None = None) -> SmtpEmailSender:
    return SmtpEmailSender(
        server.host,
        server.port,
        server.username,
        password or server.password,
        ssl_context=server.client_tls,
        timeout=5,
    )


def test_smtp_sender_sends_multipart_alternative_over_starttls_with_auth(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server()
    sender = smtp_sender(server)
    receipt = sender.send_email(EMAIL)
    sender.close()
    [received] = server.messages
    assert str(received["Message-ID"]).strip("<>") == receipt.provider_message_id
    assert receipt.provider_message_id.endswith("@example.com")
    assert (received["Subject"], received["From"], received["To"]) == (
        EMAIL.subject,
        EMAIL.sender,
        EMAIL.to,
    )
    assert received.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content().strip() for part in received.iter_parts()}
    assert parts == {"text/plain": EMAIL.text, "text/html": EMAIL.html}
    assert server.handler.envelopes == [(VERIFIED_SENDER, [EMAIL.to])]


def test_smtp_sender_uses_the_message_id_in_an_ses_style_reply(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server(reply="250 Ok 0100018b9c3e1a2f-5c1e-4d2b-9f00-000000000000-000000")
    receipt = smtp_sender(server).send_email(EMAIL)
    assert receipt.provider_message_id == "0100018b9c3e1a2f-5c1e-4d2b-9f00-000000000000-000000"


def test_smtp_wrong_password_is_a_config_error_that_stops_the_batch(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server()
    with pytest.raises(DeliveryError) as caught:
        smtp_sender(server, password="wrong").send_email(EMAIL)
    assert (caught.value.code, caught.value.error_class) == (
        "SMTPAuthenticationError",
        ErrorClass.config,
    )
    assert caught.value.stops_batch and "535" in caught.value.message
    assert "NOTIFY_SMTP_PASSWORD" in caught.value.fix
    assert server.messages == []


def test_smtp_454_above_the_rate_is_transient_and_the_connection_stays_usable(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server(max_messages=1)
    sender = smtp_sender(server)
    sender.send_email(EMAIL)
    for _ in range(2):
        with pytest.raises(DeliveryError) as caught:
            sender.send_email(EMAIL)
        assert (caught.value.code, caught.value.error_class) == ("SMTP454", ErrorClass.transient)
    assert (len(server.messages), server.authenticator.logins) == (1, 1)


def test_smtp_554_unverified_recipient_in_the_sandbox_is_permanent(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server(verified_recipients=frozenset({"someone-else@example.com"}))
    with pytest.raises(DeliveryError) as caught:
        smtp_sender(server).send_email(EMAIL)
    assert (caught.value.code, caught.value.error_class) == ("SMTP554", ErrorClass.permanent)
    assert "production access" in caught.value.fix


@pytest.mark.parametrize("sender", [VERIFIED_SENDER, f"Dispatch <{VERIFIED_SENDER}>"])
def test_smtp_554_naming_our_unverified_sender_is_a_config_error_that_stops_the_batch(
    smtp_server: SmtpServerFactory, sender: str
) -> None:
    """Before, SES SMTP's "not verified" naming our own sender was the recipient's problem
    (permanent, fix: request production access): through SMTP (NOTIFY_SENDER=smtp or the
    failover) every email failed for good one by one, as the API path would not let happen."""
    server = smtp_server(allowed_senders=frozenset({"someone-else@example.com"}))
    with pytest.raises(DeliveryError) as caught:
        smtp_sender(server).send_email(replace(EMAIL, sender=sender))
    assert (caught.value.code, caught.value.error_class) == ("SMTP554", ErrorClass.config)
    assert caught.value.stops_batch and "NOTIFY_EMAIL_FROM" in caught.value.fix
    assert server.messages == []


def test_smtp_keeps_one_connection_per_thread(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    sender = smtp_sender(server)
    for _ in range(3):
        sender.send_email(EMAIL)
    assert server.authenticator.logins == 1
    with ThreadPoolExecutor(max_workers=4) as pool:
        receipts = list(pool.map(sender.send_email, [EMAIL] * 12))
    sender.close()
    assert len({receipt.provider_message_id for receipt in receipts}) == 12
    assert len(server.messages) == 15
    assert 2 <= server.authenticator.logins <= 5


def test_smtp_reconnects_once_when_the_server_closed_an_idle_connection(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server(idle_timeout_s=0.2)
    sender = smtp_sender(server)
    sender.send_email(EMAIL)
    time.sleep(0.5)  # aiosmtpd drops the idle connection
    sender.send_email(EMAIL)
    assert (len(server.messages), server.authenticator.logins) == (2, 2)


def test_smtp_default_tls_context_verifies_the_server_certificate(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server()
    sender = SmtpEmailSender(server.host, server.port, server.username, server.password, timeout=5)
    with pytest.raises(DeliveryError) as caught:
        sender.send_email(EMAIL)
    assert (caught.value.code, caught.value.error_class) == (
        "SSLCertVerificationError",
        ErrorClass.config,
    )


def test_smtp_connection_refused_is_transient() -> None:
    sender = SmtpEmailSender("127.0.0.1", free_port(), "user", "password", timeout=2)
    with pytest.raises(DeliveryError) as caught:
        sender.send_email(EMAIL)
    assert caught.value.error_class is ErrorClass.transient


def test_smtp_line_break_in_a_header_is_permanent_and_nothing_is_sent(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server()
    with pytest.raises(DeliveryError) as caught:
        smtp_sender(server).send_email(replace(EMAIL, subject="Hi\nBcc: everyone@example.com"))
    assert (caught.value.code, caught.value.error_class) == ("InvalidContent", ErrorClass.permanent)
    assert server.messages == [] and server.authenticator.logins == 0


# --- memory sender --------------------------------------------------------------------------------


def _fail_for(address: str) -> Callable[[OutgoingEmail | OutgoingSms], DeliveryError | None]:
    def fail(message: OutgoingEmail | OutgoingSms) -> DeliveryError | None:
        if isinstance(message, OutgoingEmail) and message.to == address:
            return DeliveryError(classify("Throttling", "Maximum sending rate exceeded."))
        return None

    return fail


def test_memory_sender_records_sends_and_fails_as_configured() -> None:
    sender = MemorySender(fail=_fail_for("bounce@example.com"), opted_out={"+15551234599"})
    receipt = sender.send_email(EMAIL)
    sms_receipt = sender.send_sms(SMS)
    with pytest.raises(DeliveryError) as caught:
        sender.send_email(replace(EMAIL, to="bounce@example.com"))
    assert caught.value.error_class is ErrorClass.transient
    assert (sender.emails, sender.sms) == ([EMAIL], [SMS])
    assert sender.receipts == {
        receipt.provider_message_id: EMAIL,
        sms_receipt.provider_message_id: SMS,
    }
    assert receipt.provider_message_id.startswith("mem-")
    assert [message for message, _ in sender.failures] == [replace(EMAIL, to="bounce@example.com")]
    assert (sender.is_opted_out("+15551234599"), sender.is_opted_out(SMS.phone)) == (True, False)


def test_memory_sender_is_safe_and_concurrent_from_a_thread_pool() -> None:
    sender = MemorySender(latency_s=0.02)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(sender.send_email, [EMAIL] * 64))
    assert time.monotonic() - started < 0.02 * 64 / 2  # sleeps overlap
    assert len(sender.emails) == len(sender.receipts) == 64


# --- composition root and the test email ---------------------------------------------------------


def test_from_settings_builds_ses_and_sns_for_aws(aws_env: str) -> None:
    senders = from_settings(aws_settings())
    assert isinstance(senders.email, SesEmailSender) and isinstance(senders.sms, SnsSmsSender)
    senders.close()


def test_from_settings_builds_smtp_and_sns_for_smtp(aws_env: str) -> None:
    settings = aws_settings(sender="smtp", smtp_username="AKIAEXAMPLE", smtp_password="secret")
    senders = from_settings(settings)
    assert isinstance(senders.email, SmtpEmailSender) and isinstance(senders.sms, SnsSmsSender)
    assert "secret" not in repr(senders.email) and "AKIAEXAMPLE" not in repr(senders.email)
    senders.close()


def test_from_settings_refuses_smtp_without_credentials() -> None:
    with pytest.raises(SettingsError, match="NOTIFY_SMTP_USERNAME"):
        from_settings(load_settings(sender="smtp", smtp_username=None, smtp_password=None))


def test_from_settings_builds_one_memory_sender_for_both_channels() -> None:
    senders = from_settings(load_settings(sender="memory"))
    assert isinstance(senders.email, MemorySender) and senders.sms is senders.email
    with senders:
        pass
    assert senders.email.closed
    assert isinstance(senders, Senders)


def test_send_test_email_through_ses_returns_the_message_id(aws_env: str) -> None:
    settings = aws_settings()
    receipt = send_test_email(email_sender_from_settings(settings), settings, "ops@example.com")
    [sent] = moto_sent(aws_env)["email"]
    assert (sent["id"], sent["subject"]) == (receipt.provider_message_id, TEST_SUBJECT)
    assert sent["destinations"]["ToAddresses"] == ["ops@example.com"]


def test_send_test_email_through_smtp_from_settings(
    smtp_server: SmtpServerFactory, smtp_tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server()
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_tls_files.cert))  # the default context trusts it
    settings = load_settings(
        sender="smtp",
        email_from=VERIFIED_SENDER,
        smtp_host=server.host,
        smtp_port=server.port,
        smtp_username=server.username,
        smtp_password=server.password,
    )
    sender = email_sender_from_settings(settings)
    receipt = send_test_email(sender, settings, "ops@example.com")
    sender.close()
    [received] = server.messages
    assert str(received["Message-ID"]).strip("<>") == receipt.provider_message_id
    assert received["Subject"] == TEST_SUBJECT


def test_send_test_email_takes_an_address_pasted_with_spaces_around_it() -> None:
    """As `recipients import` stores the address: the spaces a paste brings are not part of it."""
    settings = load_settings(sender="memory")
    sender = email_sender_from_settings(settings)
    assert isinstance(sender, MemorySender)
    send_test_email(sender, settings, "  ops@example.com \n")
    assert [email.to for email in sender.emails] == ["ops@example.com"]


@pytest.mark.parametrize("address", ["not-an-address", "ops@", "two@@example.com", "", "  "])
def test_send_test_email_rejects_a_bad_address_before_sending(address: str) -> None:
    with pytest.raises(InputError, match="ADDRESS"):
        settings = load_settings(sender="memory")
        send_test_email(email_sender_from_settings(settings), settings, address)


def test_email_sender_from_settings_builds_only_the_email_side() -> None:
    assert isinstance(email_sender_from_settings(load_settings(sender="memory")), MemorySender)


def test_not_verified_stays_permanent_when_it_names_the_recipient_not_our_sender() -> None:
    from notify.errors import ADDRESS_NOT_VERIFIED
    from notify.senders.ses import sender_aware

    text = "Email address is not verified. The following identities failed the check: tech@x.com"
    recipient_side = sender_aware(DeliveryError(ADDRESS_NOT_VERIFIED, text), "ops@example.com")
    assert recipient_side.error_class is ErrorClass.permanent
    sender_side = sender_aware(DeliveryError(ADDRESS_NOT_VERIFIED, text), "tech@x.com")
    assert sender_side.error_class is ErrorClass.config
    named = sender_aware(DeliveryError(ADDRESS_NOT_VERIFIED, text), "Field Ops <TECH@x.com>")
    assert named.error_class is ErrorClass.config  # a display name is not in SES's text


def test_ses_rate_auto_reads_the_account_send_quota(aws_env: str) -> None:
    from notify.senders import ses_rate

    assert ses_rate(aws_settings()) == 14.0
    assert ses_rate(aws_settings().model_copy(update={"ses_rate": "auto"})) == 1.0  # moto sandbox


def test_ses_rate_auto_without_send_quota_names_the_setting_and_the_permission(
    aws_env: str,
) -> None:
    """Before, `auto` with an IAM policy that allows sending but not ses:GetSendQuota (or SES
    out of reach) stopped every delivery, SMS too, with a bare `ClientError: ... AccessDenied`."""
    from notify.senders import ses_rate

    settings = aws_settings(ses_rate="auto")
    client = aws_client("ses", settings, retries=True)
    denied = _query_xml_error(403, "AccessDenied", "not authorized to perform: ses:GetSendQuota")
    with (
        _injected(client, "before-send.ses.GetSendQuota", denied),
        pytest.raises(SettingsError) as caught,
    ):
        ses_rate(settings, lambda: client)
    line = str(caught.value)
    assert line.startswith("NOTIFY_SES_RATE=auto: SES GetSendQuota failed in us-east-1")
    assert "AccessDenied" in line and "ses:GetSendQuota" in line and "\n" not in line
