"""notify.errors: the delivery taxonomy as tables; real exception objects, nothing patched."""

from __future__ import annotations

import pickle
import smtplib
import socket
import ssl
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from notify.errors import (
    KNOWN_KINDS,
    MAX_MESSAGE_CHARS,
    OPTED_OUT,
    DeliveryError,
    ErrorClass,
    ErrorKind,
    classify,
    classify_exception,
    error_line,
    provider_text,
)

T, P, Q, C = ErrorClass.transient, ErrorClass.permanent, ErrorClass.quota, ErrorClass.config
M = ErrorClass.maybe_sent
NOT_VERIFIED = (
    "Email address is not verified. The following identities failed the check in region "
    "US-EAST-1: tech@example.com"
)
SES_ENDPOINT = "https://email.us-east-1.amazonaws.com"

# code, message, HTTP status -> class, a fragment of the fix (the runbook's words where it has them)
TAXONOMY = [
    ("Throttling", "Maximum sending rate exceeded.", 400, T, "NOTIFY_SES_RATE"),
    ("Throttling", "Daily message quota exceeded.", 400, Q, "24-hour quota"),
    ("TooManyRequestsException", "Too many requests", 429, T, "backoff"),
    ("LimitExceededException", "Daily message quota exceeded.", 400, Q, "sending quota"),
    ("MessageRejected", NOT_VERIFIED, 400, P, "production access or verify the recipient"),
    ("MessageRejected", "Email address not verified x@example.com", 400, P, "production access"),
    ("MessageRejected", "Message contains a virus", 400, P, "template"),
    ("MailFromDomainNotVerifiedException", "MAIL FROM domain not verified", 400, C, "MAIL FROM"),
    (
        "ConfigurationSetDoesNotExist",
        "Configuration set <x> does not exist",
        400,
        C,
        "NOTIFY_SES_CONFIGURATION_SET",
    ),
    # SES v2 and SES SMTP name a missing configuration set their own way: before, the first was
    # an unknown error retried until the row failed, the second a rejected message, one by one
    ("NotFoundException", "Configuration set <x> does not exist.", 404, C, "receipts setup"),
    (
        "SMTP554",
        "Configuration Set does not exist: Configuration set <x> does not exist.",
        None,
        C,
        "NOTIFY_SES_CONFIGURATION_SET",
    ),
    ("ConfigurationSetSendingPausedException", "paused", 400, C, "sending-enabled"),
    ("AccountSendingPausedException", "Account sending paused", 400, C, "reputation"),
    ("SendingPausedException", "Sending is paused", 400, C, "re-enable"),
    ("AccountSuspendedException", "Account suspended", 400, C, "AWS Support"),
    (
        "SMTPAuthenticationError",
        "Authentication Credentials Invalid",
        None,
        C,
        "Regenerate SMTP credentials in the SES console, update NOTIFY_SMTP_USERNAME/"
        "NOTIFY_SMTP_PASSWORD",
    ),
    ("SMTP535", "Authentication Credentials Invalid", None, C, "NOTIFY_SMTP_PASSWORD"),
    ("SMTP454", "Throttling failure: Maximum sending rate exceeded.", None, T, "NOTIFY_SES_RATE"),
    ("SMTP454", "Throttling failure: Daily message quota exceeded.", None, Q, "24-hour quota"),
    ("SMTP554", f"Message rejected: {NOT_VERIFIED}", None, P, "production access"),
    ("SMTP554", "Transaction failed: content rejected", None, P, "template"),
    ("SMTP421", "Service not available, closing channel", None, T, "backoff"),
    ("SMTP451", "Temporary service failure", None, T, "backoff"),
    ("SMTP450", "Mailbox busy", None, T, "backoff"),
    ("SMTP550", "Mailbox unavailable", None, P, "address"),
    ("SMTP553", "Invalid address syntax", None, P, "email-validator"),
    (
        "InvalidParameter",
        "Invalid parameter: PhoneNumber Reason: 555 is not valid",
        400,
        P,
        "Validate phone numbers at input (E.164, e.g. +15551234567)",
    ),
    ("InvalidParameter", "Phone number does not meet the E164 format", 400, P, "E.164"),
    ("InvalidParameter", "Invalid parameter: Message too long", 400, P, "template"),
    ("OptedOut", "", None, P, "opt"),
    ("Throttling", "Rate exceeded", 400, T, "NOTIFY_SNS_RATE"),
    ("Throttled", "Rate exceeded", 429, T, "NOTIFY_SNS_RATE"),
    ("InternalError", "Internal error", 500, T, "AWS Health"),
    ("InternalFailure", "", 500, T, "AWS Health"),
    ("ServiceUnavailable", "", 503, T, "AWS Health"),
    ("BrandNewError", "", 502, T, "AWS Health"),
    ("500", "Internal Server Error", 500, T, "AWS Health"),
    ("HTTP503", "", None, T, "AWS Health"),  # a stored code, classified again without the status
    ("HTTP403", "", None, C, "IAM"),
    ("AuthorizationError", "not authorized to perform: SNS:Publish", 403, C, "sns:Publish"),
    ("AccessDenied", "User is not authorized", 403, C, "IAM"),
    ("AccessDeniedException", "", 403, C, "IAM"),
    ("InvalidClientTokenId", "The security token is invalid", 403, C, "AWS_ACCESS_KEY_ID"),
    ("UnrecognizedClientException", "", 400, C, "credentials"),
    ("SignatureDoesNotMatch", "signature does not match", 403, C, "credentials"),
    ("ExpiredToken", "The security token has expired", 400, C, "rotate"),
    ("NoCredentialsError", "Unable to locate credentials", None, C, "credentials"),
    ("PartialCredentialsError", "Partial credentials found", None, C, "credentials"),
    ("SomethingForbidden", "", 403, C, "IAM"),
    ("ConnectTimeoutError", "Connect timeout", None, T, "network"),
    ("ReadTimeoutError", "Read timeout", None, M, "receipts"),
    ("EndpointConnectionError", "Could not connect", None, T, "network"),
    ("ConnectionClosedError", "Connection was closed", None, M, "receipts"),
    ("TimeoutError", "timed out", None, M, "receipts"),
    ("SMTPServerDisconnected", "Connection unexpectedly closed", None, M, "receipts"),
    ("ConnectionRefusedError", "Connection refused", None, T, "network"),
    ("SMTPConnectError", "Service not available", None, T, "network"),
    (
        "InvalidAddress",
        "not an email address",
        None,
        P,
        "Validate email addresses at input (email-validator)",
    ),
    ("BadRequestException", "Missing final '@domain'", 400, P, "email-validator"),
    ("BadRequestException", "Invalid header", 400, P, "template"),
    ("InvalidContent", "Header values may not contain linefeed", None, P, "template"),
    ("WhoKnows", "something odd", 400, T, "add its code to notify/errors.py"),
    ("WhoKnows", "something odd", None, T, "add its code to notify/errors.py"),
]


