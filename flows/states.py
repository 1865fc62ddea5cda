"""Final states that tell the truth in a runs list: a stopped or partly failed delivery and a
P1/P2 finding end in a *Failed*-type state (red, counted by the dashboard, seen by the built-in
"flow run failed" automations and by a filter on Failed), with a name saying which kind of
failure and a one-line message saying what happened and the fix. The run's typed result is the
state's data either way, so the CLI prints the same summary and sets its exit code from it.

Names: `Stopped` (a config error stopped delivery, or one channel of it: nothing more goes out
there until it is fixed), `PartlyFailed` (some messages failed for good), `P1`/`P2` (a check
found an incident). Failed rather than Crashed (Crashed means the infrastructure died) or a named
Completed (still green).
The flows have no retries, so a Failed final state is final: a retry would re-alert a check and
re-attempt sends that a config error would reject again.
"""

from __future__ import annotations

from typing import Any

from prefect.states import Cancelled, Completed, Failed, State

from notify.alerts import nobody_alerted
from notify.delivery import INTERRUPTED
from notify.reports import Report
from notify.request_report import RequestReport
from notify.summaries import DeliverySummary, DispatchSummary

STOPPED, PARTLY_FAILED, RETRYING = "Stopped", "PartlyFailed", "Retrying"
INTERRUPTED_NAME = "Interrupted"  # Cancelled (grey): the operator stopped it, nothing broke
FINAL_FAILURES = ("failed", "failed_permanent", "unknown")
ALARMING = ("P1", "P2")
NOBODY_ALERTED = "NobodyAlerted"  # a P3/P4 check whose alert no route delivered
MAX_MESSAGE = 500


class Unsuccessful(Exception):
    """A Failed run's data: its message and its typed result (the summary or report), so that
    Prefect can raise it where it raises a failed run's exception and the CLI still gets the
    result (`result_of`)."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message, result)
        self.message = message
        self.result = result

    def __str__(self) -> str:
        return self.message


def one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_MESSAGE]


def delivery_verdict(delivery: DeliverySummary | None) -> tuple[str | None, str]:
    """(state name when not plain Completed, one-line message) for a delivery's outcome."""
    if delivery is None:
        return None, "stored; not delivered by this run (deliver=false)"
    sent = delivery.count("sent") + delivery.count("delivered")
    if delivery.left_held:
        return STOPPED, one_line(
            f"A delivery batch failed after {sent} sent and left {delivery.left_held} row(s) "
            "claimed or in flight: they return to the queue (or become unknown if they were "
            "being sent) when their lease expires; see the run's logs for the error."
        )
    if delivery.stopped == INTERRUPTED:
        # the rows given back are due at once, so the due count read after the run has them
        waiting = max(delivery.remaining_due, delivery.released)
        return INTERRUPTED_NAME, one_line(
            f"Interrupted after {sent} sent: the sends in flight were recorded; {waiting} "
            "message(s) wait in the queue and go out with `notifyops deliver` or the next "
            "deliver-pending run."
        )
    if delivery.paused:
        return STOPPED, one_line(
            f"{sent} sent; {delivery.paused}. Email waits in the queue; after fixing the bounce or "
            "complaint source, `notifyops receipts resume-email` lets it go."
        )
    if delivery.stopped:
        # every row the queue holds: due now (a stopped channel's rows no batch claimed), and
        # waiting for a later time (the rows given back, retries, this run's or earlier ones)
        waiting = delivery.remaining_due + delivery.waiting_later
        return STOPPED, one_line(
            f"Delivery stopped after {sent} sent: {delivery.stopped}. "
            f"{waiting} message(s) wait and go out once it is fixed."
        )
    failed = sum(delivery.count(status) for status in FINAL_FAILURES)
    if failed:
        codes = sorted({f.error_code for f in delivery.failures if f.error_code})
        return PARTLY_FAILED, one_line(
            f"{failed} of {delivery.claimed} message(s) failed ({', '.join(codes) or 'see logs'}); "
            f"{sent} sent.{in_doubt(delivery)} Fix: see the failures table and "
            "`notifyops audit failures`, then `notifyops redrive`."
        )
    if delivery.rescued_unknown:
        return PARTLY_FAILED, one_line(
            f"{sent} sent.{in_doubt(delivery)} Fix: `notifyops receipts` marks those the "
            "provider took; check its delivery logs for the rest, then `notifyops redrive "
            "--status unknown --allow-unknown` only for what it never got (runbook section 5)."
        )
    retrying = delivery.count("pending_retry")
    if retrying:
        return RETRYING, one_line(
            f"{sent} sent; {retrying} will be retried automatically (transient errors)."
        )
    return None, f"{sent} sent" + (
        f"; {delivery.remaining_due} still due" if delivery.remaining_due else ""
    )


