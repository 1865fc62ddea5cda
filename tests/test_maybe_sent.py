"""A failure that may have reached the provider is `unknown`, never retried; one that cannot have
reached it is retried. Real botocore clients against a socket that misbehaves, real smtplib
against aiosmtpd, and the deliverer on both databases."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from sqlalchemy import Engine, select

from notify.db import DeliveryLog, transaction
from notify.errors import MAYBE_SENT, DeliveryError, ErrorClass
from notify.senders.memory import MemorySender
from notify.senders.ses import SesEmailSender
from notify.senders.smtp import SmtpEmailSender
from notify.settings import Settings
from tests.aws_fixtures import (
    SMTP_PASSWORD,
    SMTP_USERNAME,
    VERIFIED_SENDER,
    SesLikeHandler,
    SingleUserAuthenticator,
    TlsFiles,
    _controller,
    free_port,
)
from tests.test_dispatch import add_recipients, deliverer, email_statuses, send, tech
from tests.test_senders import EMAIL

pytest_plugins = ["tests.aws_fixtures"]


# --- SES v2 over a socket that takes the request and then misbehaves ----------------------------


@dataclass
class BadEndpoint:
    """An HTTP listener that reads each request whole, then hangs up or never answers."""

    mode: str  # "hang-up" (close without a response) or "silent" (never answer)
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    def serve(self) -> Iterator[str]:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        stop = threading.Event()
        thread = threading.Thread(target=self._accept, args=(listener, stop), daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            stop.set()
            listener.close()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.requests.append(_read_request(conn))
            if self.mode == "hang-up":
                conn.close()
            else:
                stop.wait(5)
                conn.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + body


def ses_client(endpoint: str) -> Any:
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=1,
        read_timeout=0.5,
    )
    return boto3.session.Session().client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


@pytest.mark.parametrize(
    ("mode", "code"), [("hang-up", "ConnectionClosedError"), ("silent", "ReadTimeoutError")]
)
def test_ses_request_written_then_no_answer_is_maybe_sent(mode: str, code: str) -> None:
    endpoint = BadEndpoint(mode)
    for url in endpoint.serve():
        with pytest.raises(DeliveryError) as caught:
            SesEmailSender(ses_client(url)).send_email(EMAIL)
    assert (caught.value.code, caught.value.error_class) == (code, ErrorClass.maybe_sent)
    assert len(endpoint.requests) == 1, "the provider got the request once (no SDK retry)"
    assert (
        b"tech%40example.com" in endpoint.requests[0]
        or b"tech@example.com" in (endpoint.requests[0])
    )


def test_ses_connection_refused_never_reached_the_provider_and_is_retried() -> None:
    sender = SesEmailSender(ses_client(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(DeliveryError) as caught:
        sender.send_email(EMAIL)
    assert (caught.value.code, caught.value.error_class) == (
        "EndpointConnectionError",
        ErrorClass.transient,
    )


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        (ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), "maybe_sent"),
        (
            EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"),
            "transient",
        ),
    ],
    ids=["read-timeout", "endpoint-unreachable"],
)
def test_ses_fault_raised_inside_the_real_client_is_classified(
    fault: Exception, error_class: str
) -> None:
    """Raised from botocore's `before-send` event: the path a socket error takes in botocore."""
    client = ses_client("https://email.us-east-1.amazonaws.com")
    calls: list[int] = []

    def raise_fault(**_: Any) -> None:
        calls.append(1)
        raise fault

    client.meta.events.register("before-send.sesv2.SendEmail", raise_fault)
    with pytest.raises(DeliveryError) as caught:
        SesEmailSender(client).send_email(EMAIL)
    assert caught.value.error_class == error_class and len(calls) == 1


# --- SMTP: a server that stalls before or after the message was handed over ---------------------


@dataclass
class StallingHandler(SesLikeHandler):
    """Stalls (longer than the client's timeout) at RCPT, or after storing the message."""

    stall_at: str = "data"
    stall_s: float = 3.0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.stall_at == "rcpt":
            await asyncio.sleep(self.stall_s)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.stall_at == "data":
            await asyncio.sleep(self.stall_s)
        return reply


def stalling_sender(stall_at: str, tls: TlsFiles) -> tuple[SmtpEmailSender, StallingHandler, Any]:
    handler = StallingHandler(frozenset({VERIFIED_SENDER}), None, "250 OK", stall_at=stall_at)
    controller = _controller(
        handler, SingleUserAuthenticator(SMTP_USERNAME, SMTP_PASSWORD), tls, 300
    )
    controller.start()
    sender = SmtpEmailSender(
        controller.hostname,
        controller.port,
        SMTP_USERNAME,
        SMTP_PASSWORD,
        ssl_context=tls.client_context(),
        timeout=1,
    )
    return sender, handler, controller


def test_smtp_timeout_after_data_is_maybe_sent(smtp_tls_files: TlsFiles) -> None:
    sender, handler, controller = stalling_sender("data", smtp_tls_files)
    try:
        with pytest.raises(DeliveryError) as caught:
            sender.send_email(EMAIL)
    finally:
        sender.close()
        controller.stop()
    assert caught.value.error_class is ErrorClass.maybe_sent
    assert len(handler.messages) == 1, "the server had the message when the client gave up"


def test_smtp_timeout_before_data_never_reached_the_provider(smtp_tls_files: TlsFiles) -> None:
    sender, handler, controller = stalling_sender("rcpt", smtp_tls_files)
    try:
        with pytest.raises(DeliveryError) as caught:
            sender.send_email(EMAIL)
    finally:
        sender.close()
        controller.stop()
    assert caught.value.error_class is ErrorClass.transient
    assert handler.messages == []


# --- the deliverer: maybe sent -> unknown, never retried -----------------------------------------


def test_maybe_sent_rows_become_unknown_and_are_never_retried(
    engine: Engine, settings: Settings
) -> None:
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 4)])
    send(engine, settings, [f"tech:{n}" for n in range(1, 4)])

    def lost_answer(message: Any) -> DeliveryError | None:
        if message.to == "tech2@example.com":
            return DeliveryError(MAYBE_SENT, "Read timeout on endpoint URL", "ReadTimeoutError")
        return None

    sender = MemorySender(fail=lost_answer)
    report = deliverer(engine, settings, sender).deliver_batch()
    assert report.outcomes == {("email", "sent"): 2, ("email", "unknown"): 1}
    assert [(f.status, f.error_class) for f in report.failures] == [("unknown", "maybe_sent")]
    assert deliverer(engine, settings, sender).deliver_batch().claimed == 0, "never retried"
    assert email_statuses(engine) == {"sent": 2, "unknown": 1}
    with transaction(engine) as session:
        message = session.scalar(
            select(DeliveryLog.error_message).where(DeliveryLog.status == "unknown")
        )
    assert message is not None and "receipts" in message and "redrive" in message
