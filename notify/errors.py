"""Errors: what the user did wrong (InputError) and what a provider said (the delivery taxonomy).

A failed provider call is one of five classes. Connection failures are split by whether the
request can have reached the provider: "never reached" (connect refused or timed out, DNS, TLS
handshake, SMTP connect/HELO/AUTH) is `transient` and retried; "may have reached" (read timeout,
connection reset or closed after the request was written, SMTP disconnect or timeout after DATA)
is `maybe_sent`: the row becomes `unknown` and is never retried automatically, because SES and
SNS have no idempotency key and a retry would send a second copy.

`ErrorKind.provider_side` marks failures that say nothing about the message (5xx, throttling,
connection failures): they do not count as an attempt and they feed the deliverer's circuit
breaker; `ErrorKind.throttle` marks the ones that slow the adaptive pacer down.
"""

from __future__ import annotations

import html
import re
import smtplib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


class NotifyError(Exception):
    """An error the CLI reports as one readable line (exit code 2)."""


class InputError(NotifyError):
    """Bad input: the message names the bad field and the accepted form."""


ERROR_LINE_CHARS = 200
# An HTML page where an error message was expected (a proxy's or stand-in's 404/502 page): its
# markup, comments and script/style blocks. Only HTML's own tags: `<n>`, `<email>` (placeholders)
# and `Ann <ann@example.com>` stay.
_HTML_TAG = re.compile(
    r"<!--.*?-->|<(script|style)\b.*?</\1\s*>|<![^<>]*>"
    r"|</?(?:html|head|body|title|meta|link|h[1-6]|p|div|span|pre|code|br|hr|center|a|b|i|em"
    r"|strong|small|ul|ol|li|table|tbody|thead|tr|td|th|address|main|header|footer|nav)\b[^<>]*>",
    re.IGNORECASE | re.DOTALL,
)


