"""Peer (c): notifyops, as a library (bulk `enqueue` + `Deliverer` batches) and through its flows.

Library: one `enqueue` transaction for the whole request, then one deliverer claiming batches
of `batch_size` until nothing is due. Flows: `dispatch_notifications` as `notifyops send` runs it
(the command's `run_flow`, the product's default parameters: the request stored in parts, the
delivery tasks called from the dispatch flow) against the benchmark's Prefect server, so the
orchestrator's overhead shows. In both the provider is the ledger sender, handed to the flows
through the composition root (`notify.bootstrap.install`) as a test would: the library has no
setting for an in-memory sender with latency.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.common import (
    HUGE,
    TEMPLATE,
    UNPACED,
    Scenario,
    TimedWindow,
    external_ids,
    request_context,
)
from bench.ledger import LedgerSender, pacers_for
from notify.db import make_engine, transaction, utcnow
from notify.delivery import BatchReport, Deliverer
from notify.digest import DigestsWhileClaiming
from notify.enqueue import SendRequest, enqueue
from notify.rendering import TemplateCatalog
from notify.senders import Senders
from notify.settings import Priority, Settings, load_settings

BATCH_SIZE: int = Settings.model_fields["batch_size"].default  # the product's default
MAX_BATCHES = 100_000  # bounds every delivery loop


def bench_settings(url: str, scenario: Scenario) -> Settings:
    rate = scenario.rate or UNPACED
    return load_settings(**_overrides(url, scenario.concurrency, rate))


def _overrides(url: str, concurrency: int, rate: float) -> dict[str, Any]:
    return {
        "database_url": url,
        "sender": "memory",
        "batch_size": BATCH_SIZE,
        "send_concurrency": concurrency,
        "ses_rate": rate,
        "sns_rate": rate,
        "loop_threshold": HUGE,
        "sms_daily_cap_usd": HUGE,
        "cloudwatch_enabled": False,
    }


def settings_env(url: str, scenario: Scenario) -> dict[str, str]:
    """The same settings as NOTIFY_* variables (what the flows read)."""
    values = _overrides(url, scenario.concurrency, scenario.rate or UNPACED)
    return {f"NOTIFY_{name.upper()}": str(value) for name, value in values.items()}


def send_request(notifications: int, tag: str) -> SendRequest:
    return SendRequest(
        template=TEMPLATE,
        to=external_ids(notifications),
        context=request_context(tag),
        priority=Priority.urgent,
    )


def enqueue_request(
    engine: Engine, settings: Settings, catalog: TemplateCatalog, request: SendRequest
) -> int:
    with transaction(engine) as session:
        result = enqueue(
            session=session, request=request, catalog=catalog, settings=settings, now=utcnow()
        )
    return len(result.notification_ids)


def deliver_all(deliverer: Deliverer) -> BatchReport:
    total = BatchReport()
    for _ in range(MAX_BATCHES):
        report = deliverer.deliver_batch()
        total.add(report)
        if report.claimed == 0:
            break
    return total


def make_deliverer(
    engine: Engine,
    settings: Settings,
    sender: LedgerSender,
    rate: float | None,
    owner: str = "bench-library",
) -> Deliverer:
    return Deliverer(
        engine=engine,
        senders=Senders(email=sender, sms=sender),
        settings=settings,
        owner=owner,
        clock=utcnow,
        pacers=pacers_for(rate),
        digests=DigestsWhileClaiming(TemplateCatalog(), settings),  # as the product's batches
    )


def run_library(scenario: Scenario, url: str, ledger_dir: Path, tag: str) -> dict[str, Any]:
    settings = bench_settings(url, scenario)
    engine = make_engine(url)
    catalog = TemplateCatalog()
    sender = LedgerSender(ledger_dir, latency_s=scenario.latency_s)
    request = send_request(scenario.notifications, tag)
    window = TimedWindow(url)
    enqueue_request(engine, settings, catalog, request)
    enqueued = time.perf_counter()
    report = deliver_all(make_deliverer(engine, settings, sender, scenario.rate))
    finished = window.close()
    sender.close()
    engine.dispose()
    return {
        "enqueue_s": enqueued - window.started,
        **window.readings(),
        "deliver_s": finished - enqueued,
        "claimed": report.claimed,
        "batches": f"one deliverer, batches of {BATCH_SIZE}",
    }


def run_flows(scenario: Scenario, url: str, ledger_dir: Path, tag: str) -> dict[str, Any]:
    os.environ.update(settings_env(url, scenario))
    from flows.dispatch import dispatch_notifications
    from flows.params import DispatchParams
    from flows.states import result_of
    from notify.bootstrap import Runtime, install
    from notify.settings import load_settings
    from notifyops.prefect_env import run_flow

    sender = LedgerSender(ledger_dir, latency_s=scenario.latency_s)
    install(Runtime(load_settings(), senders=Senders(email=sender, sms=sender)))
    params = DispatchParams(
        template=TEMPLATE,
        to=list(external_ids(scenario.notifications)),
        context=request_context(tag),
        priority=Priority.urgent,
        idempotency_key=f"bench-{tag}",
    )
    last = f"{params.idempotency_key}#{scenario.notifications - 1}"  # its key names its position
    watcher = _StoredWatcher(make_engine(url), last)
    window = TimedWindow(url)
    watcher.start()
    # as `notifyops send` runs it: the CLI's run_flow, with the product's default parameters
    state = run_flow(
        dispatch_notifications,
        warm_senders=True,
        **params.flow_parameters(),
        return_state=True,
    )
    summary = result_of(state)
    finished = window.close()
    enqueued = watcher.stop()
    sender.close()
    delivery = summary.delivery
    return {
        "enqueue_s": (enqueued or finished) - window.started,
        **window.readings(),
        "claimed": delivery.claimed if delivery else 0,
        "batches": delivery.batches if delivery else 0,
    }


class _StoredWatcher:
    """Notes when the request's last notification is stored (its enqueue committed): one probe
    of the unique key every 20 ms, so the watching costs the run next to nothing."""

    def __init__(self, engine: Engine, last_key: str) -> None:
        self.engine, self.last_key = engine, last_key
        self.seen: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.engine.dispose()
        return self.seen

    def _watch(self) -> None:
        query = text("SELECT 1 FROM notifications WHERE idempotency_key = :key")
        with self.engine.connect() as connection:
            while not self._stop.is_set():  # bounded by stop(), called when the flow returns
                stored = connection.execute(query, {"key": self.last_key}).first()
                connection.rollback()
                if stored is not None:
                    self.seen = time.perf_counter()
                    return
                self._stop.wait(0.02)
