"""How the action commands print: --json as the result's keys, otherwise its facts and tables,
then one line saying what was (or would be) done; and the shared options and time parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.text import Text

from notifyops.console import err, out, print_json, table

ACTOR = typer.Option(
    None, "--actor", help="Who is running this, for the audit trail (default: the OS user)."
)
YES = typer.Option(False, "--yes", help="Do it (without it: a dry run that only counts).")
JSON = typer.Option(False, "--json", help="Machine-readable output (stable keys).")


def show(result: Any, *, as_json: bool, summary: str, warnings: list[str] | None = None) -> None:
    for warning in warnings or []:
        err.print(Text.assemble(("warning: ", "bold yellow"), warning))
    if as_json:
        print_json(result)
        return
    from notify.actions.view import action_view

    shaped = action_view(result.model_dump(mode="json"))
    out.print(table("Action", ["fact", "value"], shaped.facts))
    for name, columns, rows in shaped.tables:
        out.print(table(name, columns, rows))
    out.print(summary)


def as_option(error: Exception, field: str, option: str) -> Exception:
    """A library refusal that names a request's field (`ids: ...`) named as the command line
    spells it (`--id: ...`); any other error as it is."""
    from notify.errors import InputError

    text = str(error)
    if isinstance(error, InputError) and text.startswith(f"{field}: "):
        return InputError(f"{option}: {text.removeprefix(f'{field}: ')}")
    return error


def parse_moment(text: str | None, option: str) -> datetime | None:
    """ISO 8601 (UTC if no zone) or a duration back from now: 24h, 90m, 7d."""
    if text is None:
        return None
    from notify.errors import InputError
    from notifyops.commands.audit import parse_window

    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            back = parse_window(text, option)
        except InputError:
            raise InputError(
                f"{option}: {text!r} is neither a time (2026-11-30T08:00) nor a duration (24h)"
            ) from None
        try:
            moment = datetime.now(UTC) - back
        except OverflowError:
            raise InputError(f"{option}: {text!r} reaches back before year 1") from None
    try:  # in UTC, as stored: a time a zone puts before year 1 or after 9999 has no UTC time
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise InputError(f"{option}: {text!r} is out of range once converted to UTC") from None


def parse_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """--since and --until as times (see parse_moment); InputError when --since is in the
    future or not before --until (no row can match)."""
    from notify.errors import InputError

    start, end = parse_moment(since, "--since"), parse_moment(until, "--until")
    now = datetime.now(UTC)
    if start is not None and start > now:  # every row was created before now
        raise InputError(
            f"--since {since} ({utc_minute(start)}) is in the future (now {utc_minute(now)}): "
            "no row can match"
        )
    if start is not None and end is not None and start >= end:
        raise InputError(
            f"--since {since} ({utc_minute(start)}) is not before --until {until} "
            f"({utc_minute(end)}): no row can match"
        )
    return start, end


def utc_minute(moment: datetime) -> str:
    """`2026-11-30 08:00 UTC`: a moment as the command line shows it."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
