"""sms-cost-audit (hourly): the runbook's "High SMS costs" investigation on a schedule."""

from __future__ import annotations

from typing import cast

from prefect import flow

from flows.monitoring import run_check
from flows.params import CheckParams
from notify.audits import SmsCostReport
from notify.checks import Check


@flow(
    name="sms-cost-audit",
    description="SMS count and cost per hour, the last hour against the hourly alarm, today "
    "against the daily cap, top recipients; publishes SMSCost to CloudWatch.",
)
def sms_cost_audit(params: CheckParams | None = None) -> SmsCostReport:
    return cast(SmsCostReport, run_check(Check.sms_cost, params or CheckParams()))


if __name__ == "__main__":
    print(sms_cost_audit().model_dump_json(indent=2))
