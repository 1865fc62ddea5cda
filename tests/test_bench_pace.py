"""The host's pace beside each benchmark run (bench/pace.py): the parent samples it while a
run's subprocess lives, the run reports its timed window, and the summary gives each peer's
pace beside its rate."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.common import PeerResult, Scenario
from bench.pace import during, pace_ms
from bench.report import runs_lines, summary_json
from bench.scenario import run_measured
from bench.suite import SuiteResult, measured


def test_a_runs_pace_is_the_median_of_the_samples_taken_in_its_window() -> None:
    samples = [(10.0, 1.3), (10.25, 0.8), (10.5, 0.75), (10.75, 0.9), (11.0, 1.2)]
    assert during(samples, 10.2, 10.8) == 0.8, "the three samples inside: 0.8, 0.75, 0.9"


def test_a_window_too_short_for_a_sample_takes_the_nearest_one() -> None:
    samples = [(10.0, 1.3), (10.25, 0.8)]
    assert during(samples, 10.2, 10.21) == 0.8
    assert during([], 10.0, 11.0) is None, "no sample at all: no pace"


def test_the_summary_gives_each_peers_pace() -> None:
    def peer(name: str, e2e_s: float, pace: float) -> PeerResult:
        extra = {"host_pace_ms": pace}
        return PeerResult(name, "zero", 5000, 10_000, e2e_s / 2, e2e_s, extra=extra)

    suite = SuiteResult([peer("notifyops_flows", 1.0, 0.8), peer("naive_prefect", 50.0, 1.2)])
    out = summary_json(suite)
    assert out["ratios"]["e2e_vs_naive_prefect"] == 50.0
    assert (out["notifyops"]["host_pace_ms"], out["naive_prefect"]["host_pace_ms"]) == (0.8, 1.2)


def test_the_pace_is_sampled_while_a_measured_process_runs(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import time; time.sleep(0.8); print('done')"]
    output, _, paces = run_measured(command, {}, tmp_path / "log", timeout=60)
    assert output.strip() == "done"
    assert len(paces) >= 2, "every 0.25 s while it ran"
    assert all(pace > 0 for _, pace in paces)
    assert pace_ms() > 0


def test_each_repeated_run_is_listed_with_its_pace() -> None:
    def run(n: int) -> PeerResult:
        extra = {"steal_pct": 0.0, "host_pace_ms": [0.8, 1.3, 1.0][n - 1]}
        return PeerResult(
            "notifyops_flows", "zero", 5000, 10_000, 0.5, [1.0, 2.0, 1.5][n - 1], extra=extra
        )

    lines = runs_lines(SuiteResult([measured(run)]), [Scenario("zero", 0.0, None, 8, 5000)])
    assert "10,000 (steal 0%, pace 0.8 ms) / 5,000 (steal 0%, pace 1.3 ms)" in lines
    assert "the host's pace" in lines
