"""Real stand-ins for AWS: moto for SES/SNS, aiosmtpd playing the SES SMTP endpoint.

Register with `pytest_plugins = ["tests.aws_fixtures"]` (conftest or a test module).

What moto records, read back with `moto_sent(url)` (from `GET /moto-api/data.json`):

- `data["ses"]["Message"]`: simple sends (ses v1 `send_email`; sesv2 `send_email` with
  Content.Simple), each `{"id", "source", "destinations": {"ToAddresses": [...], ...},
  "subject", "body"}`; `body` is the Html part when there is one, otherwise the Text part.
- `data["ses"]["RawMessage"]`: raw sends, each `{"id", "source", "destinations", "raw_data"}`.
- `data["sns"]["SMS"]`: `publish(PhoneNumber=...)`, each
  `{"message_id", "phone_number", "message"}`.
  Message attributes (AWS.SNS.SMS.SMSType) are not recorded: observe the request instead.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.core.responses import ActionResult, EmptyResult
from moto.server import ThreadedMotoServer
from moto.ses.exceptions import ConfigurationSetDoesNotExist, SesError
from moto.ses.responses import EmailResponse

VERIFIED_SENDER = "notifications@example.com"
SMTP_USERNAME = "AKIASMTPTESTUSER"
SMTP_PASSWORD = "smtp-test-password"
REJECTED_UNVERIFIED = (
    "554 Message rejected: Email address is not verified. The following identities failed "
    "the check in region US-EAST-1: {sender}"
)
THROTTLED = "454 Throttling failure: Maximum sending rate exceeded."
AUTH_INVALID = "535 Authentication Credentials Invalid"
_AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_SES",
    "AWS_ENDPOINT_URL_SESV2",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


# --- moto ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the session; yields its URL (http://127.0.0.1:PORT)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    _wait_until_ready(url)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def moto_ses_client(moto_server: str) -> Any:
    """A plain SES v1 client for test setup (explicit endpoint and keys: no environment needed)."""
    return boto3.session.Session().client(
        "ses",
        region_name="us-east-1",
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def aws_env(
    moto_server: str, moto_ses_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """Point boto3 at a freshly reset moto with `notifications@example.com` verified."""
    for name in _AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    moto_reset(moto_server)
    moto_ses_client.verify_email_identity(EmailAddress=VERIFIED_SENDER)
    return moto_server


UNREACHABLE_AWS = "http://127.0.0.1:9"  # the discard port: nothing listens, connect is refused


@pytest.fixture
def aws_out_of_reach(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point boto3 at an endpoint that refuses every connection: AWS down, or this host cut off."""
    for name in _AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", UNREACHABLE_AWS)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return UNREACHABLE_AWS


class EventDestinationDoesNotExist(SesError):
    code = "EventDestinationDoesNotExist"


def _update_event_destination(response: EmailResponse) -> ActionResult:
    """SES v1 UpdateConfigurationSetEventDestination as SES documents it: the destination of
    that name in that configuration set is replaced by the one given."""
    set_name = response._get_param("ConfigurationSetName")
    destination = response._get_param("EventDestination", {})
    backend = response.backend
    if backend.config_sets.get(set_name) is None:
        raise ConfigurationSetDoesNotExist("Invalid Configuration Set Name.")
    current = backend.config_set_event_destination.get(set_name) or {}
    if current.get("Name") != destination.get("Name"):
        raise EventDestinationDoesNotExist(f"No EventDestination named {destination.get('Name')}")
    backend.config_set_event_destination[set_name] = destination
    return EmptyResult()


@pytest.fixture
def moto_ses_updates_event_destinations(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto (5.2.6) does not implement SES UpdateConfigurationSetEventDestination: its server
    answers 500 "not implemented". This teaches the session's moto server (it runs in this
    process) the call, for this test only; the request still goes through real boto3 and HTTP
    and moto's own parsing of the SES query protocol."""
    monkeypatch.setattr(
        EmailResponse,
        "update_configuration_set_event_destination",
        _update_event_destination,
        raising=False,
    )
    return aws_env


def moto_reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))


