"""`notifyops serve` serves every scheduled deployment of prefect.yaml and stops cleanly, leaving
their schedules active.

Slow (each serve process loads Prefect and the flows; the first test's serve starts a Prefect server
of its own): runs in CI and with NOTIFY_TEST_SLOW=1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deployments.serve import load_deployments, scheduled

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_without_a_prefect_api_starts_a_server_whose_scheduler_makes_runs(
    db_url: str, tmp_path: Path
) -> None:
    """Without PREFECT_API_URL, serve ran on Prefect's ephemeral API, which has no scheduler:
    it said it served every deployment and no run was ever made. It now starts a Prefect server
    of its own, whose scheduler makes the runs, and stops it on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "PREFECT_"))}
    env.update(
        NOTIFY_DATABASE_URL=db_url,
        NOTIFY_SENDER="memory",
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",  # the default waits a minute
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(BIN / "notifyops"), "serve"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            _wait_for(lambda: "being served" in log.read_text(), process, log, 240)
            output = log.read_text()
            for spec in scheduled(load_deployments()):
                assert f"{spec['name']}/{spec['name']}" in output
            api = re.search(r"export PREFECT_API_URL=(\S+)", output)
            assert api is not None, output[-2000:]
            _wait_for(lambda: _scheduled_runs(api.group(1)) > 0, process, log, 90)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) in (0, -signal.SIGTERM, 143)
            with pytest.raises(OSError):  # the server went with it
                urllib.request.urlopen(f"{api.group(1)}/health", timeout=5)
        finally:
            if process.poll() is None:
                process.kill()


def _wait_for(
    done: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, most_s: float
) -> None:
    deadline = time.monotonic() + most_s
    while not done():
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(1)


def _scheduled_runs(api: str) -> int:
    """How many flow runs the server at `api` holds (the scheduler's, ahead of their time)."""
    request = urllib.request.Request(
        f"{api}/flow_runs/count", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(json.load(answer))


def _serve_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """A `notifyops serve` process on the session's Prefect API (an ephemeral one would start in
    each process: ~20 s apiece on 2 cores), its own database and the in-memory sender."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "PREFECT_"))}
    return env | {
        "NOTIFY_DATABASE_URL": db_url,
        "NOTIFY_SENDER": "memory",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }


def _serve_until_served(env: dict[str, str], log: Path) -> str:
    """Start `notifyops serve`, wait until it serves, stop it (SIGTERM); its output."""
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(BIN / "notifyops"), "serve"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )
        try:
            deadline = time.monotonic() + 180
            while "being served" not in log.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()[-2000:]
                time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) in (0, -signal.SIGTERM, 143)
        finally:
            if process.poll() is None:
                process.kill()
    return log.read_text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stopping_serve_leaves_the_schedules_active_and_a_restart_runs_only_the_newest_missed(
    db_url: str, prefect_harness: None, tmp_path: Path
) -> None:
    """Stopped, serve leaves every schedule active (its runs come due and wait as Late, for the
    UI and whoever looks), not paused as if someone had paused them; started again, it runs the
    newest run each schedule missed and marks the older ones Cancelled, instead of working
    through them one by one."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    from deployments.serve import MISSED, load_flow

    env = _serve_env(db_url, tmp_path)
    first = _serve_until_served(env, tmp_path / "first.log")
    assert "Pausing all deployments" not in first, first[-2000:]
    specs = {spec["name"]: spec for spec in scheduled(load_deployments())}
    with get_client(sync_client=True) as client:
        for name, spec in specs.items():
            flow_name = load_flow(spec["entrypoint"]).name
            deployment = client.read_deployment_by_name(f"{flow_name}/{name}")
            assert not deployment.paused, f"{name} was paused when serve stopped"
            assert deployment.schedules and all(s.active for s in deployment.schedules), name
        # half an hour of deliver-pending's schedule passes with serve stopped
        deliver = client.read_deployment_by_name("deliver-pending/deliver-pending")
        now = datetime.now(UTC)
        client.request(
            "POST",
            "/deployments/{id}/schedule",
            path_params={"id": deliver.id},
            json={
                "start_time": (now - timedelta(minutes=31)).isoformat(),
                "end_time": (now - timedelta(minutes=1)).isoformat(),
                "max_runs": 100,
            },
        ).raise_for_status()

        def missed() -> list[Any]:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[deliver.id])
                ),
                limit=200,
            )
            return [r for r in runs if r.expected_start_time and r.expected_start_time < now]

        waiting = {r.id for r in missed() if r.state_type.value == "SCHEDULED"}
        assert len(waiting) >= 6

        second = _serve_until_served(env, tmp_path / "second.log")
        runs = sorted((r for r in missed() if r.id in waiting), key=lambda r: r.expected_start_time)
    assert "deliver-pending: " in second and "missed since" in second, second[-2000:]
    *older, newest = runs
    assert all(r.state_type.value == "CANCELLED" and r.state.message == MISSED for r in older)
    assert newest.state_type.value != "CANCELLED" or newest.state.message != MISSED


def test_served_deployments_keep_their_concurrency_limits_from_prefect_yaml() -> None:
    """Served, receipts could run two polls at once and deliver-pending more than 4 runs:
    `concurrency_limit` from prefect.yaml was left out."""
    from deployments.serve import load_deployments, scheduled, to_served

    limits = {
        spec["name"]: to_served(spec).concurrency_limit for spec in scheduled(load_deployments())
    }
    assert limits["receipts"] == 1 and limits["deliver-pending"] == 4