def dispatch_verdict(
    delivery: DeliverySummary | None, own: RequestReport | None
) -> tuple[str | None, str]:
    """A dispatch's verdict: a stop, a pause or an interruption of its delivery as for any
    delivery run, but failures and retries judged on the request's own rows. The run also
    delivers other requests' due rows; their failures are named in the message (and still
    emitted as `notifyops.delivery.failed`) without failing a request whose messages all went."""
    name, message = delivery_verdict(delivery)
    if delivery is None or own is None or name in (STOPPED, INTERRUPTED_NAME):
        return name, message
    failed = sum(own.count(status) for status in FINAL_FAILURES)
    sent = own.count("sent") + own.count("delivered")
    others = others_failed(delivery, own)
    note = (
        f" This run also delivered other requests' due rows: {others} of them failed "
        "(`notifyops audit failures`)."
        if others
        else ""
    ) + in_doubt(delivery)
    if failed:
        codes = sorted({g.error_code for g in own.groups if g.error_code and g.rows})
        return PARTLY_FAILED, one_line(
            f"{failed} of this request's messages failed ({', '.join(codes) or 'see logs'}); "
            f"{sent} sent. Fix: see the failures table and `notifyops audit failures`, then "
            f"`notifyops redrive`.{note}"
        )
    retrying = own.count("pending_retry")
    if retrying:
        return RETRYING, one_line(
            f"{sent} sent; {retrying} will be retried automatically (transient errors).{note}"
        )
    waiting = own.count("pending")
    later = f"; {waiting} wait for their time (quiet hours)" if waiting else ""
    # a duplicate sent while the first run still delivers: its "0 sent" hid the rows under way
    flying = own.count("sending") + own.count("claimed")
    later += f"; {flying} being sent by another run" if flying else ""
    return None, one_line(f"{sent} sent{later}" + (f".{note}" if note else ""))


def others_failed(delivery: DeliverySummary, own: RequestReport) -> int:
    """Failed outcomes of this run that are not the request's own (every own row this run
    delivered is the run's)."""
    run_failed = sum(delivery.count(status) for status in FINAL_FAILURES)
    return max(0, run_failed - sum(own.count(status) for status in FINAL_FAILURES))


def in_doubt(delivery: DeliverySummary) -> str:
    """The rows this run's rescue made `unknown`: a deliverer died while they were in flight, so
    the provider may have them. Never re-sent automatically; an operator (or a receipt) decides."""
    if not delivery.rescued_unknown:
        return ""
    return (
        f" {delivery.rescued_unknown} message(s) a stopped deliverer left in flight are now "
        "`unknown` (the provider may have them)."
    )


def delivery_state(
    delivery: DeliverySummary | None,
    data: Any,
    *,
    prefix: str = "",
    own: RequestReport | None = None,
) -> State[Any]:
    """The run's final state; `own` (a dispatch's request rows): failures judged on them."""
    name, message = dispatch_verdict(delivery, own)
    message = one_line(prefix + message)
    if name in (STOPPED, PARTLY_FAILED):
        return Failed(name=name, message=message, data=Unsuccessful(message, data))
    if name == INTERRUPTED_NAME:  # a Cancelled run's data must be an exception, as a Failed one's
        return Cancelled(name=name, message=message, data=Unsuccessful(message, data))
    if name:
        return Completed(name=name, message=message, data=data)
    return Completed(message=message, data=data)


def interrupted_storing(summary: DispatchSummary, *, key: str, template: str) -> State[Any]:
    """A keyed request stored in parts whose run was interrupted between two parts: Interrupted
    (Cancelled, grey), saying what was stored, what was not and how to store the rest, then what
    its delivery did."""
    _, delivered = dispatch_verdict(summary.delivery, summary.request)
    stored = len(summary.enqueue.notification_ids)
    message = one_line(
        f"{template}: interrupted after storing {stored} of "
        f"{stored + summary.not_stored} notification(s); the other {summary.not_stored} were "
        f"not stored: run the request again with idempotency_key={key} to store them (what is "
        f"stored is not stored twice). {delivered}"
    )
    return Cancelled(name=INTERRUPTED_NAME, message=message, data=Unsuccessful(message, summary))


def check_message(check: str, report: Report, unrouted: list[str]) -> str:
    findings = "; ".join(f"{f.code}: {f.message}" for f in report.findings[:3])
    text = f"{check} {report.severity}: {findings or 'no findings'}"
    if unrouted:
        text = f"{nobody_alerted(unrouted, report.alerts_delivered)}. {text}"
    return one_line(text)


def check_state(check: str, report: Report, unrouted: list[str]) -> State[Any]:
    message = check_message(check, report, unrouted)
    severity = str(report.severity)
    if severity in ALARMING:
        return Failed(name=severity, message=message, data=Unsuccessful(message, report))
    if unrouted:  # a P3/P4 alert (or a resolution) that reached nobody: the command exits 1
        return Failed(name=NOBODY_ALERTED, message=message, data=Unsuccessful(message, report))
    return Completed(message=message, data=report)


def result_of(state: State[Any]) -> Any:
    """The run's typed result whatever its final state; an exception a run failed with (bad
    input, a bug) is raised again, so the CLI reports it as before."""
    value = state.result(raise_on_failure=False)
    if isinstance(value, Unsuccessful):
        return value.result
    if isinstance(value, BaseException):
        raise value
    return value