def moto_data(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/moto-api/data.json") as response:
        data: dict[str, Any] = json.load(response)
    return data


def moto_sent(url: str) -> dict[str, list[dict[str, Any]]]:
    """What moto recorded as sent: keys `email`, `raw_email`, `sms` (see the module docstring)."""
    data = moto_data(url)
    ses, sns = data.get("ses", {}), data.get("sns", {})
    return {
        "email": ses.get("Message", []),
        "raw_email": ses.get("RawMessage", []),
        "sms": sns.get("SMS", []),
    }


def _wait_until_ready(url: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- SMTP (SES SMTP interface stand-in) ---------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server certificate (hostname 127.0.0.1) against our self-signed cert."""
        return ssl.create_default_context(cafile=str(self.cert))


@dataclass
class SesLikeHandler:
    """Stores accepted messages; 554 for a sender not allowed (or, in the sandbox, a recipient
    not among `verified_recipients`), 454 above `max_messages`."""

    allowed_senders: frozenset[str]
    max_messages: int | None
    reply: str
    verified_recipients: frozenset[str] | None = None  # None: out of the sandbox
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sender = envelope.mail_from or ""
        if sender not in self.allowed_senders:
            return REJECTED_UNVERIFIED.format(sender=sender)
        if self.verified_recipients is not None:
            unverified = [to for to in envelope.rcpt_tos if to not in self.verified_recipients]
            if unverified:
                return REJECTED_UNVERIFIED.format(sender=", ".join(unverified))
        if self.max_messages is not None and len(self.messages) >= self.max_messages:
            return THROTTLED
        content = envelope.original_content or b""
        self.messages.append(_parse(content))
        self.envelopes.append((sender, list(envelope.rcpt_tos)))
        return self.reply


@dataclass
class SingleUserAuthenticator:
    """Accepts one user name and password; counts successful logins (one per connection)."""

    username: str
    password: str
    logins: int = 0

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        expected = LoginPassword(self.username.encode(), self.password.encode())
        if isinstance(data, LoginPassword) and tuple(data) == tuple(expected):
            self.logins += 1
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message=AUTH_INVALID)


@dataclass
class SmtpServer:
    host: str
    port: int
    username: str
    password: str
    client_tls: ssl.SSLContext
    handler: SesLikeHandler
    authenticator: SingleUserAuthenticator

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages


SmtpServerFactory = Callable[..., SmtpServer]


@pytest.fixture(scope="session")
def smtp_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return write_self_signed(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp_server(smtp_tls_files: TlsFiles) -> Iterator[SmtpServerFactory]:
    """Factory: `smtp_server(allowed_senders=..., max_messages=None, reply="250 OK",
    idle_timeout_s=300, verified_recipients=None)` starts an aiosmtpd server with STARTTLS and
    AUTH required."""
    controllers: list[Controller] = []

    def start(
        *,
        allowed_senders: frozenset[str] = frozenset({VERIFIED_SENDER}),
        max_messages: int | None = None,
        reply: str = "250 OK",
        idle_timeout_s: float = 300,
        verified_recipients: frozenset[str] | None = None,
    ) -> SmtpServer:
        handler = SesLikeHandler(allowed_senders, max_messages, reply, verified_recipients)
        authenticator = SingleUserAuthenticator(SMTP_USERNAME, SMTP_PASSWORD)
        controller = _controller(handler, authenticator, smtp_tls_files, idle_timeout_s)
        controller.start()
        controllers.append(controller)
        return SmtpServer(
            host=controller.hostname,
            port=controller.port,
            username=SMTP_USERNAME,
            password=SMTP_PASSWORD,
            client_tls=smtp_tls_files.client_context(),
            handler=handler,
            authenticator=authenticator,
        )

    yield start
    for controller in controllers:
        controller.stop()


def _controller(
    handler: SesLikeHandler,
    authenticator: SingleUserAuthenticator,
    tls: TlsFiles,
    idle_timeout_s: float,
) -> Controller:
    return Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=tls.server_context(),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticator,
        timeout=idle_timeout_s,
    )


def free_port() -> int:
    """A port free right now (aiosmtpd's Controller cannot listen on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_self_signed(directory: Path) -> TlsFiles:
    """An EC key and a self-signed certificate for localhost / 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(cert=directory / "cert.pem", key=directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    files.key.write_bytes(key_pem)
    return files


def _parse(content: bytes) -> EmailMessage:
    message = message_from_bytes(content, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message
