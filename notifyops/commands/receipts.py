"""`notifyops receipts [--json]` (one poll), `receipts setup`, `receipts resume-email`,
`receipts acknowledge`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.text import Text

from notifyops.console import EXIT_OK, EXIT_PARTIAL, out, print_json, table

app = typer.Typer(
    help="Provider receipts: SES events and SMS delivery logs into the delivery log.",
    invoke_without_command=True,
)
if TYPE_CHECKING:
    from notify.receipts import ReceiptsReport

JSON = typer.Option(False, "--json", help="Machine-readable output (stable keys).")


@app.callback()
def poll_command(
    ctx: typer.Context,
    json_output: bool = JSON,
    direct: bool = typer.Option(False, "--direct", help="Run without Prefect."),
) -> None:
    """One receipts poll: counts per event type applied, duplicates, unmatched, malformed.

    Exit 1 when the bounce or complaint rate reaches P2 (5% / 0.1%) or P1 (10% / 0.5%,
    email paused)."""
    if ctx.invoked_subcommand is not None:
        _refuse_poll_options(ctx.invoked_subcommand, json_output=json_output, direct=direct)
        return
    from notify.receipts.poll import report_json

    report = _poll_direct() if direct else _poll_flow()
    data = report_json(report)
    if json_output:
        print_json(data)
    else:
        _show(data)
    finding = report.reputation
    raise typer.Exit(EXIT_PARTIAL if finding is not None and finding.severity else EXIT_OK)


def _refuse_poll_options(subcommand: str, *, json_output: bool, direct: bool) -> None:
    """`notifyops receipts --json resume-email`: the group's options are the poll's; given
    before a subcommand they did nothing (text came out). Refused, saying where they go."""
    from notify.errors import InputError

    if json_output:
        raise InputError(
            f"--json before `{subcommand}` is the poll's option: give it after the subcommand, "
            f"`notifyops receipts {subcommand} --json`"
        )
    if direct:
        raise InputError(
            f"--direct is the poll's option (`notifyops receipts --direct`): "
            f"`notifyops receipts {subcommand}` runs without Prefect already"
        )


def _poll_flow() -> ReceiptsReport:
    from flows.receipts import NOT_SET_UP, UNAVAILABLE, receipts_flow
    from notify.receipts.poll import ReceiptsNotSetUp, ReceiptsUnavailable

    state = receipts_flow(return_state=True)
    if state.name == NOT_SET_UP:  # the same line and exit code as --direct
        raise ReceiptsNotSetUp(state.message or "receipts not set up")
    if state.name == UNAVAILABLE:
        raise ReceiptsUnavailable(state.message or "receipts: AWS did not answer")
    report: ReceiptsReport = state.result()
    return report


def _poll_direct() -> ReceiptsReport:
    from notify.bootstrap import runtime
    from notify.db import utcnow
    from notify.receipts import poll_receipts
    from notify.receipts.poll import sources_from

    here = runtime()
    return poll_receipts(
        engine=here.engine(),
        sources=sources_from(here),
        settings=here.settings,
        clock=utcnow,
        fallback=here.fallback_policy(),
    )


def _show(data: dict[str, Any]) -> None:
    from notify.receipts.crash import ambiguous_said

    rows = [[kind, n] for kind, n in sorted(data["applied"].items())]
    out.print(table("Receipts applied", ["event", "applied"], rows))
    out.print(
        f"duplicates {data['duplicates']}, unmatched {data['unmatched']}, "
        f"malformed {data['malformed']}, rows changed {data['changed']}, "
        f"suppressed {data['suppressed']}"
    )
    if data["queued_skipped"]:
        out.print(
            f"queued rows skipped (their address now suppressed) {data['queued_skipped']}, "
            f"email fallbacks {data['fallbacks']}"
        )
    _show_missing_log_groups(data["sms_logs"]["missing_groups"])
    if data["sms_logs"]["began"]:
        from datetime import datetime

        from notify.receipts.poll import logs_began_said

        out.print(logs_began_said(datetime.fromisoformat(data["sms_logs"]["read_since"])))
    crash = data["crash_rows"]
    out.print(
        f"crash rows: {crash['requeued_email']} email back to pending, {crash['matched_sms']} "
        f"SMS matched, {ambiguous_said(crash['ambiguous_rows'])}, {crash['undelivered_sms']} SMS "
        "undelivered after 72 h"
    )
    finding = data["reputation"]
    if finding:
        out.print(
            f"reputation: {finding['severity'] or 'ok'}: bounce {finding['bounce_rate']:.2%}, "
            f"complaint {finding['complaint_rate']:.3%} of {finding['sent']} sent"
        )
        if finding["email_paused"]:
            out.print(Text.assemble(("EMAIL PAUSED", "bold red"), f": {finding['email_paused']}"))


def _show_missing_log_groups(groups: list[str]) -> None:
    """The runbook reads `missing_groups`: SMS delivery-status logs SNS has not written yet."""
    if groups:
        out.print(
            f"SMS delivery logs not written yet ({', '.join(groups)}): no SMS sent since "
            "logging began, or logging not set up: set NOTIFY_SMS_DELIVERY_LOG_ROLE_ARN and run "
            "`notifyops receipts setup`",
            soft_wrap=True,
        )


@app.command("setup")
def setup_command(json_output: bool = JSON) -> None:
    """Create or find the SES configuration set, SNS topic, SQS queue + DLQ and SMS delivery
    logging (idempotent)."""
    from dataclasses import asdict

    from notify.bootstrap import runtime
    from notify.receipts.poll import setup_from

    result = setup_from(runtime())
    if json_output:
        print_json({"items": [asdict(item) for item in result.items]})
        return
    rows = [[i.kind, i.name, i.action, i.arn, i.note] for i in result.items]
    out.print(table("Receipts set-up", ["resource", "name", "action", "arn", "note"], rows))


@app.command("resume-email")
def resume_email_command(json_output: bool = JSON) -> None:
    """Lift the email pause the reputation guardrail set (after fixing the cause)."""
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notify.receipts import resume_email

    with transaction(runtime().engine()) as session:
        reason = resume_email(session=session, now=utcnow())
    if json_output:
        print_json({"resumed": reason is not None, "was_paused_because": reason})
    elif reason is None:
        out.print("email was not paused")
    else:
        out.print(f"email resumed (was paused: {reason})")


@app.command("acknowledge")
def acknowledge_command(
    reason: str = typer.Option(
        ..., "--reason", help="Why: what the investigation found (kept with each receipt)."
    ),
    receipt_id: list[int] = typer.Option(
        [], "--id", min=1, max=2**63 - 1, help="Only these receipts (receipts.id; repeatable)."
    ),
    delivery_id: list[int] = typer.Option(
        [],
        "--delivery-id",
        min=1,
        max=2**63 - 1,
        help="Only receipts carrying this delivery id tag (repeatable).",
    ),
    since: str | None = typer.Option(None, help="Only receipts received since: 24h, or a time."),
    until: str | None = typer.Option(None, help="Only receipts received before: 1h, or a time."),
    yes: bool = typer.Option(
        False, "--yes", help="Do it (without it: a dry run that only lists them)."
    ),
    actor: str | None = typer.Option(
        None, "--actor", help="Who is running this, for the audit trail (default: the OS user)."
    ),
    json_output: bool = JSON,
) -> None:
    """Close receipts of ours (delivery id tag) that match no delivery row, once looked into.

    Health's P1 data-loss counts them until then. The receipt is kept: its state becomes
    `acknowledged` and its reason says who and why; a new one pages again. Without --yes it
    only lists them. An --id that is not such a receipt is refused, named.
    """
    from notify.actions.acknowledge import AcknowledgeRequest, acknowledge_receipts
    from notify.actions.audit_trail import Actor
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notify.errors import InputError
    from notifyops.action_output import as_option, parse_range, show
    from notifyops.params import build

    received_after, received_before = parse_range(since, until)
    request = build(
        AcknowledgeRequest,
        options={
            "ids": "--id",
            "delivery_ids": "--delivery-id",
            "received_after": "--since",
            "received_before": "--until",
        },
        reason=reason,
        ids=list(receipt_id),
        delivery_ids=list(delivery_id),
        received_after=received_after,
        received_before=received_before,
    )
    try:
        with transaction(runtime().engine()) as session:
            result = acknowledge_receipts(
                session=session,
                request=request,
                now=utcnow(),
                actor=Actor.from_cli(actor),
                apply=yes,
            )
    except InputError as refused:
        raise as_option(refused, "ids", "--id") from None
    already = f"; {result.already_acknowledged} already acknowledged"
    if yes:
        summary = (
            f"{result.acknowledged} receipt(s) with no row acknowledged (operator action "
            f"{result.action_id}){already}"
        )
    else:
        summary = (
            f"{result.matched} receipt(s) with no row would be acknowledged{already}; "
            "add --yes to do it"
        )
    show(result, as_json=json_output, summary=summary)
