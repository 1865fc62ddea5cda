"""`notifyops send`, `deliver` and `test-email`."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from notifyops.console import (
    EXIT_OK,
    EXIT_PARTIAL,
    fail_line,
    out,
    parse_json_object,
    print_json,
    read_text_option,
    table,
)

if TYPE_CHECKING:
    from flows.params import DispatchParams
    from notify.request_report import RequestReport
    from notify.summaries import DeliverySummary, DispatchSummary

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
FAILED = ("failed", "failed_permanent", "pending_retry", "unknown")
PRIORITIES = ("low", "normal", "high", "urgent")


def send(
    template: str = typer.Option(
        ..., "--template", "-t", help="Template name (see `templates list`)."
    ),
    to: list[str] = typer.Option(
        [], "--to", help="Recipient external ids (repeatable; several separated by commas)."
    ),
    to_file: Path | None = typer.Option(
        None,
        "--to-file",
        help="File of external ids (separated by lines, commas, semicolons or spaces), or a "
        "roster CSV with an external_id column.",
    ),
    context: str | None = typer.Option(None, "--context", help="Template variables as JSON."),
    context_file: Path | None = typer.Option(
        None, "--context-file", help="JSON file of variables."
    ),
    priority: str | None = typer.Option(
        None, help=f"Override the template's priority: {', '.join(PRIORITIES)}."
    ),
    idempotency_key: str | None = typer.Option(None, help="Same key again = no-op, same ids."),
    skip_unknown: bool = typer.Option(False, help="Send to known recipients; report unknown ones."),
    no_deliver: bool = typer.Option(False, "--no-deliver", help="Only store; deliver later."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Send a template to recipients: runs the dispatch-notifications flow.

    Exit 1 when any message failed or was left for retry, or an unknown recipient was skipped
    (--skip-unknown).
    """
    from flows.params import DispatchParams
    from notify.errors import InputError
    from notifyops.params import build

    if idempotency_key == "":  # an unset "$KEY" in a script: it would send without one
        raise InputError("--idempotency-key is empty: give a key, or leave the option out")
    request = build(
        DispatchParams,
        template=template,
        to=list(to),
        to_file=str(to_file) if to_file else None,
        context=_context(context, context_file),
        priority=priority,
        idempotency_key=idempotency_key,
        skip_unknown=skip_unknown,
        deliver=not no_deliver,
    )
    request = _read_to_file(request)
    _check_request(request)
    from flows.dispatch import dispatch_notifications
    from flows.states import result_of
    from notify.bootstrap import runtime
    from notifyops.interrupts import STOP_SENDING, stop_sending_on_signal
    from notifyops.prefect_env import run_flow

    # the run may end Failed (delivery stopped or partly failed): its summary is still the result
    stopping = "storing no further part of the request" + (
        f", {STOP_SENDING}" if request.deliver else ""
    )
    with stop_sending_on_signal(runtime().interrupted, stopping) as interruption:
        state = run_flow(
            dispatch_notifications,
            warm_senders=request.deliver,
            return_state=True,
            **request.flow_parameters(),
        )
    summary: DispatchSummary = result_of(state)
    if json_output:
        print_json(summary)
    else:
        _print_dispatch(summary)
    unknown = summary.enqueue.unknown_recipients
    if unknown:
        _say_unknown_skipped(unknown)
    bad = _dispatch_failed(summary) or bool(unknown)
    code = EXIT_PARTIAL if bad else EXIT_OK
    raise typer.Exit(interruption.exit_code or code)


def _say_unknown_skipped(unknown: Sequence[str]) -> None:
    """One line on stderr saying why a send that skipped unknown recipients exits 1 (the first
    ten named; `--json` lists them all)."""
    shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
    fail_line(
        f"{len(unknown)} unknown recipient(s) skipped: {shown} (nothing was stored for them: "
        "import them, then send to them)"
    )


