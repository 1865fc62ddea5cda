"""A deliverer process for the chaos suite: enqueue (optional), rescue (optional), deliver through
real boto3 SES v2 / SNS clients pointed at the fake provider, until nothing is left to send.

    python -m tests.workers.chaos_worker CONFIG_JSON

CONFIG_JSON keys: database_url, owner, endpoint, journal (a file), batch, concurrency, window,
read_timeout_s, deadline_s, and optionally enqueue ({"recipients": N, "key": K, "tag": T,
"hold_s": how long the enqueue transaction stays open before its commit}), smtp ({"port": P,
"after_s": A, "probe_s": B}: email fails over to the fake provider's SMTP endpoint),
rescue_dead (the previous deliverer was SIGKILLed: its leases are expired now, not in
NOTIFY_LEASE_SECONDS), lease_s, holds ({"claim": S} or {"group-commit": S}: the first such
statement's transaction stays open S seconds after the statement ran, before its commit;
{"send": S}: the first call the provider accepted holds its sender thread S seconds before the
answer reaches the deliverer, journaled `send-held`).

The journal gets one line per step, written with one unbuffered write before the step runs:
`start`, `enqueue`, `enqueued`, `rescue`, `claim`, `mark-sending`, `send`, `group-commit`,
`heartbeat`, `release`, `done` (and `send-held`), so whoever kills this process can tell where it
was. The last line printed on stdout is a JSON summary.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import boto3
from botocore.config import Config
from sqlalchemy import Engine, event, func, select

from bench.common import HUGE, TEMPLATE, external_ids, request_context
from bench.fake_provider import SMTP_PASSWORD, SMTP_USER
from notify.db import DeliveryLog, make_engine, transaction, utcnow
from notify.delivery import Deliverer, local_pacers
from notify.enqueue import SendRequest, enqueue
from notify.outbox import rescue_expired
from notify.rendering import TemplateCatalog
from notify.senders import SEND_ATTEMPTS, Senders, with_email_failover
from notify.senders.base import OutgoingEmail, OutgoingSms, SendReceipt
from notify.senders.ses import SesEmailSender
from notify.senders.sns import SnsSmsSender
from notify.settings import Priority, Settings, load_settings

SETTLE_S = 0.05  # before a hold: the sender threads take what was handed to them


class Journal:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def mark(self, step: str) -> None:
        os.write(self._fd, f"{time.monotonic():.4f} {step}\n".encode())


def statement_step(sql: str) -> str | None:
    """Which deliverer step a SQL statement is (None: not one the journal tracks)."""
    if "SKIP LOCKED" in sql:
        return "claim"
    if "unnest(" in sql or "delivery_logs.id = %(b_id)s" in sql:
        return "group-commit"
    if not sql.startswith("UPDATE delivery_logs"):
        return None
    if "attempts=(delivery_logs.attempts +" in sql:
        return "mark-sending"
    if sql.startswith("UPDATE delivery_logs SET lease_expires_at"):
        return "heartbeat"
    return "release"


def journal_statements(engine: Engine, journal: Journal, holds: dict[str, float]) -> None:
    """Journal each tracked statement before it runs. The first statement of each step in
    `holds` keeps its transaction open that long after it ran (its rows claimed or its outcomes
    recorded, not committed), as a slow claim or commit would: first SETTLE_S so the sender
    threads' calls under way journal their `send` lines, then the step is journaled again, and
    the hold. The hold stops the coordinating thread only: senders go on with rows already
    handed to them, and journal them during the hold (bench.chaos reads a held kill's step
    without those lines)."""
    waiting = dict(holds)

    def before(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        step = statement_step(sql)
        if step:
            journal.mark(step)

    def after(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        step = statement_step(sql)
        if step in waiting:
            hold = waiting.pop(step)
            time.sleep(SETTLE_S)
            journal.mark(step)
            time.sleep(hold)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)


class SendHold:
    """Holds the first accepted call's sender thread `hold_s` seconds (0: never) after the
    provider answered and before the deliverer hears of it: a kill then lands mid-send with the
    message at the provider and its row still `sending`."""

    def __init__(self, journal: Journal, hold_s: float) -> None:
        self.journal, self.hold_s = journal, hold_s
        self._taken = threading.Event()
        self._lock = threading.Lock()

    def after_accepted(self) -> None:
        if not self.hold_s:
            return
        with self._lock:
            if self._taken.is_set():
                return
            self._taken.set()
        self.journal.mark("send-held")
        time.sleep(self.hold_s)


class JournaledEmail:
    def __init__(self, inner: SesEmailSender, journal: Journal, hold: SendHold) -> None:
        self.inner, self.journal, self.hold = inner, journal, hold

    def send_email(self, message: OutgoingEmail) -> SendReceipt:
        self.journal.mark("send")
        receipt = self.inner.send_email(message)
        self.hold.after_accepted()
        return receipt

    def close(self) -> None:
        self.inner.close()


class JournaledSms:
    def __init__(self, inner: SnsSmsSender, journal: Journal, hold: SendHold) -> None:
        self.inner, self.journal, self.hold = inner, journal, hold

    def send_sms(self, message: OutgoingSms) -> SendReceipt:
        self.journal.mark("send")
        receipt = self.inner.send_sms(message)
        self.hold.after_accepted()
        return receipt

    def is_opted_out(self, phone: str) -> bool:
        return self.inner.is_opted_out(phone)

    def close(self) -> None:
        self.inner.close()


def client(service: str, endpoint: str, read_timeout_s: float, pool: int) -> Any:
    """The production client's configuration (one HTTP attempt per send) with a short read
    timeout, so a provider that holds a request costs the suite seconds, not minutes."""
    config = Config(
        retries={"total_max_attempts": SEND_ATTEMPTS, "mode": "standard"},
        connect_timeout=2,
        read_timeout=read_timeout_s,
        max_pool_connections=pool,
    )
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="chaos",
        aws_secret_access_key="chaos",
        config=config,
    )


def settings_for(cfg: dict[str, Any]) -> Settings:
    return load_settings(
        database_url=cfg["database_url"],
        sender="aws",
        batch_size=cfg["batch"],
        send_concurrency=cfg["concurrency"],
        send_window=cfg["window"],
        lease_seconds=cfg.get("lease_s", 60),
        retry_base_s=0.05,
        retry_max_s=0.5,
        ses_rate=cfg.get("rate", 2_000.0),
        sns_rate=cfg.get("rate", 2_000.0),
        loop_threshold=HUGE,
        sms_daily_cap_usd=HUGE,
        **_failover(cfg.get("smtp")),
    )


def _failover(smtp: dict[str, Any] | None) -> dict[str, Any]:
    """Settings for the SES SMTP failover to the fake provider's SMTP endpoint (or none)."""
    if not smtp:
        return {}
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp["port"],
        "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        "smtp_starttls": False,
        "email_failover_after_s": smtp["after_s"],
        "email_failover_probe_s": smtp["probe_s"],
    }


