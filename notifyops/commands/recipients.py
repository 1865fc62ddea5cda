"""`notifyops recipients`: import a roster, list who is on it, mute and unmute a channel."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from notifyops.action_output import ACTOR, utc_minute
from notifyops.console import EXIT_PARTIAL, fail_line, out, print_json, table

if TYPE_CHECKING:
    from notify.actions.suppressions import MuteResult
    from notify.db import Recipient
    from notify.recheck import Rechecked
    from notify.roster import ParsedRoster

app = typer.Typer(
    help="Recipients: import a roster (CSV or JSON Lines), list it, mute and unmute a channel.",
    no_args_is_help=True,
)

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")
DRY_RUN = typer.Option(False, "--dry-run", help="Only say what would change.")
RECIPIENT_ARGUMENT = {"recipient": "recipient"}  # an argument, not --recipient


@app.command("import")
def import_roster(
    file: Path = typer.Argument(..., help="CSV with a header row, or JSON Lines (.jsonl)."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Validate and count new and updated recipients and the queued messages the import "
        "would skip or re-address; write nothing.",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Validate every row, upsert the valid ones by external_id, list the rejected ones.

    Queued messages of a channel the import turns off are skipped at once (and counted); those
    of a recipient whose phone number or email address it changes go to the new one (skipped
    when it removed it, or when the new one is suppressed).
    Exits 1 when any row was rejected (the valid rows are still imported).
    """
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notify.recheck import Rechecked, recheck_imported
    from notify.recipients import unreachable_external_ids, upsert_counts, upsert_recipients
    from notify.roster import parse_roster_file

    parsed = parse_roster_file(file)
    created = updated = 0
    queued = Rechecked()
    unreachable: list[str] = []
    if parsed.rows:
        here = runtime()
        upsert = upsert_counts if dry_run else upsert_recipients
        with transaction(here.engine()) as session:
            counts = upsert(session=session, rows=parsed.rows)
            # a dry run counts what the import would do, in a savepoint it rolls back
            trial = session.begin_nested() if dry_run else None
            if trial is not None:
                upsert_recipients(session=session, rows=parsed.rows)
            if counts.updated:  # a new recipient has nothing queued
                queued = recheck_imported(
                    session.connection(),
                    now=utcnow(),
                    fallback=here.fallback_policy(),
                    settings=here.settings,
                )
            unreachable = unreachable_external_ids(
                session=session, external_ids=[row.external_id for row in parsed.rows]
            )
            if trial is not None:
                trial.rollback()
        created, updated = counts.created, counts.updated
    _report_import(file, parsed, created, updated, dry_run, json_output, queued, unreachable)
    if parsed.errors:
        first = parsed.errors[0]
        more = f" (and {len(parsed.errors) - 1} more)" if len(parsed.errors) > 1 else ""
        fail_line(
            f"{file.name}: {len(parsed.errors)} of {parsed.total} rows rejected; first: line "
            f"{first.line}, {first.column}: {first.reason}{more}"
        )
        raise typer.Exit(EXIT_PARTIAL)


def _report_import(
    file: Path,
    parsed: ParsedRoster,
    created: int,
    updated: int,
    dry_run: bool,
    as_json: bool,
    queued: Rechecked,
    unreachable: list[str],
) -> None:
    summary = {
        "file": str(file),
        "rows": parsed.total,
        "valid": len(parsed.rows),
        "rejected": len(parsed.errors),
        "created": created,
        "updated": updated,
        "dry_run": dry_run,
        "queued_skipped": queued.skipped,
        "queued_readdressed": queued.readdressed,
        "queued_rescheduled": queued.rescheduled,
        "fallbacks": queued.fallbacks,
        "unreachable": unreachable,
        "errors": parsed.errors,
    }
    if as_json:
        print_json(summary)
        return
    if parsed.errors:
        rows = [(e.line, e.column, e.value, e.reason) for e in parsed.errors]
        out.print(table("Rejected rows", ["line", "column", "value", "reason"], rows))
    verb = "would import" if dry_run else "imported"
    out.print(
        f"{parsed.total} row(s): {len(parsed.rows)} valid ({verb}; {created} new, "
        f"{updated} updated), {len(parsed.errors)} rejected"
    )
    for line in _queued_lines(queued, dry_run):
        out.print(line)
    if unreachable:
        shown = ", ".join(unreachable[:UNREACHABLE_SHOWN])
        more = (
            f" and {len(unreachable) - UNREACHABLE_SHOWN} more"
            if len(unreachable) > UNREACHABLE_SHOWN
            else ""
        )
        out.print(
            f"{len(unreachable)} recipient(s) {'would ' if dry_run else ''}receive nothing: no "
            f"email address or email off, and no phone number or SMS off (receive_sms defaults "
            f"to false): {shown}{more}"
        )