@pytest.mark.parametrize(("code", "message", "status", "error_class", "fix"), TAXONOMY)
def test_classify_maps_code_message_and_status_to_class_and_fix(
    code: str, message: str, status: int | None, error_class: ErrorClass, fix: str
) -> None:
    kind = classify(code, message, status)
    assert kind.error_class is error_class
    assert fix in kind.fix
    assert kind.cause


def test_every_known_kind_says_what_happened_and_what_to_do() -> None:
    assert len({(kind.code, kind.error_class, kind.cause) for kind in KNOWN_KINDS}) == len(
        KNOWN_KINDS
    )
    for kind in KNOWN_KINDS:
        assert kind.code and kind.cause and kind.fix, kind
    assert {kind.error_class for kind in KNOWN_KINDS} == set(ErrorClass)


def _client_error(code: str, message: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "SendEmail")


EXCEPTIONS: list[tuple[BaseException, ErrorClass, str]] = [
    (_client_error("Throttling", "Maximum sending rate exceeded.", 400), T, "Throttling"),
    (_client_error("Throttling", "Daily message quota exceeded.", 400), Q, "Throttling"),
    (_client_error("MessageRejected", NOT_VERIFIED, 400), P, "MessageRejected"),
    (
        _client_error("AccountSendingPausedException", "paused", 400),
        C,
        "AccountSendingPausedException",
    ),
    (_client_error("", "", 503), T, "HTTP503"),
    (
        ResponseParserError("Unable to parse response, invalid XML received: b'oops'"),
        T,
        "ResponseParserError",
    ),
    (NoCredentialsError(), C, "NoCredentialsError"),
    (
        PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        C,
        "PartialCredentialsError",
    ),
    (NoRegionError(), C, "NoRegionError"),
    (EndpointConnectionError(endpoint_url=SES_ENDPOINT), T, "EndpointConnectionError"),
    (ConnectTimeoutError(endpoint_url=SES_ENDPOINT), T, "ConnectTimeoutError"),
    (ReadTimeoutError(endpoint_url=SES_ENDPOINT), M, "ReadTimeoutError"),
    (ConnectionClosedError(endpoint_url=SES_ENDPOINT), M, "ConnectionClosedError"),
    (ParamValidationError(report="Invalid type for parameter"), P, "ParamValidationError"),
    (
        smtplib.SMTPAuthenticationError(535, b"Authentication Credentials Invalid"),
        C,
        "SMTPAuthenticationError",
    ),
    (
        smtplib.SMTPDataError(454, b"Throttling failure: Maximum sending rate exceeded."),
        T,
        "SMTP454",
    ),
    (
        smtplib.SMTPDataError(454, b"Throttling failure: Daily message quota exceeded."),
        Q,
        "SMTP454",
    ),
    (smtplib.SMTPDataError(554, f"Message rejected: {NOT_VERIFIED}".encode()), P, "SMTP554"),
    (smtplib.SMTPSenderRefused(451, b"Temporary local problem", "a@example.com"), T, "SMTP451"),
    (smtplib.SMTPResponseException(421, b"Service not available"), T, "SMTP421"),
    (
        smtplib.SMTPRecipientsRefused({"x@example.com": (550, b"Mailbox unavailable")}),
        P,
        "SMTP550",
    ),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), M, "SMTPServerDisconnected"),
    (
        smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."),
        C,
        "SMTPNotSupportedError",
    ),
    (smtplib.SMTPException("No suitable authentication method found."), C, "SMTPException"),
    (TimeoutError("timed out"), M, "TimeoutError"),
    (ConnectionResetError(104, "Connection reset by peer"), M, "ConnectionResetError"),
    (ConnectionRefusedError(111, "Connection refused"), T, "ConnectionRefusedError"),
    (socket.gaierror(-2, "Name or service not known"), T, "gaierror"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), C, "SSLCertVerificationError"),
    (ValueError("something else"), T, "ValueError"),
]


