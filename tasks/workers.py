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
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound

from notify.audits import WorkerState
from notify.db import utcnow

WORK_POOL = "notifyops"
DEPLOYMENT_TAG = "notifyops"  # every deployment of prefect.yaml; their runs carry it


@dataclass(frozen=True)
class PoolState:
    workers: list[WorkerState]
    down_minutes: float


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


def work_pool_state(pool: str = WORK_POOL) -> PoolState | None:
    """None without a Prefect server or without the pool (e.g. `notifyops serve`): a 404 of any
    kind (Prefect's ObjectNotFound or a bare HTTP 404 from the workers endpoint) means no pool."""
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
    states = [
        WorkerState(
            name=w.name,
            pool=pool,
            online=str(w.status).upper().endswith("ONLINE"),
            last_heartbeat=w.last_heartbeat_time,
        )
        for w in workers
    ]
    return PoolState(states, _down_minutes(states, utcnow()))


def _down_minutes(workers: list[WorkerState], now: datetime) -> float:
    """0 while any worker is online; else minutes since the last heartbeat of any worker."""
    if any(w.online for w in workers):
        return 0.0
    beats = [w.last_heartbeat for w in workers if w.last_heartbeat is not None]
    if not beats:
        return 0.0  # no worker ever registered: nothing has gone down
    return round((now - max(beats)).total_seconds() / 60, 1)
