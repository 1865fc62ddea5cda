"""Run every scheduled deployment of prefect.yaml in this process, without a work pool: the
embedded default for schedules on one machine.

    python -m deployments.serve        (or `notifyops serve`), from the repository root

prefect.yaml stays the one list: this reads it and serves each deployment that has a schedule, with
its parameters, tags and description. Ctrl-C or SIGTERM stops it and leaves the schedules active:
while nothing serves them, their runs come due and wait as Late (in the UI, for anyone looking),
where Prefect's default pauses every schedule on the way out, so that a stopped serve looked like
deployments someone had paused on purpose. At start, of the runs each schedule missed meanwhile
only the newest runs (it catches up: deliver what is due, read receipts, check health); the older
ones are marked Cancelled, saying they were missed, instead of running one after another.
It starts only when the database is reachable and at the newest migration, as every command does:
otherwise each scheduled run would fail on it, with its traceback, every few minutes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron
from prefect.states import Cancelled

from notify.bootstrap import reset, runtime
from notify.schema import DatabaseNotReady
from notify.settings import SettingsError

ROOT = Path(__file__).resolve().parents[1]


def load_deployments(path: Path = ROOT / "prefect.yaml") -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return list(yaml.safe_load(handle)["deployments"])


def load_flow(entrypoint: str) -> Any:
    """`flows/deliver.py:deliver_pending` -> the flow object."""
    file, name = entrypoint.split(":")
    module = file.removesuffix(".py").replace("/", ".")
    return getattr(importlib.import_module(module), name)


def to_served(spec: dict[str, Any]) -> Any:
    schedules = [
        Cron(
            item["cron"],
            timezone=item.get("timezone"),
            parameters=item.get("parameters"),
            slug=item.get("slug"),
        )
        for item in spec["schedules"]
    ]
    return load_flow(spec["entrypoint"]).to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        schedules=schedules,
        concurrency_limit=spec.get("concurrency_limit"),  # as a worker's deployment has it
    )


def scheduled(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [spec for spec in specs if spec.get("schedules")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the scheduled deployments of prefect.yaml")
    parser.add_argument("--list", action="store_true", help="List what would be served and exit")
    args = parser.parse_args(argv)
    specs = scheduled(load_deployments())
    if args.list:
        for spec in specs:
            crons = ", ".join(item["cron"] for item in spec["schedules"])
            print(f"{spec['name']}: {spec['entrypoint']} [{crons}]")
        return 0
    problem = database_problem()
    if problem is not None:
        print(f"error: {problem}; nothing served", file=sys.stderr, flush=True)
        return 2
    served = [to_served(spec) for spec in specs]
    cancel_missed_runs(served)
    serve(*served, pause_on_shutdown=False)
    return 0


def database_problem() -> str | None:
    """Why the scheduled runs could not use NOTIFY_DATABASE_URL (unreachable, missing, not at the
    newest migration, or the settings are wrong), in one line; None when they can. Opened through
    the process's runtime (the one place an engine is built), released again before serving."""
    try:
        runtime().engine()
    except (DatabaseNotReady, SettingsError) as problem:
        return str(problem)
    finally:
        reset()
    return None


MISSED = "missed: nothing served this deployment at its time (notifyops serve was stopped)"


def cancel_missed_runs(served: list[Any], now: datetime | None = None) -> None:
    """Of the scheduled runs that came due while nothing served them, keep the newest of each
    schedule (same parameters), which runs at once, and mark the others Cancelled, saying they
    were missed: a serve stopped for a day would otherwise start 1,440 receipts polls, one after
    another, before anything current. Runs created by hand are left alone."""
    cutoff = now or datetime.now(UTC)
    with get_client(sync_client=True) as client:
        for deployment in served:
            try:
                found = client.read_deployment_by_name(deployment.full_name)
            except ObjectNotFound:
                continue  # served for the first time: nothing missed
            missed = _due_runs(client, found.id, cutoff)
            newest: set[str] = set()
            stale: list[FlowRun] = []
            for run in missed:  # newest first
                schedule = json.dumps(run.parameters, sort_keys=True, default=str)
                if schedule in newest:
                    stale.append(run)
                newest.add(schedule)
            for run in stale:
                client.set_flow_run_state(run.id, Cancelled(message=MISSED), force=True)
            if stale:
                since = min(run.expected_start_time or cutoff for run in stale)
                print(
                    f"{deployment.name}: {len(stale)} run(s) missed since {since:%Y-%m-%d %H:%M} "
                    "UTC while nothing served it marked Cancelled; the newest runs now",
                    flush=True,
                )


def _due_runs(client: Any, deployment_id: Any, cutoff: datetime) -> list[FlowRun]:
    """The deployment's auto-scheduled runs due before `cutoff` and not started, newest first."""
    runs: list[FlowRun] = []
    page = 200
    while True:
        batch = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                expected_start_time=FlowRunFilterExpectedStartTime(before_=cutoff),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=page,
            offset=len(runs),
        )
        runs += batch
        if len(batch) < page:
            return [
                r for r in runs if r.auto_scheduled and r.state_name != "AwaitingConcurrencySlot"
            ]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
