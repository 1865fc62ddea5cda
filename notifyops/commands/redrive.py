"""`notifyops redrive`: failed delivery rows back in the queue, filtered, once per redrive id."""

from __future__ import annotations

import typer

from notifyops.action_output import ACTOR, JSON, YES, parse_range, show

OPTIONS = {  # RedriveRequest's fields the command line spells otherwise
    "statuses": "--status",
    "error_codes": "--error-code",
    "error_classes": "--error-class",
    "ids": "--id",
    "created_after": "--since",
    "created_before": "--until",
}


def redrive_command(
    status: list[str] = typer.Option(
        ["failed"],
        "--status",
        help="Rows to redrive (repeatable): failed (default), pending_retry, failed_permanent "
        "(needs --error-code), unknown (needs --allow-unknown).",
    ),
    allow_unknown: bool = typer.Option(
        False, "--allow-unknown", help="Allow `unknown` rows: the provider may have them already."
    ),
    error_code: list[str] = typer.Option(
        [],
        "--error-code",
        help="Only this error code (a known one in any case; others as stored; repeatable).",
    ),
    error_class: list[str] = typer.Option(
        [], "--error-class", help="Only this error class (repeatable): transient, quota, config..."
    ),
    channel: str | None = typer.Option(None, help="Only email or sms."),
    template: str | None = typer.Option(None, help="Only this template."),
    recipient: str | None = typer.Option(None, help="Only this recipient (external id)."),
    since: str | None = typer.Option(None, help="Only rows created since: 24h, or an ISO time."),
    until: str | None = typer.Option(None, help="Only rows created before: 1h, or an ISO time."),
    row_id: list[int] = typer.Option(
        [], "--id", min=1, max=2**31 - 1, help="Only these delivery_logs ids (repeatable)."
    ),
    redrive_id: str | None = typer.Option(
        None, "--redrive-id", help="Name this redrive (default: from its filters)."
    ),
    yes: bool = YES,
    actor: str | None = ACTOR,
    json_output: bool = JSON,
) -> None:
    """Put failed delivery rows back in the queue (an operator's decision).

    Without --yes it only counts, grouped by error, and shows a sample. A redrive is recorded
    under its id: the same redrive run again changes nothing (pass a new --redrive-id to redrive
    the same rows again). `unknown` rows may already have reached the provider: check the
    provider's delivery logs first, since redriving them can send a message twice.
    """
    from notify.actions.audit_trail import Actor
    from notify.actions.redrive import RedriveRequest, redrive
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notifyops.params import build

    created_after, created_before = parse_range(since, until)
    request = build(
        RedriveRequest,
        options=OPTIONS,
        statuses=list(status),
        allow_unknown=allow_unknown,
        error_codes=list(error_code),
        error_classes=list(error_class),
        channel=channel,
        template=template,
        recipient=recipient,
        created_after=created_after,
        created_before=created_before,
        ids=list(row_id),
        redrive_id=redrive_id,
    )
    here = runtime()
    with transaction(here.engine()) as session:
        result = redrive(
            session=session,
            request=request,
            now=utcnow(),
            actor=Actor.from_cli(actor),
            apply=yes,
            catalog=here.catalog(),
        )
    skipped = f"; {result.already_redriven} already redriven by {result.redrive_id}"
    if yes:
        summary = (
            f"{result.redriven} row(s) back to pending{skipped}; `notifyops deliver` sends them"
        )
    else:
        summary = f"{result.matched} row(s) would be redriven{skipped}; add --yes to do it"
    show(result, as_json=json_output, summary=summary, warnings=result.warnings)