def _dispatch_failed(summary: DispatchSummary) -> bool:
    """Its delivery stopped or left rows in doubt, or one of the request's own messages failed or
    waits for a retry (other requests' rows the run delivered do not fail this send)."""
    delivery, own = summary.delivery, summary.request
    if delivery is None:
        return False
    if own is None:
        return _has_failures(delivery)
    if delivery.stopped or delivery.paused or delivery.left_held:
        return True
    return any(own.count(status) for status in FAILED)


def _has_failures(summary: DeliverySummary) -> bool:
    """Stopped or paused (the run's state is Stopped), failed, retrying, left in doubt by a
    failed batch, or made `unknown` by rescue."""
    in_doubt = summary.left_held or summary.rescued_unknown
    held_back = summary.stopped or summary.paused
    return bool(held_back or in_doubt) or any(summary.count(s) for s in FAILED)


def _context(raw: str | None, path: Path | None) -> dict[str, Any]:
    from notify.errors import InputError

    if raw and path:
        raise InputError("--context and --context-file: give one, not both")
    text = read_text_option(path, "--context-file") if path else raw
    return parse_json_object(text, "--context-file" if path else "--context") if text else {}


def _check_request(request: DispatchParams) -> None:
    """Fail fast, before Prefect starts, on what can be checked here (recipients known, template
    and context complete). The enqueue checks again in its own transaction: that is the guarantee;
    this is so that a typo costs a fraction of a second instead of a flow run."""
    from notify.bootstrap import runtime
    from notify.db import transaction
    from notify.enqueue import preflight

    here = runtime()
    with transaction(here.engine()) as session:
        preflight(session=session, request=request.send_request(), catalog=here.catalog())


