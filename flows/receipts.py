"""receipts: every minute, read provider receipts into the delivery log (SES events from SQS,
SMS delivery logs from CloudWatch Logs), resolve crash rows, and guard the sender reputation.
Before `notifyops receipts setup` a run ends Completed named `NotSetUp`, its message (and one
warning line in its log) saying what is missing and to run the set-up. When AWS does not answer
(no credentials, a refused permission, no network) it ends Failed named `AwsUnavailable`, with the
cause and its fix in one line, not a traceback each minute."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed
from pydantic import BaseModel, ConfigDict, Field

from flows.naming import counted, rename
from flows.states import Unsuccessful, one_line
from notify.receipts import ReceiptsReport
from notify.receipts.crash import ambiguous_said
from notify.receipts.poll import ReceiptsUnavailable, logs_began_said
from tasks import receipts

NOT_SET_UP = "NotSetUp"
UNAVAILABLE = "AwsUnavailable"  # Failed: AWS did not answer the first call (its fix in the message)


class ReceiptsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is refused, not dropped

    publish_metrics: bool = Field(
        True, description="Publish EmailBounceRate and EmailComplaintRate to CloudWatch"
    )


@flow(
    name="receipts",
    description="Read SES events (SQS) and SMS delivery logs (CloudWatch Logs) into the "
    "delivery log: delivered, bounced, complained, undelivered, real SMS price; resolve "
    "unknown rows; pause email at a P1 bounce or complaint rate.",
)
def receipts_flow(params: ReceiptsParams | None = None) -> ReceiptsReport:
    params = params or ReceiptsParams()
    try:
        missing = receipts.not_set_up()
    except ReceiptsUnavailable as unavailable:  # credentials, region, network: one line
        get_run_logger().error("%s", unavailable)
        message = one_line(str(unavailable))
        return cast(
            Any,
            Failed(name=UNAVAILABLE, message=message, data=Unsuccessful(message, ReceiptsReport())),
        )
    if missing is not None:
        get_run_logger().warning("%s", missing)
        # the run's state says it (the CLI turns it into its error line); its result is empty
        return cast(Any, Completed(name=NOT_SET_UP, message=missing, data=ReceiptsReport()))
    report = receipts.poll()
    if params.publish_metrics and report.reputation is not None:
        receipts.publish_reputation(report.reputation)
    receipts_artifact(report)
    if report.totals.received or report.totals.changed:  # an idle minute keeps its name
        rename(counted("receipts", _received(report), "Completed"))
    logger = get_run_logger()
    logger.info("receipts: %s", counts_line(report))
    if report.reputation is not None and report.reputation.severity:
        logger.warning("reputation %s", report.reputation.summary)
    return report


def _received(report: ReceiptsReport) -> dict[str, int]:
    totals = report.totals
    return {
        **totals.applied,
        "unmatched": totals.unmatched,
        "malformed": totals.malformed,
        "queued skipped": report.queued.muted,
    }


def counts_line(report: ReceiptsReport) -> str:
    totals = report.totals
    return (
        f"applied {dict(totals.applied)}, duplicates {totals.duplicates}, "
        f"unmatched {totals.unmatched}, malformed {totals.malformed}, changed {totals.changed}, "
        f"suppressed {totals.suppressed}, queued rows skipped {report.queued.muted} "
        f"(email fallbacks {report.queued.fallbacks})"
    )


def receipts_artifact(report: ReceiptsReport) -> None:
    """What changed (ids and statuses only: no addresses), and the counts."""
    crash = report.crash
    finding = report.reputation
    notes = (
        f"{counts_line(report)}; crash rows: {crash.requeued_email} email requeued, "
        f"{crash.matched_sms} SMS matched, {ambiguous_said(crash.ambiguous_rows)}, "
        f"{crash.undelivered_sms} SMS undelivered after 72 h"
    )
    if report.sms.began and report.sms.read_since is not None:
        notes += f"; {logs_began_said(report.sms.read_since)}"
    if finding is not None:
        notes += f"; reputation: {finding.summary}"
        if finding.paused:
            notes += f"; EMAIL PAUSED: {finding.paused}"
    rows = [asdict(change) for change in report.totals.changes]
    create_table_artifact(
        table=rows or [{"delivery_log_id": "-", "after": "nothing changed"}],
        key="receipts",
        description=notes,
    )


if __name__ == "__main__":
    print(counts_line(receipts_flow()))
