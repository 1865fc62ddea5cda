"""Artifacts an on-call engineer reads in the Prefect UI (addresses masked or absent)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from notify.check_params import ad_hoc_line
from notify.delivery import INTERRUPTED
from notify.enqueue import EnqueueResult
from notify.report_view import cell, markdown, markdown_table
from notify.reports import Report
from notify.request_report import RequestReport
from notify.summaries import DeliverySummary

NONE = "none"
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def enqueue_table(result: EnqueueResult) -> None:
    """What a request stored in parts stored, written as soon as its last part is stored (a
    long dispatch shows it while its batches still deliver)."""
    create_table_artifact(
        table=_count_rows(result.rows, empty="duplicate request"),
        key="dispatch-enqueue",
        description=_stored_line(result),
    )


RESCUED = "rescued from a stopped deliverer"


def _count_rows(
    counts: Mapping[str, Mapping[str, int]], *, empty: str
) -> list[dict[str, str | int]]:
    """channel -> status -> rows as table rows; one row saying `empty` when there are none."""
    rows: list[dict[str, str | int]] = [
        {"channel": channel, "status": status, "rows": count}
        for channel, by_status in counts.items()
        for status, count in by_status.items()
    ]
    return rows or [{"channel": NONE, "status": empty, "rows": 0}]


def _stored_line(result: EnqueueResult) -> str:
    return f"Request {result.request_id}: {len(result.notification_ids)} notifications" + (
        " (duplicate: nothing new stored)" if result.duplicate else ""
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
    deferred, now = report.deferred, datetime.now(UTC)
    if deferred:
        lines += [
            f"- **{g.rows} {g.channel} {g.waiting(now)}**: {cell(g.decision or g.status)}"
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


def dispatch_markdown(
    enqueued: EnqueueResult,
    delivered: DeliverySummary | None,
    report: RequestReport,
    *,
    this_run: str | None,
    not_stored: int = 0,
) -> str:
    """The dispatch run's one artifact: what it stored, what its delivery did, and what happened
    to each of its request's rows (wherever they were delivered)."""
    lines = [request_markdown(report, this_run=this_run), "## Stored", "", _stored_line(enqueued)]
    if not_stored:
        lines += ["", _not_stored_line(enqueued.request_id, not_stored)]
    lines += ["", *_count_table(enqueued.rows, empty="duplicate request"), ""]
    lines += ["## Delivered by this run", ""]
    if delivered is None:
        lines += ["Not delivered by this run (deliver=false): the deliver-pending schedule sends."]
        return "\n".join(lines) + "\n"
    lines += [cell(delivery_notes(delivered)), ""]
    lines += _count_table(delivered.outcomes, empty="nothing due")
    if delivered.failures:
        lines += ["", "### Sends that failed or wait for a retry (first 20; addresses masked)", ""]
        columns = ["channel", "address", "status", "error code", "error class", "fix"]
        lines += markdown_table(columns, [list(asdict(f).values()) for f in delivered.failures])
    return "\n".join(lines) + "\n"


def _not_stored_line(request_id: str, not_stored: int) -> str:
    return cell(
        f"**Interrupted: {not_stored} recipient(s) of the request were not stored.** Run the "
        f"request again with idempotency_key={request_id} to store them (what is stored is not "
        "stored twice)."
    )


def _count_table(counts: Mapping[str, Mapping[str, int]], *, empty: str) -> list[str]:
    rows = _count_rows(counts, empty=empty)
    return markdown_table(["channel", "status", "rows"], [list(row.values()) for row in rows])


def dispatch_artifact(
    enqueued: EnqueueResult,
    delivered: DeliverySummary | None,
    report: RequestReport,
    *,
    this_run: str | None,
    not_stored: int = 0,
) -> None:
    """One artifact at the end of a dispatch run (each one is a request the server answers in
    60-100 ms at the end of a run, while it records the run's task states). `not_stored`: the
    request's recipients an interruption left unstored."""
    waiting = sum(g.rows for g in report.deferred)
    stopped = delivered.stopped if delivered is not None else None
    ended = "INTERRUPTED" if stopped == INTERRUPTED else "STOPPED"
    create_markdown_artifact(
        markdown=dispatch_markdown(
            enqueued, delivered, report, this_run=this_run, not_stored=not_stored
        ),
        key="dispatch-request",
        description=f"Request {report.request_id}: its rows"
        + (f" ({waiting} waiting to be sent)" if waiting else "")
        + (f"; delivery {ended}" if stopped else "")
        + (f"; INTERRUPTED: {not_stored} recipient(s) not stored" if not_stored else ""),
    )


def delivery_notes(summary: DeliverySummary) -> str:
    notes = (
        f"{summary.claimed} claimed in {summary.batches} batch(es); "
        f"{summary.remaining_due} still due; "
        f"rescued {summary.rescued_to_pending} to pending, {summary.rescued_unknown} to unknown"
    )
    if summary.digests:
        notes += f"; {summary.digests} quiet-hours digest(s) carrying {summary.carried} row(s)"
    if summary.held_quiet:
        notes += f"; {summary.held_quiet} SMS held back by quiet hours until their window ends"
    if summary.stopped:
        notes += f"; STOPPED: {summary.stopped}"
    return notes


def delivery_table(summary: DeliverySummary) -> None:
    """A deliver-pending run's outcomes, and the rows its rescue took from a stopped deliverer
    (they were in the description only: a table of one row, `nothing due`, beside 718 rows made
    `unknown`), and its failed sends, when any."""
    rescued = {
        f"{RESCUED}: back to the queue": summary.rescued_to_pending,
        f"{RESCUED}: in flight, now unknown (the provider may have them)": summary.rescued_unknown,
    }
    rescue_rows: list[dict[str, str | int]] = [
        {"channel": NONE, "status": status, "rows": count}
        for status, count in rescued.items()
        if count
    ]
    outcomes = _count_rows(summary.outcomes, empty="nothing due")
    if rescue_rows and not summary.outcomes:
        outcomes = []
    create_table_artifact(
        table=outcomes + rescue_rows,
        key="deliver-pending",
        description=delivery_notes(summary),
    )
    if summary.failures:
        create_table_artifact(
            table=[asdict(sample) for sample in summary.failures],
            key="deliver-pending-failures",
            description="Sends that failed or wait for a retry in this run (first 20; addresses "
            "masked)",
        )


def report_artifact(
    key: str, report: Report, *, title: str, routed: list[str], unrouted: list[str]
) -> None:
    """The check's report as Markdown in the Prefect UI (PII masked by the report itself)."""
    notes = [f"**ALERT REACHED NOBODY: {line}**" for line in unrouted]
    if report.ad_hoc:
        notes.append(ad_hoc_line(report.ad_hoc))
    notes += [f"alert routed: {line}" for line in routed if line not in unrouted]
    if report.metrics_unpublished:
        notes.append(f"**{report.metrics_unpublished}**")
    create_markdown_artifact(
        markdown=markdown(title, report.to_json(), notes),
        key=key,
        description=f"{title}: {report.severity}",
    )
