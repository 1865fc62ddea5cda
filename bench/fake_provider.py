"""A fake AWS endpoint for the chaos suite: SES v2 `SendEmail` and SNS `Publish` over real HTTP.

boto3 pointed at it (AWS_ENDPOINT_URL, or `endpoint_url=`) sends through the real botocore stack:
signing, serialisation, connection pooling, timeouts, error parsing. Every message the provider
accepts is appended to a log file (one JSON line `[channel, address]`, flushed) BEFORE the answer
is written, so the log is the ground truth even for a client killed mid-call.

Faults, each a probability per send call, settable while the server runs (`provider.faults = ...`):

- `timeout_before`: the request is read, never accepted (not logged), no answer until the client's
  read timeout has passed (the client cannot tell this from `timeout_after`);
- `timeout_after`: accepted (logged), then no answer until past the client's read timeout;
- `reset_after`: accepted (logged), then the connection is reset (RST) without an answer;
- `throttle`: SES `TooManyRequestsException` (HTTP 429) / SNS `Throttling` (HTTP 400);
- `server_error`: SES `InternalFailure` (HTTP 500) / SNS `InternalError` (HTTP 500);
- `forbidden`: SES `AccessDeniedException` / SNS `AuthorizationError` (HTTP 403).

With `smtp=True` it also plays the SES SMTP endpoint (aiosmtpd, AUTH as `SMTP_USER` /
`SMTP_PASSWORD`, no TLS), the failover's path: it takes every message, logged like the API's
(`["email", address]`, before the 250 answer) and counted in `calls["smtp"]`.

Cut requests (the three faults after which the client gets no answer) are recorded in `cuts` as
(fault, channel, address): a row left `unknown` whose message the log does not hold must be one
of them (or a request cut by a kill). SNS `CheckIfPhoneNumberIsOptedOut` always answers "no".

    python -m bench.fake_provider --port 4599 --log accepted.jsonl --throttle 0.2
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from bench.common import free_port

SES_PATH = "/v2/email/outbound-emails"
SNS_XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/"
CUT_FAULTS = ("timeout_before", "timeout_after", "reset_after")
ERROR_FAULTS = ("throttle", "server_error", "forbidden")
FAULTS = (*CUT_FAULTS, *ERROR_FAULTS)
SMTP_USER, SMTP_PASSWORD = "chaos-smtp", "chaos-smtp-password"

# (HTTP status, SES v2 error code, SNS error code, message)
_ERRORS = {
    "throttle": (429, "TooManyRequestsException", "Throttling", "Rate exceeded"),
    "server_error": (500, "InternalFailure", "InternalError", "Internal failure (injected)"),
    "forbidden": (403, "AccessDeniedException", "AuthorizationError", "Access denied (injected)"),
}


@dataclass(frozen=True)
class Faults:
    """Probabilities per send call (they are drawn in this order; the rest is accepted)."""

    timeout_before: float = 0.0
    timeout_after: float = 0.0
    reset_after: float = 0.0
    throttle: float = 0.0
    server_error: float = 0.0
    forbidden: float = 0.0
    latency_s: float = 0.0  # added to every answered send
    hang_s: float = 1.5  # how long a timeout holds the connection: past the client's read timeout

    def draw(self, rng: random.Random) -> str | None:
        roll = rng.random()
        for name in FAULTS:
            rate = float(getattr(self, name))
            if roll < rate:
                return name
            roll -= rate
        return None

    def describe(self) -> str:
        rates = [f"{name} {getattr(self, name):.0%}" for name in FAULTS if getattr(self, name)]
        return ", ".join(rates) or "none"


@dataclass
class FakeProvider:
    """The server; `start()` returns its endpoint URL. Thread-safe counters."""

    log_path: Path
    faults: Faults = field(default_factory=Faults)
    seed: int | None = None
    cuts: list[tuple[str, str, str]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # fault name (or "accepted") per call
    port: int = 0
    smtp: bool = False  # also play the SES SMTP endpoint, at `smtp_port`
    smtp_port: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._log = self.log_path.open("a", encoding="utf-8")
        self._server: ThreadingHTTPServer | None = None
        self._smtp: Any = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.provider = self
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        if self.smtp:
            self._start_smtp()
        return self.url

    def _start_smtp(self) -> None:
        from aiosmtpd.controller import Controller

        self.smtp_port = free_port()  # aiosmtpd cannot listen on port 0
        self._smtp = Controller(
            _SmtpHandler(self),
            hostname="127.0.0.1",
            port=self.smtp_port,
            auth_required=False,  # the sender logs in all the same (checked); required would warn
            auth_require_tls=False,
            authenticator=_smtp_login,
        )
        self._smtp.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._smtp is not None:
            self._smtp.stop()
        with self._lock:
            self._log.close()

    # --- called by the handler threads -----

    def decide(self) -> str | None:
        with self._lock:
            fault = self.faults.draw(self._rng)
            self.calls[fault or "accepted"] += 1
            return fault

    def accept(self, channel: str, address: str) -> None:
        """Log the message as accepted (flushed) before any answer goes out."""
        with self._lock:
            self._log.write(json.dumps([channel, address]) + "\n")
            self._log.flush()

    def cut(self, fault: str, channel: str, address: str) -> None:
        with self._lock:
            self.cuts.append((fault, channel, address))

    def hang(self) -> None:
        self._stopping.wait(self.faults.hang_s)


class _SmtpHandler:
    """aiosmtpd's handler: every message is accepted, logged before the answer."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for address in envelope.rcpt_tos:
            self.provider.accept("email", address)
        with self.provider._lock:
            self.provider.calls["smtp"] += 1
        return "250 Ok"


