"""Peer (a): the runbook's architecture, Celery with the Redis broker, one task per notification.

The worker is a real `celery worker` process started by `run()`:

    celery -A bench.celery_peer worker -P prefork -c 8 -Q <queue>      (the runbook's concurrency)
    celery -A bench.celery_peer worker -P threads -c 64 -Q <queue>     (when 64 must be in flight)

Provider rates use Celery's own `rate_limit` on the task (the runbook's CELERY_ANNOTATIONS): one
task sends one email and one SMS, so `N/s` tasks is `N/s` per provider. Configuration comes from
BENCH_* environment variables, which the worker inherits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery

from bench.common import ROOT, Scenario, TimedWindow, log, request_context
from bench.ledger import LedgerSender, pacers_for
from bench.peer_work import (
    PeerTools,
    recipient_ids,
    send_notification,
    sent_count,
    store_notifications,
)
from notify.db import make_engine
from notify.rendering import TemplateCatalog

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "notifyops-bench")
RATE = os.environ.get("BENCH_RATE", "")

app = Celery("bench", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)

_TOOLS: dict[int, PeerTools] = {}


def _tools() -> PeerTools:
    """Built once per worker process (after the prefork fork, never shared across it)."""
    pid = os.getpid()
    if pid not in _TOOLS:
        ledger = Path(os.environ["BENCH_LEDGER_DIR"])
        _TOOLS[pid] = PeerTools(
            engine=make_engine(os.environ["BENCH_DATABASE_URL"]),
            catalog=TemplateCatalog(),
            sender=LedgerSender(ledger, latency_s=float(os.environ.get("BENCH_LATENCY_S", "0"))),
            pacers=pacers_for(None),  # Celery's rate_limit paces
        )
    return _TOOLS[pid]


@app.task(name="bench.send_notification", rate_limit=f"{RATE}/s" if RATE else None)
def send_notification_task(notification_id: int) -> None:
    send_notification(_tools(), notification_id)


def pool_for(scenario: Scenario) -> tuple[str, int]:
    """prefork -c 8 (the runbook) unless more must be in flight, then threads."""
    if scenario.concurrency <= 8:
        return "prefork", 8
    return "threads", scenario.concurrency


def run(scenario: Scenario, url: str, ledger_dir: Path, tag: str) -> dict[str, Any]:
    pool, concurrency = pool_for(scenario)
    worker = _start_worker(pool, concurrency, ledger_dir)
    try:
        return _drive(scenario, url, tag) | {"pool": f"{pool} -c {concurrency}"}
    finally:
        _stop_worker(worker)
        _purge()


def _start_worker(pool: str, concurrency: int, ledger_dir: Path) -> subprocess.Popen[bytes]:
    name = f"bench-{uuid.uuid4().hex[:6]}@localhost"
    command = [
        sys.executable, "-m", "celery", "-A", "bench.celery_peer", "worker",
        "-P", pool, "-c", str(concurrency), "-Q", QUEUE, "-n", name, "-l", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with (ledger_dir / "celery-worker.log").open("ab") as out:
        worker = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), stdout=out, stderr=out)
    for _ in range(120):  # up to ~60 s
        if worker.poll() is not None:
            raise RuntimeError(f"celery worker exited with {worker.returncode}")
        if app.control.ping(destination=[name], timeout=0.5):
            return worker
    _stop_worker(worker)
    raise RuntimeError("celery worker did not answer a ping within 60 s")


def _drive(scenario: Scenario, url: str, tag: str) -> dict[str, Any]:
    engine = make_engine(url)
    ids_of_recipients = recipient_ids(engine, scenario.notifications)
    window = TimedWindow(url)
    ids = store_notifications(engine, ids_of_recipients, request_context(tag), tag)
    for notification_id in ids:
        send_notification_task.apply_async((notification_id,), queue=QUEUE)
    enqueued = time.perf_counter()
    done = _wait_for(engine, scenario.messages, _deadline(scenario))
    window.close()
    engine.dispose()
    return {
        "enqueue_s": enqueued - window.started,
        **window.readings(),
        "complete": done,
    }


def _deadline(scenario: Scenario) -> float:
    floor = scenario.messages / scenario.rate / 2 if scenario.rate else 0.0
    return time.monotonic() + 120 + 2 * floor


def _wait_for(engine: Any, messages: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if sent_count(engine) >= messages:
            return True
        time.sleep(0.05)
    log(f"celery: gave up waiting for {messages} sent rows")
    return False


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def _purge() -> None:
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)
        client = connection.default_channel.client
        client.delete(QUEUE, f"_kombu.binding.{QUEUE}")