def enqueue_request(engine: Engine, settings: Settings, spec: dict[str, Any]) -> None:
    request = SendRequest(
        template=TEMPLATE,
        to=external_ids(spec["recipients"]),
        context=request_context(spec["tag"]),
        priority=Priority.urgent,
        idempotency_key=spec["key"],
    )
    with transaction(engine) as session:
        enqueue(
            session=session,
            request=request,
            catalog=TemplateCatalog(),
            settings=settings,
            now=utcnow(),
        )
        time.sleep(spec.get("hold_s", 0.0))  # a larger request: the commit comes later


def open_rows(engine: Engine) -> int:
    """Rows still to send by someone (due or not yet due)."""
    with transaction(engine) as session:
        query = select(func.count()).where(DeliveryLog.status.in_(("pending", "pending_retry")))
        return int(session.scalar(query) or 0)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    journal = Journal(cfg["journal"])
    journal.mark("start")
    settings = settings_for(cfg)
    engine = make_engine(cfg["database_url"])
    if cfg.get("enqueue"):
        journal.mark("enqueue")
        enqueue_request(engine, settings, cfg["enqueue"])
        journal.mark("enqueued")
    if cfg.get("rescue_dead"):
        journal.mark("rescue")
        with transaction(engine) as session:
            rescue_expired(session=session, now=utcnow() + timedelta(days=1))
    holds = dict(cfg.get("holds", {}))
    hold = SendHold(journal, holds.pop("send", 0.0))
    journal_statements(engine, journal, holds)
    pool = settings.send_concurrency * 2
    ses = client("sesv2", cfg["endpoint"], cfg["read_timeout_s"], pool)
    sns = client("sns", cfg["endpoint"], cfg["read_timeout_s"], pool)
    senders = Senders(
        email=JournaledEmail(SesEmailSender(ses), journal, hold),
        sms=JournaledSms(SnsSmsSender(sns), journal, hold),
    )
    deliverer = Deliverer(
        engine=engine,
        # with "smtp": email fails over to SES SMTP while the API refuses (the production path)
        senders=with_email_failover(senders, settings, clock=utcnow),
        settings=settings,
        owner=cfg["owner"],
        clock=utcnow,
        pacers=local_pacers(settings),
    )
    deadline = time.monotonic() + cfg["deadline_s"]
    batches = stopped = 0
    while time.monotonic() < deadline:
        report = deliverer.deliver_batch()
        batches += 1
        stopped += report.stopped is not None
        if not report.claimed:
            if not open_rows(engine):
                break
            time.sleep(0.05)  # rows returned by a stopped batch or waiting for their retry
    journal.mark("done")
    print(json.dumps({"batches": batches, "stopped": stopped, "left": open_rows(engine)}))


if __name__ == "__main__":
    main()
