"""The benchmark's rule for short runs: a peer whose run is shorter than bench.suite.SHORT_RUN_S
runs MOST_RUNS times and reports its median run, hiding no run's duplicates or missing
messages; a longer run is reported as it is."""

from __future__ import annotations

from collections.abc import Callable

from bench.common import PeerResult
from bench.suite import MOST_RUNS, SHORT_RUN_S, measured


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


def test_a_long_run_is_reported_alone() -> None:
    asked: list[int] = []
    reported = measured(_playing(_runs(SHORT_RUN_S + 1, 1.0, 1.0), asked))
    assert asked == [1]
    assert reported.e2e_s == SHORT_RUN_S + 1
    assert "runs_e2e_per_s" not in reported.as_json()
