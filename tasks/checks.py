"""Prefect tasks for the monitoring checks: thin adapters over notify.checks."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from notify.alerts import Delivery
from notify.audits import HealthReport, LoopReport, Report
from notify.checks import (
    Check,
    Published,
    mute_detected_loops,
    publish_metrics,
    raise_alerts,
    run_audit,
)
from tasks.resources import runtime
from tasks.retries import retry_if_database_unavailable
from tasks.run_info import run_actor
from tasks.workers import late_runs, work_pool_state


@task(
    name="run-audit",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_if_database_unavailable,
)
def audit(check: Check, as_of: datetime, window_hours: float) -> Report:
    """Aggregate the delivery log over the window (SQL) into a typed report."""
    window = timedelta(hours=window_hours)
    return run_audit(check, runtime=runtime(), as_of=as_of, window=window)


@task(name="work-pool-state", cache_policy=NO_CACHE, retries=1)
def add_worker_state(report: HealthReport) -> HealthReport:
    """Fold the work pool's workers and the late runs in (when a Prefect server is configured;
    without a work pool, as under `notifyops serve`, the late runs alone)."""
    state, late = work_pool_state(), late_runs()
    if state is None and late is None:
        return report
    return report.with_workers(
        state.workers if state else None,
        down_minutes=state.down_minutes if state else None,
        pool_deployments=state.deployments if state else None,
        late_runs=late.count if late else None,
        late_runs_minutes=late.oldest_minutes if late else None,
    )


@task(name="mute-loops", cache_policy=NO_CACHE, retries=1)
def mute(report: LoopReport) -> LoopReport:
    actor = run_actor("loop-detection")
    return mute_detected_loops(runtime=runtime(), report=report, actor=actor)


@task(name="publish-metrics", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def metrics(check: Check, report: Report, ad_hoc: str | None) -> Published:
    """CloudWatch data points under NOTIFY_CLOUDWATCH_NAMESPACE (an ad hoc run's under the
    dimension the alarms do not read); AWS refusing or out of reach is in the answer (botocore
    has retried it), not a failed task."""
    return publish_metrics(check, runtime=runtime(), report=report, ad_hoc=ad_hoc)


@task(name="raise-alerts", cache_policy=NO_CACHE, retries=1)
def alerts(check: Check, report: Report, ad_hoc: str | None) -> list[Delivery]:
    """Store, deduplicate, resolve and route this check's alerts (an ad hoc run's: route them
    as one-off notices, the stored ones left alone); returns each route's outcome."""
    return raise_alerts(check, runtime=runtime(), report=report, ad_hoc=ad_hoc)
