"""Email through an SMTP server (the SES SMTP interface): STARTTLS, AUTH, one connection per thread.

A failure before the message's final "." is written (connect, HELO, STARTTLS, AUTH, MAIL, RCPT,
the DATA command itself) never reached the provider and is retried; a timeout or disconnect after
it is `maybe_sent` (the server may have queued the message) and is never retried automatically.

The provider message id is the id in the server's DATA reply when there is one (SES answers
`250 Ok <ses-message-id>`), otherwise our own Message-ID header without its angle brackets.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid, parseaddr

from notify.errors import INVALID_CONTENT, DeliveryError, classify_exception
from notify.senders.base import PROVIDER_EXCEPTIONS, OutgoingEmail, SendReceipt, sender_aware

# 7bit: non-ASCII bodies go out quoted-printable/base64, so no 8BITMIME negotiation is needed.
_POLICY = SMTP_POLICY.clone(cte_type="7bit")
_REPLY_ID = re.compile(r"^ok\s+<?([^\s<>]+)>?\s*$", re.IGNORECASE)
SERVER_CLOSING = 421
_LEADING_DOT = re.compile(rb"(?m)^\.")


class SmtpEmailSender:
    """Thread-safe: each thread keeps its own authenticated connection; close() closes them all."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        starttls: bool = True,
        timeout: float = 10,
        ssl_context: ssl.SSLContext | None = None,
        configuration_set: str | None = None,
    ) -> None:
        self._configuration_set = configuration_set
        self._host, self._port, self._timeout = host, port, timeout
        self._username, self._password = username, password
        self._starttls = starttls
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._local = threading.local()
        self._open: set[smtplib.SMTP] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the credentials
        return f"SmtpEmailSender({self._host}:{self._port}, starttls={self._starttls})"

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        mime = _encoded(message)
        if self._configuration_set:  # SES SMTP: the receipts' configuration set and our tag
            mime["X-SES-CONFIGURATION-SET"] = self._configuration_set
        if message.delivery_id is not None:
            mime["X-SES-MESSAGE-TAGS"] = f"delivery_id={message.delivery_id}"
        progress = _Progress()
        try:
            reply = self._deliver(
                mime.as_bytes(), _address(message.sender), _address(message.to), progress
            )
        except PROVIDER_EXCEPTIONS as exc:
            error = classify_exception(exc, written=progress.written)
            raise sender_aware(error, message.sender) from exc
        return SendReceipt(reply_message_id(reply) or str(mime["Message-ID"]).strip("<>"))

    def close(self) -> None:
        with self._lock:
            connections, self._open = self._open, set()
        for conn in connections:
            _quit_quietly(conn)

    def _deliver(self, data: bytes, sender: str, to: str, progress: _Progress) -> bytes:
        conn = self._connection()
        try:
            _mail(conn, sender)
        except smtplib.SMTPException as exc:
            if not _hung_up(exc):
                raise
            self._drop(conn)  # the server closed an idle connection; nothing was accepted yet
            conn = self._connection()
            _mail(conn, sender)
        try:
            return _rcpt_and_data(conn, to, data, progress)
        except OSError:
            self._reset_or_drop(conn)
            raise

    def _connection(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._open.add(conn)
        return conn

    def _connect(self) -> smtplib.SMTP:
        conn = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        try:
            conn.ehlo()
            if self._starttls:
                conn.starttls(context=self._ssl_context)
                conn.ehlo()
            conn.login(self._username, self._password)
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            self._open.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        conn.close()

    def _reset_or_drop(self, conn: smtplib.SMTP) -> None:
        """After a refused message keep the connection usable; after a broken one, forget it."""
        try:
            conn.rset()
        except OSError:
            self._drop(conn)


def build_mime(message: OutgoingEmail) -> EmailMessage:
    """text/plain, or multipart/alternative with an HTML part; Message-ID on the sender's domain."""
    mime = EmailMessage(policy=_POLICY)
    mime["From"] = message.sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = make_msgid(domain=_address(message.sender).rpartition("@")[2] or None)
    mime.set_content(message.text)
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html")
    return mime


def reply_message_id(reply: bytes) -> str | None:
    """The message id in a DATA reply such as SES's `Ok 0100018b...-000000`, if any."""
    match = _REPLY_ID.match(reply.decode("utf-8", "replace").strip())
    return match.group(1) if match else None


def _encoded(message: OutgoingEmail) -> EmailMessage:
    try:
        return build_mime(message)
    except ValueError as exc:  # e.g. a line break in a header value
        raise DeliveryError(INVALID_CONTENT, str(exc)) from exc


def _address(value: str) -> str:
    return parseaddr(value)[1] or value


def _mail(conn: smtplib.SMTP, sender: str) -> None:
    code, reply = conn.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)


class _Progress:
    """How far one send got: `written` once the message and its final "." went to the server."""

    written = False


def _rcpt_and_data(conn: smtplib.SMTP, to: str, data: bytes, progress: _Progress) -> bytes:
    code, reply = conn.rcpt(to)
    if code not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({to: (code, reply)})
    code, reply = _data(conn, data, progress)
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return reply


def _data(conn: smtplib.SMTP, data: bytes, progress: _Progress) -> tuple[int, bytes]:
    """smtplib's DATA, with the moment the message is handed over recorded in `progress`."""
    code, reply = conn.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    body = _LEADING_DOT.sub(b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    progress.written = True  # from here on the server may queue the message
    conn.send(body + b".\r\n")
    return conn.getreply()


def _hung_up(exc: smtplib.SMTPException) -> bool:
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == SERVER_CLOSING


def _quit_quietly(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except OSError:
        conn.close()
