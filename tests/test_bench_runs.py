"""The benchmark's rule for short runs: a peer whose run is shorter than bench.suite.SHORT_RUN_S
runs MOST_RUNS times and reports its median run, hiding no run's duplicates or missing
messages; a longer run is reported as it is. The summary says what the flows add to a small
dispatch."""

from __future__ import annotations

from collections.abc import Callable

from bench.common import PeerResult, Scenario
from bench.doc import small_dispatch_line
from bench.report import runs_lines, summary_json
from bench.suite import MOST_RUNS, SHORT_RUN_S, SMALL, SuiteResult, measured


def _runs(*seconds: float, duplicates: int = 0, missing: int = 0) -> list[PeerResult]:
    return [
        PeerResult(
            peer="notifyops",
            scenario="zero",
            notifications=5000,
            messages=10_000,
            enqueue_s=s / 2,
            e2e_s=s,
            duplicates=duplicates if n == 1 else 0,
            missing=missing if n == 2 else 0,
            extra={"steal_pct": float(n)},  # what the host's hypervisor took during the run
        )
        for n, s in enumerate(seconds)
    ]


def _playing(results: list[PeerResult], asked: list[int]) -> Callable[[int], PeerResult]:
    def run(n: int) -> PeerResult:
        asked.append(n)
        return results[n - 1]

    return run


def test_a_short_run_is_repeated_and_the_median_run_reported() -> None:
    asked: list[int] = []
    results = _runs(2.0, 4.0, 2.5, duplicates=1, missing=2)
    reported = measured(_playing(results, asked))
    assert asked == list(range(1, MOST_RUNS + 1))
    assert reported.e2e_s == 2.5, "the median of 2.0, 4.0 and 2.5 s"
    assert reported.extra["runs_e2e_per_s"] == [5000.0, 2500.0, 4000.0]
    assert (reported.duplicates, reported.missing) == (1, 2), "every run's losses are kept"
    assert reported.as_json()["runs_e2e_per_s"] == [5000.0, 2500.0, 4000.0]


def test_each_run_is_reported_with_the_cpu_the_host_stole_during_it() -> None:
    reported = measured(_playing(_runs(2.0, 4.0, 2.5), []))
    assert reported.as_json()["runs_steal_pct"] == [0.0, 1.0, 2.0]
    assert reported.as_json()["steal_pct"] == 2.0, "the median run's own"
    suite = SuiteResult(results=[reported])
    lines = runs_lines(suite, [Scenario("zero", 0.0, None, 8, 5000)])
    assert "5,000 (steal 0%) / 2,500 (steal 1%) / 4,000 (steal 2%)" in lines
    assert "stolen by its hypervisor" in lines
    del reported.extra["runs_steal_pct"]  # results saved before runs recorded their steal
    older = runs_lines(suite, [Scenario("zero", 0.0, None, 8, 5000)])
    assert "- zero, notifyops (library): 5,000 / 2,500 / 4,000" in older
    assert "steal" not in older and "stolen" not in older


def test_a_long_run_is_reported_alone() -> None:
    asked: list[int] = []
    reported = measured(_playing(_runs(SHORT_RUN_S + 1, 1.0, 1.0), asked))
    assert asked == [1]
    assert reported.e2e_s == SHORT_RUN_S + 1
    assert "runs_e2e_per_s" not in reported.as_json()


def _result(peer: str, scenario: str, seconds: float, notifications: int) -> PeerResult:
    return PeerResult(
        peer=peer,
        scenario=scenario,
        notifications=notifications,
        messages=2 * notifications,
        enqueue_s=seconds / 2,
        e2e_s=seconds,
        duplicates=0,
        missing=0,
    )


def test_the_summary_says_what_the_flows_add_to_every_dispatch() -> None:
    suite = SuiteResult(
        results=[
            _result("notifyops", "zero", 1.0, 5000),
            _result("notifyops_flows", "zero", 1.4, 5000),
            _result("notifyops", SMALL.name, 0.07, SMALL.notifications),
            _result("notifyops_flows", SMALL.name, 0.52, SMALL.notifications),
        ]
    )
    small = summary_json(suite)["small_dispatch"]
    assert small == {
        "notifications": SMALL.notifications,
        "notifyops_e2e_s": 0.07,
        "notifyops_flows_e2e_s": 0.52,
        "flows_add_s": 0.45,
    }
    assert summary_json(suite)["notifyops"]["messages"] == 10_000, "the headline stays `zero`"
    line = small_dispatch_line(small, suite.get("notifyops_flows", "zero"))
    assert "the flows add 0.45 s to every dispatch" in line
    assert "32% of the flows' 1.40 s" in line


def test_without_small_runs_the_summary_has_no_small_dispatch() -> None:
    suite = SuiteResult(results=[_result("notifyops_flows", "zero", 1.4, 5000)])
    assert summary_json(suite)["small_dispatch"] is None
