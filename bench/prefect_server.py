"""A Prefect server for the benchmark: `prefect server start` on 127.0.0.1, backed by PostgreSQL.

architecture.md: a SQLite-backed server locks up under task load, and an ephemeral API costs
17-27 s per process; one loopback server on a scratch PostgreSQL database serves every Prefect
run of the benchmark, and is stopped (and its database dropped) at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy.engine import make_url

from bench.common import ADMIN_URL, ROOT, free_port, log, scratch_database
from bench.cpu import SERVER_DATABASE, SERVER_PID, process_tree, tree_rss

STARTUP_TIMEOUT_S = 180


@dataclass
class PrefectServer:
    env: dict[str, str]  # PREFECT_API_URL, PREFECT_HOME, and the server's pid and database
    process: subprocess.Popen[bytes]
    startup_s: float

    def wait_idle(self, below: float = 5.0, quiet_s: float = 3.0, most_s: float = 240.0) -> float:
        """Wait until the server's processes use < `below`% CPU for `quiet_s`; returns the wait."""
        started = time.monotonic()
        quiet_since = time.monotonic()
        while time.monotonic() - started < most_s:
            if self._cpu_percent(0.5) >= below:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                break
        waited = time.monotonic() - started
        log(f"prefect server idle after {waited:.0f} s")
        return waited

    def _cpu_percent(self, interval: float) -> float:
        tree = process_tree(self.process.pid)
        try:
            for process in tree:
                process.cpu_percent(None)
            time.sleep(interval)
            return sum(p.cpu_percent(None) for p in tree)
        except psutil.Error:
            return 0.0

    def rss_mb(self) -> float:
        return tree_rss(self.process.pid) / 2**20


@contextmanager
def prefect_server(workdir: Path, admin_url: str = ADMIN_URL) -> Iterator[PrefectServer]:
    with scratch_database(admin_url, prefix="notifyops_bench_prefect") as url:
        database = make_url(url).set(drivername="postgresql+asyncpg")
        port = free_port()
        home = workdir / "prefect-home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database.render_as_string(False),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        command = [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
            "--analytics-off",
        ]
        started = time.perf_counter()
        with (workdir / "prefect-server.log").open("ab") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
            )
        api = f"http://127.0.0.1:{port}/api"
        try:
            _wait_healthy(api, process)
            server = PrefectServer(
                env={
                    "PREFECT_API_URL": api,
                    "PREFECT_HOME": str(home),
                    # for the peers' CPU accounting (bench/cpu.py)
                    SERVER_PID: str(process.pid),
                    SERVER_DATABASE: database.database or "",
                },
                process=process,
                startup_s=time.perf_counter() - started,
            )
            log(f"prefect server at {api} (started in {server.startup_s:.1f} s)")
            yield server
        finally:
            _stop(process)


def _wait_healthy(api: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy after {STARTUP_TIMEOUT_S} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (started with a new session), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
