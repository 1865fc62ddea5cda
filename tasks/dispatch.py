"""Prefect tasks for dispatch and delivery: thin adapters over notify/ (a task handles a batch)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from notify.db import transaction, utcnow
from notify.delivery import BatchReport, Deliverer
from notify.enqueue import Attribution, SendRequest, enqueue
from notify.errors import NotifyError
from notify.outbox import due_count
from notify.senders import from_settings
from notify.summaries import EnqueueSummary
from tasks import resources


def _retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """Bad input (unknown template, missing variable) fails at once; the rest is retried."""
    try:
        state.result()
    except NotifyError:
        return False
    except Exception:
        return True
    return True


@task(
    name="enqueue-notifications",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_unless_bad_input,
)
def enqueue_notifications(request: SendRequest, attribution: Attribution) -> EnqueueSummary:
    """Render, decide and store a request in one transaction (idempotent on its key)."""
    with transaction(resources.engine()) as session:
        result = enqueue(
            session=session,
            request=request,
            catalog=resources.catalog(),
            settings=resources.settings(),
            now=utcnow(),
            attribution=attribution,
        )
    return EnqueueSummary(
        request_id=result.request_id,
        notifications=len(result.notification_ids),
        notification_ids=list(result.notification_ids),
        duplicate=result.duplicate,
        unknown_recipients=list(result.unknown_recipients),
        rows=dict(result.rows),
    )


@task(name="rescue-expired-leases", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def rescue_expired_leases() -> tuple[int, int]:
    """Expired claims back to pending; expired in-flight rows to unknown."""
    return _deliverer("rescue").rescue()


@task(name="deliver-batch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def deliver_batch(owner_suffix: str, limit: int) -> dict[str, Any]:
    """Claim up to `limit` due rows and deliver them a window at a time."""
    report = _deliverer(owner_suffix).deliver_batch(limit)
    return _report_dict(report)


@task(name="count-due", cache_policy=NO_CACHE)
def count_due() -> int:
    with transaction(resources.engine()) as session:
        return due_count(session=session, now=utcnow())


def _deliverer(owner_suffix: str) -> Deliverer:
    settings = resources.settings()
    return Deliverer(
        engine=resources.engine(),
        senders=from_settings(settings),
        settings=settings,
        owner=resources.worker_name(owner_suffix),
        clock=utcnow,
        pacers=resources.pacers(),
    )


def _report_dict(report: BatchReport) -> dict[str, Any]:
    return {
        "claimed": report.claimed,
        "outcomes": [[c, s, n] for (c, s), n in report.outcomes.items()],
        "released": report.released,
        "lost_lease": report.lost_lease,
        "stopped": report.stopped,
        "failures": [sample.__dict__ for sample in report.failures],
    }
