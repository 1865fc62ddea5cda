"""health (every 5 min): backlog, latency, stuck and unknown rows, SES, workers, database."""

from __future__ import annotations

from typing import cast

from prefect import flow

from flows.monitoring import run_check
from flows.params import CheckParams
from notify.audits import HealthReport
from notify.checks import Check


@flow(
    name="health",
    description="Backlog and oldest pending age, average and p95 delivery latency, stuck and "
    "unknown deliveries, SES account state, Prefect workers and late runs, database.",
)
def health(params: CheckParams | None = None) -> HealthReport:
    return cast(HealthReport, run_check(Check.health, params or CheckParams()))


if __name__ == "__main__":
    print(health().model_dump_json(indent=2))
