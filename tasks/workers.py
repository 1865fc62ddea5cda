"""The Prefect side of health: the work pool's workers and the scheduled runs nothing has started
(Late), whoever should run them: a worker of the pool or `notifyops serve`. Needs
PREFECT_API_URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterTags,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound

from notify.audits import WorkerState
from notify.db import utcnow

WORK_POOL = "notifyops"
DEPLOYMENT_TAG = "notifyops"  # every deployment of prefect.yaml; their runs carry it
DEPLOYMENTS_READ = 200  # the server's page size: prefect.yaml has a dozen


@dataclass(frozen=True)
class PoolState:
    workers: list[WorkerState]
    down_minutes: float | None  # None: no worker online and none ever sent a heartbeat
    deployments: int  # the pool's deployments that are not paused: what its workers must run


@dataclass(frozen=True)
class LateRuns:
    count: int
    oldest_minutes: float | None  # how long the oldest has waited past its start time


def late_runs() -> LateRuns | None:
    """The deployments' runs that came due and nothing started (None without a Prefect server)."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    late = FlowRunFilter(
        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"])),
        tags=FlowRunFilterTags(all_=[DEPLOYMENT_TAG]),
    )
    with get_client(sync_client=True) as client:
        count = client.count_flow_runs(flow_run_filter=late)
        oldest = client.read_flow_runs(
            flow_run_filter=late, sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1
        )
    due = oldest[0].expected_start_time if oldest else None
    if due is None:
        return LateRuns(count, None)
    return LateRuns(count, round((utcnow() - due).total_seconds() / 60, 1))


def work_pool_exists(pool: str = WORK_POOL) -> bool | None:
    """Whether the Prefect server has the pool (None without PREFECT_API_URL: not known). Errors
    reaching the server propagate (httpx.HTTPError)."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            return False
    return True


def work_pool_state(pool: str = WORK_POOL) -> PoolState | None:
    """None without a Prefect server or without the pool (e.g. `notifyops serve`): a 404 of any
    kind (Prefect's ObjectNotFound or a bare HTTP 404 from the workers endpoint) means no pool.
    A pool no worker ever polled (NOT_READY) has no workers and no down time to tell."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    with get_client(sync_client=True) as client:
        try:
            workers = client.read_workers_for_work_pool(pool)
        except ObjectNotFound:
            return None
        except httpx.HTTPStatusError as error:
            if error.response.status_code == httpx.codes.NOT_FOUND:
                return None
            raise
        on_pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))
        deployments = client.read_deployments(work_pool_filter=on_pool, limit=DEPLOYMENTS_READ)
    states = [
        WorkerState(
            name=w.name,
            pool=pool,
            online=str(w.status).upper().endswith("ONLINE"),
            last_heartbeat=w.last_heartbeat_time,
        )
        for w in workers
    ]
    active = sum(1 for deployment in deployments if not deployment.paused)
    return PoolState(states, _down_minutes(states, utcnow()), active)


def _down_minutes(workers: list[WorkerState], now: datetime) -> float | None:
    """0 while any worker is online; else minutes since the last heartbeat of any worker; None
    when no worker ever sent one (none registered): not 0, which reads as healthy."""
    if any(w.online for w in workers):
        return 0.0
    beats = [w.last_heartbeat for w in workers if w.last_heartbeat is not None]
    if not beats:
        return None
    return round((now - max(beats)).total_seconds() / 60, 1)
