"""Run one peer in one scenario in a fresh subprocess and account for what it did.

    python -m bench.scenario PEER SCENARIO_JSON DATABASE_URL LEDGER_DIR TAG   (internal)

The parent (`run_peer`) empties the outbox, writes the expected messages, starts the subprocess,
samples the resident memory of the subprocess and all its descendants (a Celery worker and its
pool processes included) every 100 ms, then reads the ledgers and the delivery rows. The peak is
of the summed tree. PostgreSQL, Redis and the Prefect server are shared services, not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    PeerResult,
    Request,
    Scenario,
    account,
    achieved_rates,
    expect,
    log,
    reset_outbox,
)
from bench.cpu import tree_rss
from bench.pace import PACE_EVERY_S, Sample, during, pace_ms

PEERS = ("notifyops", "notifyops_flows", "celery", "naive_prefect")
SAMPLE_S = 0.1


def run_peer(
    peer: str,
    scenario: Scenario,
    url: str,
    workdir: Path,
    env: Mapping[str, str],
    run: int = 1,
) -> PeerResult:
    """`run`: the peer's n-th run of the scenario (its own tag, request and ledgers)."""
    tag = f"{peer}-{scenario.name}" + (f"-{run}" if run > 1 else "")
    ledger_dir = workdir / tag
    ledger_dir.mkdir(parents=True, exist_ok=True)
    reset_outbox(url)
    expect(url, [Request(tag, scenario.notifications)])
    log(f"{peer}: {scenario.name} ({scenario.messages} messages, {scenario.label()})")
    command = [
        sys.executable,
        "-m",
        "bench.scenario",
        peer,
        json.dumps(asdict(scenario)),
        url,
        str(ledger_dir),
        tag,
    ]
    timeout = 600 + (2 * scenario.messages / scenario.rate if scenario.rate else 0)
    output, peak, paces = run_measured(command, env, ledger_dir / "process.log", timeout)
    values = json.loads(output.strip().splitlines()[-1])
    values["host_pace_ms"] = during(paces, *values.pop("window"))
    books = account(url, ledger_dir)
    result = PeerResult(
        peer=peer,
        scenario=scenario.name,
        notifications=scenario.notifications,
        messages=scenario.messages,
        enqueue_s=values.pop("enqueue_s"),
        e2e_s=values.pop("e2e_s"),
        duplicates=books.duplicates,
        missing=books.missing,
        peak_rss_mb=peak,
        achieved=achieved_rates(url),
        extra=values | {"accounting": asdict(books)},
    )
    log(
        f"{peer}: {result.e2e_per_s:,.0f} messages/s end to end, peak {peak:,.0f} MB, "
        f"{result.duplicates} duplicates, {result.missing} missing"
    )
    return result


def run_measured(
    command: list[str], env: Mapping[str, str], log_path: Path, timeout: float
) -> tuple[str, float, list[Sample]]:
    """Run `command`; return its stdout, the peak RSS (MB) of its process tree and the host's
    pace while it ran (bench/pace.py)."""
    with log_path.open("ab") as errors:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
        )
        peak, paces = _sample_until_exit(process, timeout)
        stdout = process.stdout.read().decode() if process.stdout else ""
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command[:4])} exited {process.returncode}:\n{tail}")
    return stdout, peak, paces


def _sample_until_exit(
    process: subprocess.Popen[bytes], timeout: float
) -> tuple[float, list[Sample]]:
    """Until the process exits: its tree's peak RSS (MB), and the host's pace every
    PACE_EVERY_S."""
    deadline = time.monotonic() + timeout
    peak = 0
    paces: list[Sample] = []
    while process.poll() is None:
        now = time.monotonic()
        if now > deadline:
            process.kill()
            process.wait(timeout=30)
            raise TimeoutError(f"pid {process.pid} ran past {timeout:.0f} s")
        peak = max(peak, tree_rss(process.pid))
        if not paces or now - paces[-1][0] >= PACE_EVERY_S:
            paces.append((now, pace_ms()))
        time.sleep(SAMPLE_S)
    return peak / 2**20, paces


def child_env(
    base: Mapping[str, str], url: str, ledger_dir: Path, scenario: Scenario
) -> dict[str, str]:
    """Environment for the Celery worker (it reads BENCH_*)."""
    return {
        **base,
        "BENCH_DATABASE_URL": url,
        "BENCH_LEDGER_DIR": str(ledger_dir),
        "BENCH_LATENCY_S": repr(scenario.latency_s),
        "BENCH_RATE": f"{scenario.rate:g}" if scenario.rate else "",
        "BENCH_CELERY_QUEUE": f"notifyops-bench-{ledger_dir.parent.name}-{ledger_dir.name}",
    }


def _runner(peer: str) -> Callable[[Scenario, str, Path, str], dict[str, Any]]:
    if peer == "notifyops":
        from bench.notifyops_peer import run_library

        return run_library
    if peer == "notifyops_flows":
        from bench.notifyops_peer import run_flows

        return run_flows
    if peer == "celery":
        from bench.celery_peer import run

        return run
    if peer == "naive_prefect":
        from bench.naive_prefect import run as run_naive

        return run_naive
    raise SystemExit(f"unknown peer {peer!r}; one of {', '.join(PEERS)}")


def main(argv: list[str]) -> None:
    peer, scenario_json, url, ledger_dir, tag = argv
    scenario = Scenario(**json.loads(scenario_json))
    if peer == "celery":
        os.environ.update(child_env(os.environ, url, Path(ledger_dir), scenario))
    values = _runner(peer)(scenario, url, Path(ledger_dir), tag)
    print(json.dumps(values), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