@pytest.mark.parametrize(("exc", "error_class", "code"), EXCEPTIONS, ids=lambda v: str(v)[:40])
def test_classify_exception_turns_provider_exceptions_into_delivery_errors(
    exc: BaseException, error_class: ErrorClass, code: str
) -> None:
    error = classify_exception(exc)
    assert (error.error_class, error.code) == (error_class, code)
    assert error.fix == error.kind.fix
    assert error.stops_batch is (error_class is ErrorClass.config)


def test_a_delivery_error_passes_through_unchanged() -> None:
    error = DeliveryError(OPTED_OUT, "+15551234599 opted out")
    assert classify_exception(error) is error


def test_delivery_error_reads_as_code_class_message_and_fix() -> None:
    error = classify_exception(_client_error("MessageRejected", NOT_VERIFIED, 400))
    assert str(error) == (
        f"MessageRejected (permanent): {NOT_VERIFIED} — fix: Request production access or verify "
        "the recipient address (SES console: Account dashboard > Request production access; "
        "Identities > Create identity)"
    )


def test_delivery_error_keeps_at_most_1000_characters_of_provider_text() -> None:
    error = DeliveryError(ErrorKind("X", ErrorClass.transient, "c", "f"), "y" * 5000)
    assert len(error.message) == MAX_MESSAGE_CHARS


def test_delivery_error_without_provider_text_uses_the_cause() -> None:
    error = DeliveryError(OPTED_OUT)
    assert (error.code, error.message, error.error_class) == ("OptedOut", OPTED_OUT.cause, P)


def test_delivery_error_survives_pickling() -> None:
    error = classify_exception(smtplib.SMTPAuthenticationError(535, b"Invalid"))
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.kind, copy.code, copy.message, str(copy)) == (
        error.kind,
        error.code,
        error.message,
        str(error),
    )


@pytest.mark.parametrize(
    ("exc", "written", "error_class"),
    [
        (TimeoutError("timed out"), False, T),
        (smtplib.SMTPServerDisconnected("closed"), False, T),
        (ConnectionRefusedError(111, "refused"), True, M),
        (TimeoutError("timed out"), True, M),
        (smtplib.SMTPDataError(451, b"Temporary local problem"), True, T),
    ],
    ids=str,
)
def test_what_the_sender_knows_about_the_request_decides_maybe_sent(
    exc: BaseException, written: bool, error_class: ErrorClass
) -> None:
    """A connection failure before anything was written is retried; after the request was
    written it is maybe sent; an answer from the server is an answer either way."""
    assert classify_exception(exc, written=written).error_class is error_class


def test_maybe_sent_tells_the_operator_to_check_receipts_before_redriving() -> None:
    error = classify_exception(ReadTimeoutError(endpoint_url=SES_ENDPOINT))
    assert error.error_class is ErrorClass.maybe_sent and not error.stops_batch
    assert "receipts" in error.fix and "redrive" in error.fix


FLASK_404 = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again.</p>\n"
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (FLASK_404, "404 Not Found"),
        (
            "<html><body><h1>Bad &amp; gone</h1>\n<p>try\nlater</p></body></html>",
            "Bad & gone try later",
        ),
        (
            "Email address is not verified:\n  Ann <ann@example.com>",
            "Email address is not verified: Ann <ann@example.com>",
        ),
        ("rate <n> exceeded for <email>", "rate <n> exceeded for <email>"),
        ("x" * 300, "x" * 199 + "…"),
    ],
)
def test_provider_text_is_one_short_line_without_markup(text: str, shown: str) -> None:
    assert provider_text(text) == shown


def test_an_error_line_of_an_html_page_is_its_title_not_its_doctype() -> None:
    page = ClientError({"Error": {"Code": "404", "Message": FLASK_404}}, "PutMetricData")
    assert error_line(page) == (
        "ClientError: An error occurred (404) when calling the PutMetricData operation: "
        "404 Not Found"
    )
    assert error_line(OSError("refused\nsecond line")) == "OSError: refused"
