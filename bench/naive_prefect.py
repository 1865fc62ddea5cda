"""Peer (b): naive Prefect, one Prefect task per notification inside a flow.

What a team porting the Celery system one to one would write: the flow stores the notification
rows, then submits `send-notification` once per row to a capped thread-pool task runner and waits.
The task is the same job as the Celery task (load, render, send both channels, record).
Side effects: NO_CACHE; provider pacing with a local token bucket per provider, shared by the
flow's threads. Runs against whatever PREFECT_API_URL names (the benchmark's loopback server).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from bench.common import Scenario, TimedWindow, request_context
from bench.ledger import LedgerSender, pacers_for
from bench.peer_work import PeerTools, recipient_ids, send_notification, store_notifications
from notify.db import make_engine
from notify.rendering import TemplateCatalog

_TOOLS: list[PeerTools] = []


@task(name="send-notification", cache_policy=NO_CACHE)
def send_one(notification_id: int) -> None:
    send_notification(_TOOLS[0], notification_id)


@flow(name="naive-dispatch")
def naive_dispatch(recipients: list[int], tag: str) -> float:
    """Store one notification per recipient, one task each; returns when all were submitted."""
    tools = _TOOLS[0]
    ids = store_notifications(tools.engine, recipients, request_context(tag), tag)
    futures = [send_one.submit(notification_id) for notification_id in ids]
    submitted = time.perf_counter()
    wait(futures)
    for future in futures:
        future.result()
    return submitted


def run(scenario: Scenario, url: str, ledger_dir: Path, tag: str) -> dict[str, Any]:
    engine = make_engine(url)
    _TOOLS[:] = [
        PeerTools(
            engine=engine,
            catalog=TemplateCatalog(),
            sender=LedgerSender(ledger_dir, latency_s=scenario.latency_s),
            pacers=pacers_for(scenario.rate),
        )
    ]
    recipients = recipient_ids(engine, scenario.notifications)
    runner: Any = ThreadPoolTaskRunner(max_workers=scenario.concurrency)
    configured = naive_dispatch.with_options(task_runner=cast(Any, runner))
    window = TimedWindow(url)
    submitted = configured(recipients, tag)
    window.close()
    _TOOLS[0].sender.close()
    engine.dispose()
    return {
        "enqueue_s": submitted - window.started,
        **window.readings(),
        "task_runner": f"ThreadPoolTaskRunner(max_workers={scenario.concurrency})",
    }
