"""Nothing lost, nothing sent twice: concurrent deliverer processes and a SIGKILL mid-batch.

PostgreSQL only (SKIP LOCKED claims are the multi-worker path; SQLite has one writer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from notify.db import DeliveryLog, transaction, utcnow
from notify.enqueue import SendRequest, enqueue
from notify.outbox import rescue_expired
from notify.rendering import TemplateCatalog
from notify.settings import Priority, Settings, load_settings
from tests.conftest import empty_tables, engine_for
from tests.test_dispatch import add_recipients, tech

ROOT = Path(__file__).resolve().parents[1]
RECIPIENTS = 2_500  # x 2 channels = 5,000 delivery rows


@pytest.fixture
def pg(postgres_url: str) -> Engine:
    engine = engine_for(postgres_url)
    empty_tables(engine)
    return engine


def fill(engine: Engine, url: str, recipients: int, *, sms: bool = True) -> None:
    """One urgent request to `recipients` technicians: email and, unless `sms` is off, SMS."""
    people = [tech(n, timezone="UTC", receive_sms=sms) for n in range(recipients)]
    add_recipients(engine, people)
    request = SendRequest(
        template="repair_assigned",
        to=tuple(f"tech:{n}" for n in range(recipients)),
        context={"repair_id": "R-1", "unit_number": "9"},
        priority=Priority.urgent,
    )
    settings = load_settings(
        database_url=url, sender="memory", loop_threshold=1_000_000, sms_daily_cap_usd=1_000_000
    )
    with transaction(engine) as session:
        enqueue(
            session=session,
            request=request,
            catalog=TemplateCatalog(),
            settings=settings,
            now=utcnow(),
        )


def start_worker(
    url: str,
    owner: str,
    log: Path,
    latency: float,
    batch: int,
    concurrency: int,
    window: int | None = None,
    lease_s: int | None = None,
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "tests.workers.deliver_worker",
        url,
        owner,
        str(log),
        str(latency),
        str(batch),
        str(concurrency),
        *([str(window)] if window else []),
        *([str(lease_s)] if lease_s else []),
    ]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for_orphaned_sessions(engine: Engine, timeout_s: float = 30.0) -> None:
    """A killed deliverer's PostgreSQL session ends only once its backend notices (it may be in the
    middle of an UPDATE): until then it holds row locks, and a rescue meeting them could deadlock
    with it. Production retries that (the rescue is a retried step); the test waits for it."""
    busy = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
    )
    deadline = time.monotonic() + timeout_s
    with engine.connect() as conn:
        while conn.execute(busy).scalar() and time.monotonic() < deadline:
            conn.rollback()
            time.sleep(0.1)


def provider_log(*paths: Path) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for path in paths:
        if path.exists():
            lines = path.read_text().splitlines()
            counts.update(tuple(json.loads(line)[:2]) for line in lines)  # (channel, address)
    return counts


def logged_so_far(path: Path) -> int:
    """Messages the provider has logged, read while the worker is still writing: a line it is in
    the middle of writing has no newline yet, so it is neither counted nor parsed (a reader can
    see part of a write to a file)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def status_counts(engine: Engine) -> dict[str, int]:
    with transaction(engine) as session:
        query = select(DeliveryLog.status, func.count()).group_by(DeliveryLog.status)
        return dict(session.execute(query).tuples().all())


def test_two_deliverer_processes_claim_disjoint_sets(
    pg: Engine, postgres_url: str, tmp_path: Path
) -> None:
    fill(pg, postgres_url, RECIPIENTS)
    logs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    workers = [
        start_worker(postgres_url, f"w{i}", log, 0.0005, 200, 8) for i, log in enumerate(logs)
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    received = provider_log(*logs)
    assert sum(received.values()) == 2 * RECIPIENTS
    assert [key for key, n in received.items() if n > 1] == [], "0 duplicates"
    assert status_counts(pg) == {"sent": 2 * RECIPIENTS}, "0 missing"
    per_worker = [sum(provider_log(log).values()) for log in logs]
    assert all(n > 0 for n in per_worker), f"both workers took part: {per_worker}"


DEFAULT_WINDOW = int(Settings.model_fields["send_window"].default)


@pytest.mark.parametrize(
    ("window", "latency", "recipients", "kill_after"),
    [(40, 0.02, 500, 150), (DEFAULT_WINDOW, 0.0005, 2_500, 1_500)],
    ids=["window-40-slow-provider", "default-window-fast-provider"],
)
def test_sigkill_mid_batch_loses_nothing_and_sends_nothing_twice(
    pg: Engine,
    postgres_url: str,
    tmp_path: Path,
    window: int,
    latency: float,
    recipients: int,
    kill_after: int,
) -> None:
    """A real deliverer process (8 calls in flight) killed mid-batch: at most
    NOTIFY_SEND_WINDOW rows `unknown`, nothing sent twice, the rest delivered after rescue. The
    provider's own log (written before it answers) is the ground truth."""
    rows = 2 * recipients
    fill(pg, postgres_url, recipients)
    killed_log = tmp_path / "killed.jsonl"
    worker = start_worker(postgres_url, "doomed", killed_log, latency, 1000, 8, window)
    deadline = time.monotonic() + 60
    while logged_so_far(killed_log) < kill_after and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    wait_for_orphaned_sessions(pg)
    before = status_counts(pg)
    assert before.get("sending", 0) <= window, before
    assert before.get("pending", 0) + before.get("claimed", 0) > 0, f"killed mid-run: {before}"
    with transaction(pg) as session:
        rescued = rescue_expired(session=session, now=utcnow() + timedelta(hours=1))
    assert rescued.marked_unknown == before.get("sending", 0)

    next_log = tmp_path / "next.jsonl"
    assert start_worker(postgres_url, "next", next_log, 0.0, 1000, 8, window).wait(timeout=300) == 0

    received = provider_log(killed_log, next_log)
    assert [key for key, n in received.items() if n > 1] == [], "nothing sent twice"
    after = status_counts(pg)
    assert set(after) <= {"sent", "unknown"}, after
    assert after.get("unknown", 0) <= window, "at most NOTIFY_SEND_WINDOW rows are in doubt"
    assert after["sent"] + after.get("unknown", 0) == rows, "nothing lost"
    total_received = sum(received.values())
    assert after["sent"] <= total_received, "every row marked sent reached the provider"
    assert total_received - after["sent"] <= after.get("unknown", 0), (
        "only rows marked unknown may have reached the provider without being recorded"
    )
