"""What every benchmark part shares: the scratch database, the data, scenarios and the accounting.

The data: recipients `bench:<n>` with an email address and a phone number each, no quiet hours,
both channels on. A request sends `repair_assigned` (priority urgent, so email and SMS both go
out) to recipients 0..n-1: one notification each, two provider messages (email + SMS), so two
`delivery_logs` rows. "messages" everywhere in the benchmark means provider messages.

The accounting: every sender appends one CSV line per accepted message (channel, address, subject
or SMS body) to a ledger file, flushed before the caller sees the receipt. After a run the ledgers
are copied into the database and compared with what the input asked for and with the delivery rows:
a message with more than one receipt (or more than one `sent` row) is a duplicate, a message with no
receipt or no `sent` row is missing.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.cpu import CpuMeter
from notify.db import make_engine, transaction
from notify.migrate import upgrade_database
from notify.recipients import upsert_recipients
from notify.rendering import TemplateCatalog
from notify.roster import RecipientRow

ADMIN_URL = os.environ.get(
    "NOTIFY_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "repair_assigned"
PRIORITY = "urgent"
HUGE = 1_000_000_000  # loop threshold and SMS cap: the benchmark measures throughput, not policy
UNPACED = 100_000.0  # sends per second: the highest rate the settings accept, far above any run


def free_port() -> int:
    """A loopback port free right now (for a server that cannot listen on port 0 itself)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log(message: str) -> None:
    """Progress goes to stderr (stdout is reserved for the --json object)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Scenario:
    """Provider behaviour and the in-flight capacity every peer gets for it."""

    name: str
    latency_s: float
    rate: float | None  # per provider (SES and SNS alike), messages/s; None = unpaced
    concurrency: int
    notifications: int

    @property
    def messages(self) -> int:
        return 2 * self.notifications

    def label(self) -> str:
        if self.rate is None:
            return f"{self.latency_s * 1000:g} ms latency, unpaced"
        return f"{self.latency_s * 1000:g} ms latency, {self.rate:g}/s per provider"


@dataclass
class PeerResult:
    """One peer in one scenario. Times in seconds; rates are messages per second."""

    peer: str
    scenario: str
    notifications: int
    messages: int
    enqueue_s: float
    e2e_s: float
    duplicates: int = 0
    missing: int = 0
    peak_rss_mb: float = 0.0
    achieved: dict[str, float] = field(default_factory=dict)  # channel -> messages/s sent
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def enqueue_per_s(self) -> float:
        return self.messages / self.enqueue_s if self.enqueue_s > 0 else 0.0

    @property
    def e2e_per_s(self) -> float:
        return self.messages / self.e2e_s if self.e2e_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        runs = self.extra.get("runs_e2e_per_s")
        several = bool(runs and len(runs) > 1)
        return (
            {
                "messages": self.messages,
                "enqueue_per_s": round(self.enqueue_per_s, 1),
                "e2e_per_s": round(self.e2e_per_s, 1),
                "duplicates": self.duplicates,
                "missing": self.missing,
                "peak_rss_mb": round(self.peak_rss_mb, 1),
                "steal_pct": self.extra.get("steal_pct", 0.0),
                "host_pace_ms": self.extra.get("host_pace_ms"),
            }
            | ({"cpu_s": self.extra["cpu_s"]} if self.extra.get("cpu_s") else {})
            | ({"runs_e2e_per_s": runs} if several else {})
            | ({"runs_steal_pct": self.extra.get("runs_steal_pct", [])} if several else {})
            | ({"runs_host_pace_ms": self.extra.get("runs_host_pace_ms", [])} if several else {})
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PeerResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "enqueue_per_s": self.enqueue_per_s,
            "e2e_per_s": self.e2e_per_s,
        }


def recipient_row(n: int) -> RecipientRow:
    return RecipientRow(
        external_id=f"bench:{n}",
        name=f"Tech {n}",
        email=f"tech{n}@example.com",
        phone=f"+1206{n:07d}",
        timezone="UTC",
        receive_email=True,
        receive_sms=True,
        quiet_hours_start=None,
        quiet_hours_end=None,
    )


def external_ids(count: int) -> tuple[str, ...]:
    return tuple(f"bench:{n}" for n in range(count))


def request_context(tag: str) -> dict[str, str]:
    """The context of one request; `tag` makes its title unique (the loop guard counts titles)."""
    return {"repair_id": f"R-{tag}", "unit_number": "1234"}


class TimedWindow:
    """A peer's timed run: when it started, and the share of the host's CPU time the hypervisor
    gave to other guests meanwhile (`steal`, Linux; 0 elsewhere). On a shared virtual machine a
    run of a few seconds can lose a fifth of its CPU that way (measured: 0-22% over 2-3 s runs
    of the same dispatch, the slowest runs the most stolen from); the runs' steal is reported
    beside their rates so a slow run can be told from a slow peer. Given the benchmark's
    database, it also counts the CPU time the run used, by who used it (bench/cpu.py)."""

    def __init__(self, url: str | None = None) -> None:
        self._meter = CpuMeter(make_url(url).database or "").start() if url else None
        self._cpu_used: dict[str, float] = {}
        self._steal = 0.0
        self.started = self.finished = time.perf_counter()
        self._window = [time.monotonic()] * 2  # one clock for every process (bench.pace)
        self._cpu = psutil.cpu_times()

    def close(self) -> float:
        """The run ended: note its steal and CPU; returns the time it ended."""
        self.finished = time.perf_counter()
        self._window[1] = time.monotonic()
        now = psutil.cpu_times()
        total = sum(now) - sum(self._cpu)
        stolen = getattr(now, "steal", 0.0) - getattr(self._cpu, "steal", 0.0)
        self._steal = round(100 * stolen / total, 1) if total > 0 else 0.0
        if self._meter is not None:
            self._cpu_used = self._meter.stop()
        return self.finished

    def readings(self) -> dict[str, Any]:
        """What every peer reports of its closed run: `e2e_s`, `steal_pct`, `cpu_s` (CPU seconds
        by part: peer, postgres, prefect_server; {} unmeasured) and `window` (its start and end
        on time.monotonic(), which the parent turns into the host's pace, bench/pace.py)."""
        return {
            "e2e_s": self.finished - self.started,
            "steal_pct": self._steal,
            "cpu_s": dict(self._cpu_used),
            "window": list(self._window),
        }


# --- the scratch database -----


@contextmanager
def scratch_database(admin_url: str = ADMIN_URL, prefix: str = "notifyops_bench") -> Iterator[str]:
    """A new PostgreSQL database (migrated by the caller), dropped on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare_database(url: str, recipients: int) -> None:
    """Migrate, add the receipts tables, and upsert `recipients` recipients."""
    upgrade_database(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        for statement in LEDGER_DDL:
            connection.execute(text(statement))
    add_recipients(engine, 0, recipients)
    engine.dispose()


def add_recipients(engine: Engine, start: int, stop: int, chunk: int = 10_000) -> None:
    for first in range(start, stop, chunk):
        rows = [recipient_row(n) for n in range(first, min(stop, first + chunk))]
        with transaction(engine) as session:
            upsert_recipients(session=session, rows=rows)


def reset_outbox(url: str) -> None:
    """Empty notifications, delivery rows and the accounting tables (recipients stay)."""
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("TRUNCATE notifications, delivery_logs, bench_receipts, bench_expected CASCADE")
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE notifications, delivery_logs"))
    engine.dispose()


# --- accounting -----

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_receipts "
    "(channel text, address text, body text, at double precision)",
    "CREATE TABLE IF NOT EXISTS bench_expected (channel text, address text, body text)",
)


@dataclass(frozen=True)
class Request:
    """One send request of a run: recipients 0..recipients-1, a tag that makes its title unique."""

    tag: str
    recipients: int


def expect(url: str, requests: Sequence[Request], catalog: TemplateCatalog | None = None) -> None:
    """Write the messages the input asks for (subject and SMS body do not name the recipient)."""
    catalog = catalog or TemplateCatalog()
    engine = make_engine(url)
    with engine.begin() as connection:
        for request in requests:
            who = {"name": "x", "external_id": "x"}
            rendered = catalog.render(TEMPLATE, {**request_context(request.tag), "recipient": who})
            params = {"n": request.recipients, "subject": rendered.subject, "sms": rendered.sms}
            connection.execute(_EXPECT_SQL, params)
    engine.dispose()


_EXPECT_SQL = text(
    """
    INSERT INTO bench_expected (channel, address, body)
    SELECT 'email', email, :subject FROM recipients
    WHERE external_id IN (SELECT 'bench:' || g FROM generate_series(0, :n - 1) AS g)
    UNION ALL
    SELECT 'sms', phone, :sms FROM recipients
    WHERE external_id IN (SELECT 'bench:' || g FROM generate_series(0, :n - 1) AS g)
    """
)

_ACCOUNT_SQL = text(
    """
    WITH receipts AS (
        SELECT channel, address, body, count(*) AS n FROM bench_receipts GROUP BY 1, 2, 3
    ),
    rows AS (
        SELECT d.channel, coalesce(d.recipient_email, d.recipient_phone) AS address,
               CASE WHEN d.channel = 'email' THEN n.title ELSE n.sms_text END AS body,
               count(*) AS n
        FROM delivery_logs d JOIN notifications n ON n.id = d.notification_id
        WHERE d.status = 'sent'
        GROUP BY 1, 2, 3
    ),
    expected AS (
        SELECT channel, address, body, count(*) AS wanted FROM bench_expected GROUP BY 1, 2, 3
    )
    SELECT
        (SELECT coalesce(sum(wanted), 0) FROM expected),
        (SELECT count(*) FROM expected e LEFT JOIN receipts r USING (channel, address, body)
         WHERE coalesce(r.n, 0) < e.wanted),
        (SELECT count(*) FROM expected e LEFT JOIN rows s USING (channel, address, body)
         WHERE coalesce(s.n, 0) < e.wanted),
        (SELECT coalesce(sum(r.n - coalesce(e.wanted, 0)), 0)
         FROM receipts r LEFT JOIN expected e USING (channel, address, body)
         WHERE r.n > coalesce(e.wanted, 0)),
        (SELECT coalesce(sum(s.n - coalesce(e.wanted, 0)), 0)
         FROM rows s LEFT JOIN expected e USING (channel, address, body)
         WHERE s.n > coalesce(e.wanted, 0)),
        (SELECT count(*) FROM bench_receipts)
    """
)


@dataclass(frozen=True)
class Accounting:
    expected: int
    missing_receipt: int  # expected messages the provider never received
    missing_row: int  # expected messages with no `sent` delivery row
    extra_receipts: int  # receipts beyond one per expected message (sent twice, or never asked)
    extra_rows: int  # `sent` rows beyond one per expected message
    receipts: int

    @property
    def duplicates(self) -> int:
        return self.extra_receipts + self.extra_rows

    @property
    def missing(self) -> int:
        return max(self.missing_receipt, self.missing_row)


def account(url: str, ledger_dir: Path) -> Accounting:
    """Copy the ledgers in and compare them with the expected messages and the delivery rows."""
    engine = make_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for path in sorted(ledger_dir.glob("ledger-*.csv")):
            with path.open(encoding="utf-8") as handle:
                cursor.copy_expert(
                    "COPY bench_receipts (channel, address, body, at) FROM STDIN WITH (FORMAT csv)",
                    handle,
                )
        raw.commit()
    finally:
        raw.close()
    with engine.connect() as connection:
        values = connection.execute(_ACCOUNT_SQL).one()
    engine.dispose()
    return Accounting(*(int(v) for v in values))


def achieved_rates(url: str) -> dict[str, float]:
    """Per channel, the provider's steady rate: over the second half of its receipts.

    (The first half includes the ramp-up: start-up, the first claims.)
    """
    engine = make_engine(url)
    query = text(_ACHIEVED_SQL)
    with engine.connect() as connection:
        rows = list(connection.execute(query))
    engine.dispose()
    return {channel: (n - 1) / float(span) if span else 0.0 for channel, n, span in rows}


_ACHIEVED_SQL = """
    WITH r AS (
        SELECT channel, at,
               row_number() OVER (PARTITION BY channel ORDER BY at) AS k,
               count(*) OVER (PARTITION BY channel) AS n
        FROM bench_receipts
    )
    SELECT channel, count(*), max(at) - min(at) FROM r WHERE k > n / 2 GROUP BY channel
"""


def csv_line(*values: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()