def _smtp_login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    provider: FakeProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a reset or hung-up connection is the point, not a server error


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away mid-request: a provider never saw it
            self.close_connection = True
            return
        if self.path.startswith(SES_PATH):
            self._ses(body)
        elif self.path == "/" or self.path.startswith("/?"):
            self._sns(parse_qs(body.decode("utf-8")))
        else:
            self._answer(404, b"{}", "application/json")

    # --- SES v2 (REST-JSON) -----

    def _ses(self, body: bytes) -> None:
        request = json.loads(body or b"{}")
        address = ",".join(request.get("Destination", {}).get("ToAddresses", []))
        if self._fault_or_accept("email", address, self._ses_error):
            return
        payload = json.dumps({"MessageId": f"ses-{uuid.uuid4()}"}).encode()
        self._answer(200, payload, "application/json")

    def _ses_error(self, fault: str) -> None:
        status, code, _, message = _ERRORS[fault]
        payload = json.dumps({"message": message}).encode()
        self._answer(status, payload, "application/json", {"x-amzn-ErrorType": f"{code}:"})

    # --- SNS (query API, XML answers) -----

    def _sns(self, form: dict[str, list[str]]) -> None:
        action = form.get("Action", [""])[0]
        if action == "CheckIfPhoneNumberIsOptedOut":
            result = "<isOptedOut>false</isOptedOut>"
            self._answer(200, _sns_xml(action, result), "text/xml")
            return
        if action != "Publish":
            self._answer(400, _sns_error("InvalidAction", f"not faked: {action}"), "text/xml")
            return
        phone = form.get("PhoneNumber", [""])[0]
        if self._fault_or_accept("sms", phone, self._sns_error):
            return
        result = f"<MessageId>sns-{uuid.uuid4()}</MessageId>"
        self._answer(200, _sns_xml(action, result), "text/xml")

    def _sns_error(self, fault: str) -> None:
        status, _, code, message = _ERRORS[fault]
        self._answer(status, _sns_error(code, message), "text/xml")

    # --- shared -----

    def _fault_or_accept(self, channel: str, address: str, error: Any) -> bool:
        """Apply the drawn fault; True when the request was answered with an error or cut."""
        provider = self.server.provider
        fault = provider.decide()
        if fault in ERROR_FAULTS:
            error(fault)
            return True
        if fault == "timeout_before":
            provider.cut(fault, channel, address)
            self._hang_up(provider)
            return True
        provider.accept(channel, address)
        if fault == "timeout_after":
            provider.cut(fault, channel, address)
            self._hang_up(provider)
            return True
        if fault == "reset_after":
            provider.cut(fault, channel, address)
            self._reset()
            return True
        if provider.faults.latency_s:
            time.sleep(provider.faults.latency_s)
        return False

    def _hang_up(self, provider: FakeProvider) -> None:
        provider.hang()
        self.close_connection = True

    def _reset(self) -> None:
        self.close_connection = True
        linger = struct.pack("ii", 1, 0)  # close with RST, not FIN
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self.connection.close()

    def _answer(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _sns_xml(action: str, result: str) -> bytes:
    return (
        f'<{action}Response xmlns="{SNS_XMLNS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    ).encode()


def _sns_error(code: str, message: str) -> bytes:
    return (
        f'<ErrorResponse xmlns="{SNS_XMLNS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    ).encode()


def accepted(*paths: Path) -> Counter[tuple[str, str]]:
    """(channel, address) -> how many times a provider log holds it."""
    counts: Counter[tuple[str, str]] = Counter()
    for path in paths:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    channel, address = json.loads(line)
                    counts[(channel, address)] += 1
    return counts


@contextmanager
def running(
    log_path: Path, faults: Faults | None = None, seed: int | None = None, smtp: bool = False
) -> Iterator[FakeProvider]:
    provider = FakeProvider(log_path, faults or Faults(), seed, smtp=smtp)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", type=Path, required=True)
    for item in fields(Faults):
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=float, default=item.default)
    args = parser.parse_args()
    faults = Faults(**{item.name: getattr(args, item.name) for item in fields(Faults)})
    provider = FakeProvider(args.log, faults, port=args.port)
    print(provider.start(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
