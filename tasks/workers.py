"""The Prefect side of health: the work pool's workers and late runs (needs PREFECT_API_URL)."""

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
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.exceptions import ObjectNotFound

from notify.audits import WorkerState
from notify.db import utcnow

WORK_POOL = "notifyops"


@dataclass(frozen=True)
class PoolState:
    workers: list[WorkerState]
    down_minutes: float
    late_runs: int


def work_pool_state(pool: str = WORK_POOL) -> PoolState | None:
    """None without a Prefect server or without the pool (e.g. `notifyops serve`): a 404 of any
    kind (Prefect's ObjectNotFound or a bare HTTP 404 from the workers endpoint) means no pool."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    with get_client(sync_client=True) as client:
        try:
            workers = client.read_workers_for_work_pool(pool)
            late = client.count_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))
                ),
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
            )
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
    return PoolState(states, _down_minutes(states, utcnow()), late)


def _down_minutes(workers: list[WorkerState], now: datetime) -> float:
    """0 while any worker is online; else minutes since the last heartbeat of any worker."""
    if any(w.online for w in workers):
        return 0.0
    beats = [w.last_heartbeat for w in workers if w.last_heartbeat is not None]
    if not beats:
        return 0.0  # no worker ever registered: nothing has gone down
    return round((now - max(beats)).total_seconds() / 60, 1)