_HTML_TITLE = re.compile(r"<title\b[^<>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def provider_text(text: str, limit: int = ERROR_LINE_CHARS) -> str:
    """A provider's error text as reports show it: one line, whitespace collapsed, at most
    `limit` characters (cut with `…`); an HTML page in it (from its first tag on) as the page's
    title (`404 Not Found`), or its text without the markup when it has none."""
    plain = text
    if markup := _HTML_TAG.search(text):
        page = text[markup.start() :]
        title = _HTML_TITLE.search(page)
        shown = html.unescape(_HTML_TAG.sub(" ", title.group(1) if title else page))
        plain = f"{text[: markup.start()]} {shown}"
    line = " ".join(plain.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def error_line(exc: BaseException) -> str:
    """`OperationalError: connection refused`: the error's type and its first line (a database
    error's driver error: SQLAlchemy's own text adds the statement), at most 200 characters; an
    HTML page's text rather than its first line of markup."""
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip()
    lines = text.splitlines()
    first = text if _HTML_TAG.search(text) else (lines[0] if lines else "")
    return provider_text(f"{type(origin).__name__}: {first}", ERROR_LINE_CHARS)


# --- The delivery error taxonomy: provider error -> class, the runbook's cause and fix. ---

MAX_MESSAGE_CHARS = 1000
FIX_SEPARATOR = " | fix: "  # delivery_logs.error_message = provider text + separator + the fix


class ErrorClass(StrEnum):
    """What a deliverer does with a failed message."""

    transient = "transient"  # back off and retry this message
    permanent = "permanent"  # fail this message now; retrying cannot help
    quota = "quota"  # defer until the provider's daily quota frees; do not hammer
    config = "config"  # credentials, paused account, unverified identity: stop the whole batch
    maybe_sent = "maybe_sent"  # the provider may have the message: `unknown`, never retried blindly


@dataclass(frozen=True)
class ErrorKind:
    """A known provider failure: its canonical code, class, and the runbook's cause and fix."""

    code: str
    error_class: ErrorClass
    cause: str
    fix: str
    provider_side: bool = False  # about the provider, not the message: no attempt counted
    throttle: bool = False  # the provider asked us to slow down


_RETRIED = "Retried automatically with backoff"

RATE_EXCEEDED = ErrorKind(
    "Throttling",
    ErrorClass.transient,
    "Exceeding the SES/SNS sending rate (Maximum sending rate exceeded)",
    f"{_RETRIED}; if it persists lower NOTIFY_SES_RATE / NOTIFY_SNS_RATE "
    "or request a higher sending rate from AWS",
    provider_side=True,
    throttle=True,
)
DAILY_QUOTA_EXCEEDED = ErrorKind(
    "Throttling",
    ErrorClass.quota,
    "SES daily message quota exceeded (rolling 24 h, counted per recipient)",
    "Deferred until the rolling 24-hour quota frees (check GetSendQuota: Max24HourSend, "
    "SentLast24Hours); request a higher sending quota in the SES console",
)
TOO_MANY_REQUESTS = ErrorKind(
    "TooManyRequestsException",
    ErrorClass.transient,
    "Too many requests to the SES v2 API (HTTP 429)",
    f"{_RETRIED}; if it persists lower NOTIFY_SES_RATE",
    provider_side=True,
    throttle=True,
)
SNS_THROTTLED = ErrorKind(
    "Throttled",
    ErrorClass.transient,
    "Exceeding the SNS SMS publish rate (HTTP 429)",
    f"{_RETRIED}; if it persists lower NOTIFY_SNS_RATE or request a higher SMS TPS quota",
    provider_side=True,
    throttle=True,
)
ADDRESS_NOT_VERIFIED = ErrorKind(
    "MessageRejected",
    ErrorClass.permanent,
    "Address not verified: SES in sandbox mode, recipient not verified",
    "Request production access or verify the recipient address (SES console: Account "
    "dashboard > Request production access; Identities > Create identity)",
)
SENDER_NOT_VERIFIED = ErrorKind(
    "MessageRejected",
    ErrorClass.config,
    "The sender address (NOTIFY_EMAIL_FROM) is not a verified SES identity in this region",
    "Verify the sender address (`notifyops ses verify-sender`) or its domain in SES "
    "(Identities > Create identity), or set NOTIFY_EMAIL_FROM to a verified address; every "
    "message would fail the same way",
)
MESSAGE_REJECTED = ErrorKind(
    "MessageRejected",
    ErrorClass.permanent,
    "SES rejected the message (content, e.g. a virus or invalid header)",
    "Read the error message, fix the template or its context, then redrive the notification",
)
MAIL_FROM_NOT_VERIFIED = ErrorKind(
    "MailFromDomainNotVerifiedException",
    ErrorClass.config,
    "The custom MAIL FROM domain is not verified",
    "Publish the MAIL FROM MX/SPF records and wait for SES to verify them, "
    "or remove the custom MAIL FROM domain",
)
CONFIGURATION_SET_MISSING = ErrorKind(
    "ConfigurationSetDoesNotExist",
    ErrorClass.config,
    "The SES configuration set named in the send (NOTIFY_SES_CONFIGURATION_SET) does not exist "
    "in this region",
    "Run `notifyops receipts setup` in NOTIFY_AWS_REGION (it creates NOTIFY_RECEIPTS_NAME), or set "
    "NOTIFY_SES_CONFIGURATION_SET to an existing configuration set (or unset it) and restart the "
    "workers",
)
CONFIGURATION_SET_PAUSED = ErrorKind(
    "ConfigurationSetSendingPausedException",
    ErrorClass.config,
    "Sending is paused for the configuration set",
    "Find why it was paused, then re-enable it "
    "(aws sesv2 put-configuration-set-sending-options --sending-enabled)",
)
ACCOUNT_PAUSED = ErrorKind(
    "AccountSendingPausedException",
    ErrorClass.config,
    "SES sending is paused for the account (reputation: bounces >= 10% or complaints >= 0.5%)",
    "Page on-call; check the SES reputation dashboard, fix the cause, then re-enable "
    "(aws sesv2 put-account-sending-attributes --sending-enabled)",
)
SENDING_PAUSED = ErrorKind(
    "SendingPausedException",
    ErrorClass.config,
    "SES v2: sending is paused for the account or configuration set",
    "Page on-call; check the SES reputation dashboard and re-enable sending once fixed",
)
ACCOUNT_SUSPENDED = ErrorKind(
    "AccountSuspendedException",
    ErrorClass.config,
    "The SES account is suspended",
    "Page on-call and contact AWS Support; nothing can be sent until the account is reinstated",
)
SMTP_AUTH_FAILED = ErrorKind(
    "SMTPAuthenticationError",
    ErrorClass.config,
    "AWS SES credentials invalid: expired or incorrect SMTP credentials",
    "Regenerate SMTP credentials in the SES console, update NOTIFY_SMTP_USERNAME/"
    "NOTIFY_SMTP_PASSWORD and restart the workers",
)
SMTP_UNSUPPORTED = ErrorKind(
    "SMTPNotSupportedError",
    ErrorClass.config,
    "The SMTP server does not offer STARTTLS or a usable AUTH method",
    "Check NOTIFY_SMTP_HOST/NOTIFY_SMTP_PORT (SES: STARTTLS on 587) and NOTIFY_SMTP_STARTTLS",
)
TLS_CERTIFICATE = ErrorKind(
    "SSLCertVerificationError",
    ErrorClass.config,
    "The SMTP server's TLS certificate failed verification",
    "Check NOTIFY_SMTP_HOST names the real endpoint (email-smtp.<region>.amazonaws.com)",
)
SMTP_TEMPORARY = ErrorKind(
    "SMTPTemporaryFailure",
    ErrorClass.transient,
    "The SMTP server answered a temporary failure (4xx, e.g. 421/451)",
    f"{_RETRIED}; if it persists check the SES SMTP endpoint and the AWS Health Dashboard",
)
SMTP_PERMANENT = ErrorKind(
    "SMTPPermanentFailure",
    ErrorClass.permanent,
    "The SMTP server refused the message (5xx)",
    "Read the error message; fix the address or content, then redrive the notification",
)
INVALID_PHONE = ErrorKind(
    "InvalidParameter",
    ErrorClass.permanent,
    "Phone not in E.164 format (+15551234567)",
    "Validate phone numbers at input (E.164, e.g. +15551234567) and correct the recipient's phone",
)
INVALID_PARAMETER = ErrorKind(
    "InvalidParameter",
    ErrorClass.permanent,
    "The provider rejected a request parameter (e.g. SMS over 1600 bytes)",
    "Read the error message; fix the template or the recipient data, then redrive",
)
OPTED_OUT = ErrorKind(
    "OptedOut",
    ErrorClass.permanent,
    "The phone number opted out of SMS (replied STOP)",
    "Do not send SMS to this number; use email, or the recipient opts back in "
    "(aws sns opt-in-phone-number)",
)
INVALID_ADDRESS = ErrorKind(
    "InvalidAddress",
    ErrorClass.permanent,
    "Recipient email not valid format",
    "Validate email addresses at input (email-validator) and correct the recipient's address",
)
INVALID_CONTENT = ErrorKind(
    "InvalidContent",
    ErrorClass.permanent,
    "The message cannot be encoded (e.g. a line break in the subject)",
    "Fix the template or its context so headers are single-line, then redrive",
)
BAD_REQUEST = ErrorKind(
    "BadRequest",
    ErrorClass.permanent,
    "The provider rejected the request as malformed",
    "Read the error message; fix the template or the recipient data, then redrive",
)
PROVIDER_UNAVAILABLE = ErrorKind(
    "ServiceUnavailable",
    ErrorClass.transient,
    "The provider had an internal error or was unavailable (HTTP 5xx)",
    f"{_RETRIED}; if it persists check the AWS Health Dashboard",
    provider_side=True,
)
NOT_AUTHORIZED = ErrorKind(
    "AuthorizationError",
    ErrorClass.config,
    "The AWS identity is not allowed to send (IAM policy)",
    "Grant ses:SendEmail / sns:Publish (and sns:CheckIfPhoneNumberIsOptedOut; ses:GetSendQuota "
    "for NOTIFY_SES_RATE=auto and health) to the workers' IAM role or user",
)
BAD_CREDENTIALS = ErrorKind(
    "InvalidClientTokenId",
    ErrorClass.config,
    "AWS credentials missing, invalid or expired",
    "Check the credentials the workers use (boto3 chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE, or the instance or task role); rotate expired keys",
)
NO_REGION = ErrorKind(
    "NoRegionError",
    ErrorClass.config,
    "No AWS region configured",
    "Set NOTIFY_AWS_REGION (e.g. us-east-1)",
)
CONNECTION_FAILED = ErrorKind(
    "ConnectionError",
    ErrorClass.transient,
    "Could not reach the provider (connection refused or timed out, DNS, TLS handshake, "
    "SMTP greeting or login): the message was never handed over",
    f"{_RETRIED}; if it persists check network, DNS and egress to the endpoint",
    provider_side=True,
)
MAYBE_SENT = ErrorKind(
    "MaybeSent",
    ErrorClass.maybe_sent,
    "The request reached the provider but no answer came back (read timeout, connection reset "
    "or closed after the request was written, SMTP timeout or disconnect after DATA): "
    "the provider may have accepted the message",
    "Not retried automatically (a retry could send a second copy): check the provider's "
    "receipts or logs for this recipient (SES/SNS delivery events, the SMTP server's log); "
    "redrive the row (notifyops redrive --status unknown --id ID) only if it was not sent",
)
NOT_SENT = ErrorKind(
    "NotSent",
    ErrorClass.maybe_sent,
    "An `unknown` row (the provider might have had it) that an operator, having checked the "
    "provider's logs, decided never went out (`notifyops decide-unknown --as not-sent`)",
    "Not sent by itself (it may be stale by now): redrive it to send it "
    "(notifyops redrive --status failed --error-code NotSent --id ID)",
)
UNKNOWN = ErrorKind(
    "Unknown",
    ErrorClass.transient,
    "An error notifyops does not recognise",
    f"{_RETRIED}; if it persists read error_message and add its code to notify/errors.py",
)

KNOWN_KINDS: tuple[ErrorKind, ...] = (
    RATE_EXCEEDED,
    DAILY_QUOTA_EXCEEDED,
    TOO_MANY_REQUESTS,
    SNS_THROTTLED,
    ADDRESS_NOT_VERIFIED,
    SENDER_NOT_VERIFIED,
    MESSAGE_REJECTED,
    MAIL_FROM_NOT_VERIFIED,
    CONFIGURATION_SET_MISSING,
    CONFIGURATION_SET_PAUSED,
    ACCOUNT_PAUSED,
    SENDING_PAUSED,
    ACCOUNT_SUSPENDED,
    SMTP_AUTH_FAILED,
    SMTP_UNSUPPORTED,
    TLS_CERTIFICATE,
    SMTP_TEMPORARY,
    SMTP_PERMANENT,
    INVALID_PHONE,
    INVALID_PARAMETER,
    OPTED_OUT,
    INVALID_ADDRESS,
    INVALID_CONTENT,
    BAD_REQUEST,
    PROVIDER_UNAVAILABLE,
    NOT_AUTHORIZED,
    BAD_CREDENTIALS,
    NO_REGION,
    CONNECTION_FAILED,
    MAYBE_SENT,
    NOT_SENT,
    UNKNOWN,
)


@dataclass(frozen=True)
class _Rule:
    """`kind` applies when the code is one of `codes` and the message holds one of `needles`."""

    codes: frozenset[str]
    kind: ErrorKind
    needles: tuple[str, ...] = ()

    def matches(self, code: str, lowered_message: str) -> bool:
        if code not in self.codes:
            return False
        return not self.needles or any(needle in lowered_message for needle in self.needles)


def _rule(codes: str, kind: ErrorKind, *needles: str) -> _Rule:
    return _Rule(frozenset(codes.split()), kind, needles)


_THROTTLES = (
    "Throttling ThrottlingException TooManyRequestsException LimitExceededException SMTP454"
)
# Never reached the provider: nothing was written that it could act on.
_CONNECTION = (
    "ConnectionError EndpointConnectionError ConnectTimeoutError ProxyConnectionError SSLError "
    "SSLEOFError ConnectionRefusedError gaierror NewConnectionError NameResolutionError "
    "SMTPConnectError SMTPHeloError OSError SMTP421 SMTP451"
)
# May have reached it: the request was (or may have been) written, the answer never came.
_MAYBE = (
    "MaybeSent ReadTimeoutError ConnectionClosedError HTTPClientError ProtocolError "
    "ConnectionResetError ConnectionAbortedError BrokenPipeError RemoteDisconnected "
    "IncompleteRead TimeoutError SMTPServerDisconnected"
)

# SMTP replies are looked up as "SMTP<code>" (SMTP454); first matching rule wins.
_RULES: tuple[_Rule, ...] = (
    _rule(_THROTTLES, DAILY_QUOTA_EXCEEDED, "daily message quota", "daily quota"),
    _rule("Throttling ThrottlingException SMTP454", RATE_EXCEEDED),
    _rule("TooManyRequestsException LimitExceededException", TOO_MANY_REQUESTS),
    _rule("Throttled ThrottledException", SNS_THROTTLED),
    # SES v2 answers a missing configuration set with NotFoundException (404), SES SMTP with
    # "554 Configuration Set does not exist"; SES v1 with ConfigurationSetDoesNotExist (below)
    _rule("NotFoundException NotFound SMTP554", CONFIGURATION_SET_MISSING, "configuration set"),
    _rule("MessageRejected SMTP554", ADDRESS_NOT_VERIFIED, "not verified"),
    _rule("MessageRejected SMTP554", MESSAGE_REJECTED),
    _rule("MailFromDomainNotVerifiedException MailFromDomainNotVerified", MAIL_FROM_NOT_VERIFIED),
    _rule(
        "ConfigurationSetDoesNotExist ConfigurationSetDoesNotExistException",
        CONFIGURATION_SET_MISSING,
    ),
    _rule("ConfigurationSetSendingPausedException", CONFIGURATION_SET_PAUSED),
    _rule("AccountSendingPausedException", ACCOUNT_PAUSED),
    _rule("SendingPausedException", SENDING_PAUSED),
    _rule("AccountSuspendedException", ACCOUNT_SUSPENDED),
    _rule("SMTPAuthenticationError SMTP535 SMTP534 SMTP530", SMTP_AUTH_FAILED),
    _rule("SMTPNotSupportedError", SMTP_UNSUPPORTED),
    _rule("SMTPException", SMTP_UNSUPPORTED, "authentication method", "starttls"),
    _rule("SSLCertVerificationError", TLS_CERTIFICATE),
    _rule("InvalidParameter InvalidParameterException", INVALID_PHONE, "phone", "e164", "e.164"),
    _rule("InvalidParameter InvalidParameterException", INVALID_PARAMETER),
    _rule("OptedOut", OPTED_OUT),
    _rule("InvalidAddress", INVALID_ADDRESS),
    _rule(
        "BadRequestException InvalidParameterValue SMTP501 SMTP553",
        INVALID_ADDRESS,
        "address",
        "@domain",
        "mailbox",
    ),
    _rule("InvalidContent", INVALID_CONTENT),
    _rule(
        "BadRequestException InvalidParameterValue ValidationError ParamValidationError "
        "MissingParameter",
        BAD_REQUEST,
    ),
    _rule(
        "InternalError InternalFailure InternalServerError InternalErrorException "
        "ServiceUnavailable ServiceUnavailableException ResponseParserError",
        PROVIDER_UNAVAILABLE,
    ),
    _rule(
        "AuthorizationError AuthorizationErrorException AccessDenied AccessDeniedException "
        "NotAuthorized",
        NOT_AUTHORIZED,
    ),
    _rule(
        "InvalidClientTokenId UnrecognizedClientException SignatureDoesNotMatch "
        "IncompleteSignature ExpiredToken ExpiredTokenException InvalidAccessKeyId "
        "NoCredentialsError PartialCredentialsError CredentialRetrievalError",
        BAD_CREDENTIALS,
    ),
    _rule("NoRegionError", NO_REGION),
    _rule(_MAYBE, MAYBE_SENT),
    _rule("NotSent", NOT_SENT),
    _rule(_CONNECTION, CONNECTION_FAILED),
)
_KNOWN_CODES = frozenset(code for rule in _RULES for code in rule.codes)
_SPELLINGS = {code.lower(): code for code in _KNOWN_CODES | {k.code for k in KNOWN_KINDS}}


def known_spelling(code: str) -> str:
    """A provider code as the taxonomy spells it (optedout -> OptedOut); an unknown code as is."""
    return _SPELLINGS.get(code.lower(), code)


def classify(code: str, message: str, http_status: int | None = None) -> ErrorKind:
    """The kind for a provider code (SMTP replies as "SMTP<code>"), its message and HTTP status."""
    lowered = message.lower()
    for rule in _RULES:
        if rule.matches(code, lowered):
            return rule.kind
    status = http_status if http_status is not None else _status_in_code(code)
    return _by_http_status(status) or _by_smtp_class(code) or UNKNOWN


# What the deliverer knew that a stored failure's text does not say; the class it recorded
# (delivery_logs.error_class) is its answer:
# - SES's "not verified" reads the same for our own sender and for a sandboxed recipient;
#   `notify.senders.base.sender_aware` tells them apart by NOTIFY_EMAIL_FROM in the text, an
#   address the audits' normalised message masks (`<email>`): config is our sender.
# - A dropped connection is "never reached" or "may have reached" by how far the request got
#   (`classify_exception(written=...)`), not by its exception type: an SMTP disconnect before
#   DATA is recorded transient (retried), a connect failure after the request was written
#   maybe_sent.
_RECORDED_AS: dict[tuple[ErrorKind, str], ErrorKind] = {
    (ADDRESS_NOT_VERIFIED, ErrorClass.config.value): SENDER_NOT_VERIFIED,
    (MAYBE_SENT, ErrorClass.transient.value): CONNECTION_FAILED,
    (CONNECTION_FAILED, ErrorClass.maybe_sent.value): MAYBE_SENT,
}


def as_recorded(kind: ErrorKind, error_class: str | None) -> ErrorKind:
    """The kind of a stored failure whose code and text classify as `kind`, given the class the
    deliverer recorded with it (`delivery_logs.error_class`): SENDER_NOT_VERIFIED for a "not
    verified" recorded as config (it named our sender), CONNECTION_FAILED for a connection
    failure recorded as transient (the request never reached the provider) and MAYBE_SENT for
    one recorded as maybe_sent; else `kind`."""
    return _RECORDED_AS.get((kind, error_class or ""), kind)


def _status_in_code(code: str) -> int | None:
    """A stored code such as "HTTP503" or botocore's bare "500" for an unparsable error body."""
    digits = code.removeprefix("HTTP")
    return int(digits) if len(digits) == 3 and digits.isdigit() else None


def _by_http_status(status: int | None) -> ErrorKind | None:
    if status is None:
        return None
    if status >= 500:
        return PROVIDER_UNAVAILABLE
    if status == 429:
        return RATE_EXCEEDED
    return NOT_AUTHORIZED if status in (401, 403) else None


def _by_smtp_class(code: str) -> ErrorKind | None:
    if not (code.startswith("SMTP") and code[4:].isdigit()):
        return None
    first = code[4]
    return {"4": SMTP_TEMPORARY, "5": SMTP_PERMANENT}.get(first)


class DeliveryError(Exception):
    """A classified delivery failure: the provider's code and text, the class and the fix."""

    def __init__(self, kind: ErrorKind, message: str = "", code: str | None = None) -> None:
        self.kind = kind
        self.code = code or kind.code
        self.message = (message or kind.cause)[:MAX_MESSAGE_CHARS]
        super().__init__(kind, self.message, self.code)  # args rebuild it when unpickled

    @property
    def error_class(self) -> ErrorClass:
        return self.kind.error_class

    @property
    def fix(self) -> str:
        return self.kind.fix

    @property
    def stops_batch(self) -> bool:
        """True when every further message would fail the same way (config errors)."""
        return self.kind.error_class is ErrorClass.config

    def __str__(self) -> str:
        return f"{self.code} ({self.error_class}): {self.message} — fix: {self.fix}"

    def __repr__(self) -> str:
        return f"DeliveryError(code={self.code!r}, class={self.error_class!s}, {self.message!r})"


def classify_exception(exc: BaseException, *, written: bool | None = None) -> DeliveryError:
    """Turn any provider exception (botocore, smtplib, socket) into a classified DeliveryError.

    `written` is what the caller knows about the request: False = nothing was sent yet (a
    connection failure is then `transient`), True = the whole request was written (a connection
    failure is then `maybe_sent`), None = tell from the exception type (botocore's are precise:
    ConnectTimeoutError / EndpointConnectionError / SSLError before sending, ReadTimeoutError /
    ConnectionClosedError after; a bare timeout or reset counts as maybe sent)."""
    error = _classified(exc)
    answered = isinstance(exc, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused)
    if written is None or answered or error.kind not in (CONNECTION_FAILED, MAYBE_SENT):
        return error
    kind = MAYBE_SENT if written else CONNECTION_FAILED
    return error if error.kind is kind else DeliveryError(kind, error.message, error.code)


def _classified(exc: BaseException) -> DeliveryError:
    from botocore.exceptions import ClientError  # here: keeps `import notify.errors` light

    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, ClientError):
        return _from_client_error(exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _from_smtp_reply(exc.smtp_code, exc.smtp_error, type(exc).__name__)
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        smtp_code, reply = next(iter(exc.recipients.values()))
        return _from_smtp_reply(smtp_code, reply, type(exc).__name__)
    return _from_exception_type(exc)


def _from_client_error(exc: ClientError) -> DeliveryError:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(error.get("Code") or (f"HTTP{status}" if status else "Unknown"))
    message = str(error.get("Message") or exc)
    return DeliveryError(classify(code, message, status), message, code)


def _from_smtp_reply(smtp_code: int, reply: bytes | str, name: str) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    code = name if name == "SMTPAuthenticationError" else f"SMTP{smtp_code}"
    return DeliveryError(classify(code, text), f"{smtp_code} {text}", code)


def _from_exception_type(exc: BaseException) -> DeliveryError:
    """Look the exception's class (or its nearest known base class) up by name."""
    known = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _KNOWN_CODES), None)
    message = str(exc) or type(exc).__name__
    kind = classify(known, message) if known else UNKNOWN
    return DeliveryError(kind, message, type(exc).__name__)
