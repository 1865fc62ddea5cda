"""The peer comparison: every peer in every scenario on one scratch database, in one run.

Peers that need no Prefect API run first; then one loopback Prefect server starts for the
Prefect peers and stops after them, so its own start-up and background services do not share
the two cores with the Celery and library runs. Between Prefect peers the benchmark waits until
the server has digested the previous peer's task events (its CPU use falls below 5%): naive
Prefect leaves a minute of event processing behind, which the next peer would otherwise pay for.
Before the timed runs each Prefect peer runs once, small and untimed, so that neither pays for the
new server's first requests (registering its flow and task names, warming its connection pool:
0.3-0.4 s measured on the first dispatch after a start), as a server in use has seen its flows.
The notifyops flows run first in each scenario.

Both notifyops peers also send a dispatch of SMALL notifications (the `small` scenario, MOST_RUNS
times, median): what a dispatch costs whatever its size. The flows' time there is nearly all
the orchestrator's (the flow run, its task runs, artifacts); the gap between them is a cost
paid once per dispatch, so it weighs on a 10,000-message run's rate and not on a 1M one's.

A run shorter than SHORT_RUN_S is at the mercy of one second of noise on a shared two-core
machine (the same peer measured 3,700 to 4,900 msg/s in five runs of 10,000 messages): such a
peer runs MOST_RUNS times and reports its median run, with every run's rate beside it and the
duplicates and missing messages of all its runs. A longer run (Celery, naive Prefect, a paced
scenario) averages the noise out within itself and runs once.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

from bench.common import ROOT, PeerResult, Scenario, log
from bench.prefect_server import PrefectServer, prefect_server
from bench.scenario import run_peer

WITHOUT_SERVER = ("notifyops", "celery")
WITH_SERVER = ("notifyops_flows", "naive_prefect")
WARM_UP = Scenario("warm-up", 0.0, None, 8, 20)  # untimed, once per Prefect peer
SMALL = Scenario("small", 0.0, None, 8, 20)  # a dispatch's fixed cost (notifyops peers)
SHORT_RUN_S = 10.0
MOST_RUNS = 3
PACKAGES = ("prefect", "sqlalchemy", "celery", "kombu", "redis", "psycopg2-binary", "jinja2")


def scenarios(zero: int, rate14: int, rate500: int) -> list[Scenario]:
    """Zero latency; 50 ms latency at 14/s and at 500/s per provider (sizes in notifications)."""
    found = [
        Scenario("zero", 0.0, None, 8, zero),
        Scenario("lat50_r14", 0.05, 14.0, 8, rate14),
        Scenario("lat50_r500", 0.05, 500.0, 64, rate500),
    ]
    return [s for s in found if s.notifications > 0]


@dataclass
class SuiteResult:
    results: list[PeerResult] = field(default_factory=list)
    prefect_server: dict[str, float] = field(default_factory=dict)

    def get(self, peer: str, scenario: str) -> PeerResult | None:
        return next((r for r in self.results if r.peer == peer and r.scenario == scenario), None)


def run_suite(
    url: str,
    workdir: Path,
    plan: Sequence[Scenario],
    peers: Sequence[str],
    naive_max: int | None = None,
) -> SuiteResult:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(workdir / "prefect-home")}
    suite = SuiteResult()
    for scenario in plan:
        for peer in [p for p in WITHOUT_SERVER if p in peers]:
            suite.results.append(measured(partial(run_peer, peer, scenario, url, workdir, env)))
    if "notifyops" in peers:
        suite.results.append(measured(partial(run_peer, "notifyops", SMALL, url, workdir, env)))
    prefect_peers = [p for p in WITH_SERVER if p in peers]
    if not prefect_peers:
        return suite
    with prefect_server(workdir) as server:
        env |= server.env
        for peer in prefect_peers:
            run_peer(peer, WARM_UP, url, workdir, env)
        if "notifyops_flows" in peers:
            once = partial(_once_idle, server, "notifyops_flows", SMALL, url, workdir, env)
            suite.results.append(measured(once))
        for scenario in plan:
            for peer in prefect_peers:
                sized = capped(scenario, naive_max) if peer == "naive_prefect" else scenario
                once = partial(_once_idle, server, peer, sized, url, workdir, env)
                suite.results.append(measured(once))
        suite.prefect_server = {"startup_s": server.startup_s, "rss_mb_after": server.rss_mb()}
    return suite


def _once_idle(
    server: PrefectServer,
    peer: str,
    scenario: Scenario,
    url: str,
    workdir: Path,
    env: dict[str, str],
    run: int,
) -> PeerResult:
    """A Prefect peer's run once the server has digested the previous run's events."""
    server.wait_idle()
    return run_peer(peer, scenario, url, workdir, env, run=run)


def measured(run: Callable[[int], PeerResult]) -> PeerResult:
    """One run, or MOST_RUNS when the first is shorter than SHORT_RUN_S: the median run (by
    e2e msg/s), with every run's rate and the host's CPU steal during it
    (`extra["runs_e2e_per_s"]`, `extra["runs_steal_pct"]`, in order) and the duplicates and
    missing messages summed over all runs, so no run's loss or double send is hidden."""
    results = [run(1)]
    if results[0].e2e_s < SHORT_RUN_S:
        results += [run(n) for n in range(2, MOST_RUNS + 1)]
    median = sorted(results, key=lambda r: r.e2e_per_s)[len(results) // 2]
    return replace(
        median,
        duplicates=sum(r.duplicates for r in results),
        missing=sum(r.missing for r in results),
        extra=median.extra
        | {
            "runs_e2e_per_s": [round(r.e2e_per_s, 1) for r in results],
            "runs_steal_pct": [r.extra.get("steal_pct", 0.0) for r in results],
            "runs_host_pace_ms": [r.extra.get("host_pace_ms") for r in results],
        },
    )


def capped(scenario: Scenario, most: int | None) -> Scenario:
    """Naive Prefect pays a task run per message (~50/s): a smaller size gives the same msg/s."""
    if most is None or scenario.notifications <= most:
        return scenario
    return replace(scenario, notifications=most)


# --- the machine -----


def machine(url: str) -> dict[str, Any]:
    from notify.db import make_engine

    engine = make_engine(url)
    with engine.connect() as connection:
        postgres = connection.execute(text("SHOW server_version")).scalar_one()
        commit = connection.execute(text("SHOW synchronous_commit")).scalar_one()
    engine.dispose()
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": f"{postgres} (synchronous_commit={commit})",
        "redis": _redis_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "revision": os.environ.get("BENCH_REVISION") or git_revision(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _redis_version() -> str:
    try:
        import redis

        info = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).info("server")
        return str(info.get("redis_version", "?"))
    except Exception as error:  # the Celery peer reports the failure itself
        return f"unreachable ({type(error).__name__})"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip() or "?"
    except OSError:
        return "?"


def log_load(label: str) -> list[float]:
    load = [round(x, 2) for x in os.getloadavg()]
    log(f"load average {label}: {load}")
    return load
