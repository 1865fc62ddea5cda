"""Artifacts an on-call engineer reads in the Prefect UI (addresses masked or absent)."""

from __future__ import annotations

from dataclasses import asdict

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from notify.audits import Report
from notify.enqueue import EnqueueResult
from notify.report_view import markdown
from notify.summaries import DeliverySummary


def enqueue_table(result: EnqueueResult) -> None:
    rows = [
        {"channel": channel, "status": status, "rows": count}
        for channel, by_status in result.rows.items()
        for status, count in by_status.items()
    ]
    create_table_artifact(
        table=rows or [{"channel": "-", "status": "duplicate request", "rows": 0}],
        key="dispatch-enqueue",
        description=f"Request {result.request_id}: {len(result.notification_ids)} notifications"
        + (" (duplicate: nothing new stored)" if result.duplicate else ""),
    )


def delivery_table(summary: DeliverySummary) -> None:
    rows = [
        {"channel": channel, "status": status, "rows": count}
        for channel, by_status in summary.outcomes.items()
        for status, count in by_status.items()
    ]
    notes = (
        f"{summary.claimed} claimed in {summary.batches} batches; "
        f"{summary.remaining_due} still due; "
        f"rescued {summary.rescued_to_pending} to pending, {summary.rescued_unknown} to unknown"
    )
    if summary.stopped:
        notes += f"; STOPPED: {summary.stopped}"
    create_table_artifact(
        table=rows or [{"channel": "-", "status": "nothing due", "rows": 0}],
        key="deliver-pending",
        description=notes,
    )
    if summary.failures:
        create_table_artifact(
            table=[asdict(sample) for sample in summary.failures],
            key="deliver-pending-failures",
            description="Failed sends in this run (first 20; addresses masked)",
        )


def report_artifact(key: str, report: Report, *, title: str, routed: list[str]) -> None:
    """The check's report as Markdown in the Prefect UI (PII masked by the report itself)."""
    notes = [f"alert routed: {line}" for line in routed]
    create_markdown_artifact(
        markdown=markdown(title, report.to_json(), notes),
        key=key,
        description=f"{title}: {report.severity}",
    )
