"""Artifacts an on-call engineer reads in the Prefect UI (addresses masked or absent)."""

from __future__ import annotations

import re
from dataclasses import asdict

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from notify.enqueue import EnqueueResult
from notify.report_view import cell, markdown
from notify.reports import Report
from notify.request_report import RequestReport
from notify.summaries import DeliverySummary

NONE = "none"
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def enqueue_table(result: EnqueueResult) -> None:
    rows = [
        {"channel": channel, "status": status, "rows": count}
        for channel, by_status in result.rows.items()
        for status, count in by_status.items()
    ]
    create_table_artifact(
        table=rows or [{"channel": NONE, "status": "duplicate request", "rows": 0}],
        key="dispatch-enqueue",
        description=f"Request {result.request_id}: {len(result.notification_ids)} notifications"
        + (" (duplicate: nothing new stored)" if result.duplicate else ""),
    )


def delivered_by(owner: str | None, this_run: str | None) -> str:
    """The deliverer of a row: `this run`, or the flow run named in its lease owner."""
    if not owner:
        return NONE
    found = RUN_ID.search(owner)
    if found is None:
        return owner
    if found.group(0) == this_run:
        return "this run"
    return f"[flow run {found.group(0)[:8]}](/runs/flow-run/{found.group(0)})"


def request_markdown(report: RequestReport, *, this_run: str | None) -> str:
    lines = [f"# Request {report.request_id}: what happened to its messages", ""]
    deferred = report.deferred
    if deferred:
        lines += [
            f"- **{g.rows} {g.channel} waiting until {g.next_attempt_at:%Y-%m-%d %H:%M} UTC**: "
            f"{cell(g.decision or g.status)}"
            for g in deferred
        ]
        lines.append("")
    lines += ["| channel | status | decision | rows | next attempt (UTC) | delivered by | error |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for g in report.groups:
        when = f"{g.next_attempt_at:%Y-%m-%d %H:%M}" if g.next_attempt_at else NONE
        row = [g.channel, g.status, g.decision or NONE, str(g.rows), when]
        lines.append(
            "| "
            + " | ".join(cell(v) for v in row)
            + f" | {delivered_by(g.delivered_by, this_run)} | {cell(g.error_code or NONE)} |"
        )
    if not report.groups:
        lines.append(f"| {NONE} | {NONE} | no rows stored | 0 | {NONE} | {NONE} | {NONE} |")
    return "\n".join(lines) + "\n"


def request_artifact(report: RequestReport, *, this_run: str | None) -> None:
    """The request's own rows by channel, status and decision, wherever they were delivered."""
    waiting = sum(g.rows for g in report.deferred)
    create_markdown_artifact(
        markdown=request_markdown(report, this_run=this_run),
        key="dispatch-request",
        description=f"Request {report.request_id}: its rows"
        + (f" ({waiting} waiting for a later attempt)" if waiting else ""),
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
    if summary.digests:
        notes += f"; {summary.digests} quiet-hours digest(s) carrying {summary.carried} row(s)"
    if summary.stopped:
        notes += f"; STOPPED: {summary.stopped}"
    create_table_artifact(
        table=rows or [{"channel": NONE, "status": "nothing due", "rows": 0}],
        key="deliver-pending",
        description=notes,
    )
    if summary.failures:
        create_table_artifact(
            table=[asdict(sample) for sample in summary.failures],
            key="deliver-pending-failures",
            description="Failed sends in this run (first 20; addresses masked)",
        )


def report_artifact(
    key: str, report: Report, *, title: str, routed: list[str], unrouted: list[str]
) -> None:
    """The check's report as Markdown in the Prefect UI (PII masked by the report itself)."""
    notes = [f"**ALERT REACHED NOBODY: {line}**" for line in unrouted]
    notes += [f"alert routed: {line}" for line in routed if line not in unrouted]
    create_markdown_artifact(
        markdown=markdown(title, report.to_json(), notes),
        key=key,
        description=f"{title}: {report.severity}",
    )