UNREACHABLE_SHOWN = 5  # external ids the import names of the recipients nothing reaches


def _queued_lines(queued: Rechecked, dry_run: bool) -> list[str]:
    """What the import does to the messages already queued, one line per reason."""
    skipped = "would be skipped" if dry_run else "skipped, never sent"
    moved = "would be re-addressed: they would go" if dry_run else "re-addressed: they go"
    to_go = "would go" if dry_run else "to go"
    timed = "would be" if dry_run else "are"
    fallbacks = f" ({queued.fallbacks} {to_go} by email instead)" if queued.fallbacks else ""
    lines = {
        f"{moved} to the recipient's new phone number or email address": queued.readdressed,
        f"held by quiet hours {timed} now timed by the recipient's new time zone or quiet hours": (
            queued.rescheduled
        ),
        f"{skipped}: their channel is now off in the recipient's preferences": queued.turned_off,
        f"{skipped}: the recipient's phone number or email address was removed": (
            queued.unaddressed
        ),
        f"{skipped}: the recipient's new phone number or email address is suppressed"
        f"{fallbacks}": queued.muted,
    }
    return [f"{n} queued message(s) {what}" for what, n in lines.items() if n]


@app.command("list")
def list_command(
    limit: int = typer.Option(50, min=1, max=10_000, help="How many to show."),
    offset: int = typer.Option(0, min=0, max=2**31 - 1, help="Skip this many (paging)."),
    search: str | None = typer.Option(
        None, help="Filter by external_id or name (substring, taken literally: % and _ too)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """List recipients ordered by external_id."""
    from notify.bootstrap import runtime
    from notify.db import transaction
    from notify.recipients import count_recipients, list_recipients

    with transaction(runtime().engine()) as session:
        total = count_recipients(session=session, search=search)
        found = list_recipients(session=session, limit=limit, offset=offset, search=search)
        rows = [_recipient_view(r) for r in found]
    if json_output:
        print_json({"total": total, "recipients": rows})
        return
    columns = ["external_id", "name", "email", "phone", "timezone", "email?", "sms?", "quiet hours"]
    out.print(
        table(f"Recipients ({len(rows)} of {total})", columns, [list(r.values()) for r in rows])
    )


def _recipient_view(r: Recipient) -> dict[str, object]:
    quiet = f"{r.quiet_hours_start}-{r.quiet_hours_end}" if r.quiet_hours_start else ""
    return {
        "external_id": r.external_id,
        "name": r.name,
        "email": r.email,
        "phone": r.phone,
        "timezone": r.timezone,
        "receive_email": r.receive_email,
        "receive_sms": r.receive_sms,
        "quiet_hours": quiet,
    }


@app.command("mute")
def mute_command(
    recipient: str = typer.Argument(..., help="External id, e.g. technician:123."),
    channel: str = typer.Option(..., help="email or sms."),
    hours: float = typer.Option(24.0, help="How long the mute lasts, in hours."),
    reason: str = typer.Option(..., help="Why (kept with the mute)."),
    title: str | None = typer.Option(None, help="Only notifications with this title (a loop)."),
    dry_run: bool = DRY_RUN,
    actor: str | None = ACTOR,
    json_output: bool = JSON_OPTION,
) -> None:
    """Stop one channel for one recipient for a while (a suppression, like a loop mute).

    The enqueue policy skips a muted channel ("phone number suppressed"); the recipient's
    messages already queued on it are skipped at once and counted. Muting again while an equal or
    longer mute is active adds nothing. The mute is of the recipient's phone number or email
    address: other recipients with the same one are muted too (the output names them).
    """
    from notify.actions.audit_trail import Actor
    from notify.actions.suppressions import MuteRequest, mute
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notifyops.action_output import show
    from notifyops.params import build

    request = build(
        MuteRequest,
        options=RECIPIENT_ARGUMENT,
        recipient=recipient,
        channel=channel,
        hours=hours,
        reason=reason,
        title=title,
    )
    here = runtime()
    with transaction(here.engine()) as session:
        result = mute(
            session=session,
            request=request,
            now=utcnow(),
            actor=Actor.from_cli(actor),
            fallback=here.fallback_policy(),
            apply=not dry_run,
        )
    until = utc_minute(result.suppression.until) if result.suppression.until else "(no end)"
    done = "already muted" if not result.created else "would be muted" if dry_run else "muted"
    summary = f"{recipient} {done} on {channel} until {until}"
    if result.also_muted:
        verb = "would also mute" if dry_run and result.created else "also mutes"
        what = _address_kind({channel})
        summary += f"; {verb} {', '.join(result.also_muted)} (same {what})"
    show(result, as_json=json_output, summary=f"{summary}; {_queued(result)}")


def _queued(result: MuteResult) -> str:
    """What the mute does to the messages already queued (the also-muted recipients' too)."""
    n, to_go = result.queued_skipped, "would go" if not result.applied else "to go"
    fallbacks = f" ({result.fallbacks} {to_go} by email instead)" if result.fallbacks else ""
    if not result.applied:
        return f"{n} queued message(s) would be skipped{fallbacks}"
    return f"{n} queued message(s) skipped, never sent{fallbacks}"


@app.command("unmute")
def unmute_command(
    recipient: str = typer.Argument(..., help="External id, e.g. technician:123."),
    channel: str | None = typer.Option(None, help="email or sms (default: both)."),
    title: str | None = typer.Option(None, help="Only the mute of this title."),
    reason: str = typer.Option("", help="Why (added to each lifted mute)."),
    dry_run: bool = DRY_RUN,
    actor: str | None = ACTOR,
    json_output: bool = JSON_OPTION,
) -> None:
    """End a recipient's active mutes, manual or automatic (loop); nothing is deleted.

    With --dry-run it lists the mutes it would lift and changes nothing. A mute is of a phone
    number or email address: lifting it unmutes every recipient with that one (the output names
    them; each mute's reason says whom it was made for).
    """
    from notify.actions.audit_trail import Actor
    from notify.actions.suppressions import UnmuteRequest, unmute
    from notify.bootstrap import runtime
    from notify.db import transaction, utcnow
    from notifyops.action_output import show
    from notifyops.params import build

    request = build(
        UnmuteRequest,
        options=RECIPIENT_ARGUMENT,
        recipient=recipient,
        channel=channel,
        title=title,
        reason=reason,
    )
    with transaction(runtime().engine()) as session:
        result = unmute(
            session=session,
            request=request,
            now=utcnow(),
            actor=Actor.from_cli(actor),
            apply=not dry_run,
        )
    done = "would be lifted" if dry_run else "lifted"
    summary = f"{len(result.lifted)} mute(s) of {recipient} {done}"
    if result.also_unmuted:
        what = _address_kind({s.channel for s in result.lifted})
        others = ", ".join(result.also_unmuted)
        summary += (
            f": of the {what} {recipient} shares with {others}, so {others} "
            f"{'would be' if dry_run else 'is'} unmuted too"
        )
    show(result, as_json=json_output, summary=summary)


def _address_kind(channels: set[str]) -> str:
    if channels == {"sms"}:
        return "phone number"
    return "email address" if channels == {"email"} else "phone number or email address"