def deliver(
    batch_size: int | None = typer.Option(
        None, help="Rows per claim, 1 to 50,000 (default NOTIFY_BATCH_SIZE)."
    ),
    max_batches: int = typer.Option(1000, help="Stop after this many claims, 1 to 100,000."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Deliver due rows now: runs the deliver-pending flow. Exit 1 on failures."""
    from flows.deliver import deliver_pending
    from flows.params import DeliverParams
    from flows.states import result_of
    from notify.bootstrap import runtime
    from notifyops.params import build
    from notifyops.prefect_env import run_flow

    params = build(DeliverParams, batch_size=batch_size, max_batches=max_batches)
    from notifyops.interrupts import stop_sending_on_signal

    runtime().engine()  # a database that cannot be used is one line here, before a flow starts
    with stop_sending_on_signal(runtime().interrupted) as interruption:
        state = run_flow(deliver_pending, warm_senders=True, params=params, return_state=True)
    summary: DeliverySummary = result_of(state)
    if json_output:
        print_json(summary)
    else:
        _print_delivery(summary)
    code = EXIT_PARTIAL if _has_failures(summary) else EXIT_OK
    raise typer.Exit(interruption.exit_code or code)


def _read_to_file(request: DispatchParams) -> DispatchParams:
    """The request with --to-file read into its recipients; an unreadable file names the option."""
    from notify.errors import InputError

    try:
        return request.resolved()
    except InputError as error:
        raise InputError(f"--to-file: {error}") from None


def test_email(
    address: str = typer.Argument(..., help="Where to send the test email."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Send one real email through the configured sender (the runbook's test_ses)."""
    from notify.bootstrap import runtime
    from notify.errors import DeliveryError, provider_text
    from notify.senders import send_test_email

    here = runtime()
    try:
        receipt = send_test_email(here.senders().email, here.settings, address)
    except DeliveryError as error:
        if json_output:
            print_json(
                {
                    "ok": False,
                    "code": error.code,
                    "error_class": error.error_class,
                    "message": error.message,
                    "fix": error.fix,
                }
            )
        else:
            said = provider_text(error.message)  # one line: a proxy's HTML page as its title
            out.print(f"✗ {error.code} ({error.error_class}): {said}\n  fix: {error.fix}")
        raise typer.Exit(EXIT_PARTIAL) from None
    if json_output:
        print_json({"ok": True, "provider_message_id": receipt.provider_message_id})
    else:
        out.print(f"✓ Email sent successfully! provider message id: {receipt.provider_message_id}")


def _print_dispatch(summary: DispatchSummary) -> None:
    enqueue = summary.enqueue
    note = " (duplicate request: nothing new stored)" if enqueue.duplicate else ""
    out.print(f"request {enqueue.request_id}: {len(enqueue.notification_ids)} notifications{note}")
    if summary.not_stored:
        fail_line(
            f"interrupted: {summary.not_stored} recipient(s) of the request were not stored; "
            f"send it again with --idempotency-key {shlex.quote(enqueue.request_id)} to store "
            "them (what is stored is not stored twice)"
        )
    rows = [(c, s, n) for c, by in enqueue.rows.items() for s, n in by.items()]
    if rows:
        out.print(table("Enqueued", ["channel", "status", "rows"], rows))
    if summary.request is not None:
        _print_request(summary.request)
    if summary.delivery is not None:
        out.print("This run's delivery: every due row it claimed, this request's and others'.")
        _print_delivery(summary.delivery, title="Delivered by this run")


def _print_request(report: RequestReport) -> None:
    """The request's own rows after the run by channel, status and the policy's decision, then
    what waits and until when (quiet hours, retries)."""
    from datetime import UTC, datetime

    merged: dict[tuple[str, str, str], int] = {}
    for group in report.groups:  # one line whoever delivered them
        key = (group.channel, group.status, group.decision)
        merged[key] = merged.get(key, 0) + group.rows
    rows = [(*key, n) for key, n in merged.items()]
    out.print(table("This request's messages", ["channel", "status", "decision", "rows"], rows))
    now = datetime.now(UTC)
    for group in report.deferred:
        why = group.decision or group.status
        out.print(f"{group.rows} {group.channel} {group.waiting(now)}: {why}")


def _print_delivery(summary: DeliverySummary, *, title: str = "Delivered") -> None:
    rows = [(c, s, n) for c, by in summary.outcomes.items() for s, n in by.items()]
    out.print(table(title, ["channel", "status", "rows"], rows))
    returned = f"{summary.released} returned to the queue; " if summary.released else ""
    out.print(
        f"{summary.claimed} claimed in {summary.batches} batch(es); {returned}"
        f"{summary.remaining_due} due now{_later(summary)}; "
        f"rescued {summary.rescued_to_pending} to pending, {summary.rescued_unknown} to unknown"
    )
    if summary.failures:
        out.print(_failures_table(summary))
    if summary.stopped:
        out.print(f"batch stopped: {summary.stopped}")
    if summary.paused:
        out.print(f"{summary.paused}; `notifyops receipts resume-email` lets it go (runbook)")
    if summary.rescued_unknown:
        out.print(
            f"{summary.rescued_unknown} message(s) a stopped deliverer left in flight are now "
            "`unknown` (the provider may have them; never re-sent by themselves): receipts settle "
            "what they can; check the provider's logs, then `notifyops decide-unknown --as sent` "
            "(or `--as not-sent`) records what they showed, sending nothing; `notifyops redrive "
            "--status unknown --allow-unknown` re-sends at once (runbook section 5)"
        )


def _later(summary: DeliverySummary) -> str:
    """`, N waiting for a later time (the next due at 14:05:09 UTC, in 18 s)`, or nothing."""
    if not summary.waiting_later or summary.next_due_at is None:
        return ""
    from datetime import UTC, datetime

    due = summary.next_due_at.astimezone(UTC)
    seconds = max(0, round((due - datetime.now(UTC)).total_seconds()))
    wait = f"in {seconds} s" if seconds < 120 else f"in {round(seconds / 60)} min"
    return (
        f", {summary.waiting_later} waiting for a later time "
        f"(the next due at {due:%Y-%m-%d %H:%M:%S} UTC, {wait})"
    )


def _failures_table(summary: DeliverySummary) -> Any:
    """The run's failed sends and those waiting for a retry (the first 20, addresses masked),
    each with the runbook's fix for the error as the provider worded it: what the run's state
    points at."""
    rows = [(f.channel, f.address, f.status, f.error_code, f.fix) for f in summary.failures]
    title = "Sends that failed or wait for a retry (first 20; addresses masked)"
    return table(title, ["channel", "address", "status", "error", "fix"], rows)
