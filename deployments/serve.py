"""Run every deployment of prefect.yaml in this process, without a work pool: the embedded
default for schedules on one machine, and the runs an operator starts from the UI (a dispatch, a
purge, a mute) go there too.

    python -m deployments.serve        (or `notifyops serve`), from the repository root

prefect.yaml stays the one list: this reads it and serves each deployment, with its schedules,
parameters, tags and description, and a form that refuses a parameter it does not have
(deployments/forms.py). Ctrl-C or SIGTERM stops it and leaves the schedules active:
while nothing serves them, their runs come due and wait as Late (in the UI, for anyone looking),
where Prefect's default pauses every schedule on the way out, so that a stopped serve looked like
deployments someone had paused on purpose. At start, of the runs each schedule missed meanwhile
only the newest runs (it catches up: deliver what is due, read receipts, check health); the older
ones are marked Cancelled, saying they were missed, instead of running one after another.
It starts only when the database is reachable and at the newest migration, as every command does:
otherwise each scheduled run would fail on it, with its traceback, every few minutes.

Schedules need a Prefect server: its scheduler creates the runs a schedule asks for, and Prefect's
ephemeral API (what a command uses without PREFECT_API_URL) runs no scheduler, so a serve on it
served deployments that never ran. Without PREFECT_API_URL this starts a Prefect server of its own
on 127.0.0.1 (port 4200, or a free one when that is taken; its runs kept in PREFECT_HOME, its UI
at that address) and stops it on the way out.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings
from prefect.states import Cancelled

from deployments.forms import close_served
from deployments.zombies import HEARTBEAT_S, HEARTBEAT_VARIABLE, ensure_zombie_automation
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
        for item in spec.get("schedules") or ()
    ]
    deployment = load_flow(spec["entrypoint"]).to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        schedules=schedules,
        concurrency_limit=spec.get("concurrency_limit"),  # as a worker's deployment has it
    )
    return close_served(deployment)


def scheduled(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [spec for spec in specs if spec.get("schedules")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the deployments of prefect.yaml")
    parser.add_argument("--list", action="store_true", help="List what would be served and exit")
    args = parser.parse_args(argv)
    specs = load_deployments()
    if args.list:
        for spec in specs:
            crons = ", ".join(item["cron"] for item in spec.get("schedules") or ()) or "ad hoc"
            print(f"{spec['name']}: {spec['entrypoint']} [{crons}]")
        return 0
    problem = database_problem()
    if problem is not None:
        print(f"error: {problem}; nothing served", file=sys.stderr, flush=True)
        return 2
    with prefect_api() as problem:
        if problem is not None:
            print(f"error: {problem}; nothing served", file=sys.stderr, flush=True)
            return 2
        served = [to_served(spec) for spec in specs]
        taken = on_a_work_pool(served)
        if taken:
            print(f"error: {taken}; nothing served", file=sys.stderr, flush=True)
            return 2
        cancel_missed_runs(served)
        watch_for_dead_runs()
        serve(*served, pause_on_shutdown=False)
    return 0


def watch_for_dead_runs() -> None:
    """The runs this serves send heartbeats, and the automation that marks a silent one Crashed
    exists (deployments/zombies.py): a serve killed mid-run no longer leaves it Running."""
    os.environ.setdefault(HEARTBEAT_VARIABLE, str(HEARTBEAT_S))  # the runs' processes inherit it
    try:
        print(ensure_zombie_automation(), flush=True)
    except Exception as problem:  # serving matters more; say why the watch is missing
        print(f"warning: no automation for dead runs ({problem})", file=sys.stderr, flush=True)


LOCAL_PORT = 4200  # Prefect's own default
SERVER_START_S = 180  # a Prefect server's first start migrates its database: 10-60 s measured


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """PREFECT_API_URL's server, or one this process starts (module docstring) for as long as
    the block runs; yields why none could be started, or None."""
    if PREFECT_API_URL.value():
        yield None
        return
    port = LOCAL_PORT if _port_free(LOCAL_PORT) else _free_port()
    url = f"http://127.0.0.1:{port}/api"
    home = Path(str(PREFECT_HOME.value())).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "notifyops-serve-server.log"
    command = [sys.executable, "-m", "prefect", "server", "start"]
    with log.open("ab") as output:
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C stops serve first; serve stops the server
        )
    try:
        print(f"starting a Prefect server for the schedules at {url} (log: {log})", flush=True)
        problem = _wait_until_up(url, server, log)
        if problem is not None:
            yield problem
            return
        print(
            f"Prefect UI: http://127.0.0.1:{port}; for other commands to use this server: "
            f"export PREFECT_API_URL={url}",
            flush=True,
        )
        os.environ["PREFECT_API_URL"] = url  # the runs serve starts, in processes of their own
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield None
    finally:
        _stop(server)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> str | None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return f"the Prefect server for the schedules exited {server.returncode} (see {log})"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return None
        except OSError:
            time.sleep(0.5)
    return f"the Prefect server for the schedules did not answer in {SERVER_START_S} s (see {log})"


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


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


def on_a_work_pool(served: list[Any]) -> str | None:
    """Why these cannot be served here: deployments of the same names that `prefect deploy`
    registered on a work pool. Served over them, they kept the pool and lost their code path,
    and every run serve took crashed (FileNotFoundError on '<cwd>/None'); or None."""
    pooled = []
    with get_client(sync_client=True) as client:
        for deployment in served:
            try:
                found = client.read_deployment_by_name(deployment.full_name)
            except ObjectNotFound:
                continue
            if found.work_pool_name:
                pooled.append((deployment.full_name, found.work_pool_name))
    if not pooled:
        return None
    names = ", ".join(f"'{name}'" for name, _ in pooled)
    return (
        f"{names} are registered on the work pool '{pooled[0][1]}' of this Prefect server "
        "(prefect deploy): its workers run them. Serve against a server of its own (leave "
        "PREFECT_API_URL unset), or delete them first (prefect deployment delete NAME)"
    )


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
