"""`notifyops decide-unknown`: record what the provider's logs showed about `unknown` rows."""

from __future__ import annotations

import typer

from notifyops.action_output import ACTOR, JSON, YES, parse_range, show

OPTIONS = {  # DecideRequest's fields the command line spells otherwise
    "outcome": "--as",
    "ids": "--id",
    "created_after": "--since",
    "created_before": "--until",
}


def decide_command(
    outcome: str = typer.Option(
        ...,
        "--as",
        help="What the provider's logs showed: sent (it had the message) or not-sent (it never "
        "went out: the row becomes failed, NotSent; redrive it to send it).",
    ),
    reason: str = typer.Option(..., "--reason", help="Why: what you checked (audit trail)."),
    row_id: list[int] = typer.Option(
        [], "--id", min=1, max=2**31 - 1, help="Only these delivery_logs ids (repeatable)."
    ),
    channel: str | None = typer.Option(None, help="Only email or sms."),
    template: str | None = typer.Option(None, help="Only this template."),
    recipient: str | None = typer.Option(None, help="Only this recipient (external id)."),
    since: str | None = typer.Option(None, help="Only rows created since: 24h, or an ISO time."),
    until: str | None = typer.Option(None, help="Only rows created before: 1h, or an ISO time."),
    decision_id: str | None = typer.Option(
        None, "--decision-id", help="Name this decision (default: from its outcome and filters)."
    ),
    yes: bool = YES,
    actor: str | None = ACTOR,
    json_output: bool = JSON,
) -> None:
    """Record `unknown` rows as sent or not sent, after checking the provider's logs; sends nothing.

    Without --yes it only counts, grouped by error, and shows a sample. `--as sent`: the row
    becomes `sent` and is never re-sent. `--as not-sent`: it becomes `failed` (NotSent), which
    nothing sends by itself; `notifyops redrive --status failed --error-code NotSent --id N`
    sends it. An --id that is not an `unknown` row is refused, named. Recorded under a decision
    id: the same decision run again changes nothing.
    """
    from notify.actions.audit_trail import Actor
    from notify.actions.decide import DecideRequest, decide_unknown
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notify.errors import InputError
    from notifyops.action_output import as_option
    from notifyops.params import build

    created_after, created_before = parse_range(since, until)
    request = build(
        DecideRequest,
        options=OPTIONS,
        outcome=outcome,
        reason=reason,
        ids=list(row_id),
        channel=channel,
        template=template,
        recipient=recipient,
        created_after=created_after,
        created_before=created_before,
        decision_id=decision_id,
    )
    here = runtime()
    try:
        with transaction(here.engine()) as session:
            result = decide_unknown(
                session=session,
                request=request,
                now=utcnow(),
                actor=Actor.from_cli(actor),
                apply=yes,
                catalog=here.catalog(),
            )
    except InputError as refused:
        raise as_option(refused, "ids", "--id") from None
    skipped = f"; {result.already_decided} already decided by {result.decision_id}"
    if yes:
        summary = f"{result.decided} unknown row(s) now {result.status}{skipped}"
        if result.outcome == "not_sent" and result.decided:
            summary += (
                "; nothing is sent: `notifyops redrive --status failed --error-code NotSent "
                "--id N` sends one"
            )
    else:
        summary = (
            f"{result.matched} unknown row(s) would become {result.status}{skipped}; "
            "add --yes to do it"
        )
    show(result, as_json=json_output, summary=summary)
