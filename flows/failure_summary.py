"""failure-summary (hourly, and a daily digest): the runbook's failed-deliveries investigation."""

from __future__ import annotations

from typing import cast

from prefect import flow

from flows.monitoring import run_check
from flows.params import FailureParams
from notify.audits import FailureReport
from notify.checks import Check


@flow(
    name="failure-summary",
    description="Failures grouped by error class and normalised message with the runbook's "
    "cause and fix; email and SMS error rates against 10%.",
)
def failure_summary(params: FailureParams | None = None) -> FailureReport:
    params = params or FailureParams()
    title = "failure digest (daily)" if params.digest else "failure summary"
    return cast(FailureReport, run_check(Check.failures, params, title=title))


if __name__ == "__main__":
    print(failure_summary().model_dump_json(indent=2))
