"""`notifyops templates`: the catalogue and previews."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from notifyops.console import EXIT_PARTIAL, fail_line, out, parse_json_object, print_json, table

if TYPE_CHECKING:
    from notify.pricing import SmsLength
    from notify.rendering import BrokenTemplate, RenderedMessage, TemplateCatalog, TemplateInfo

app = typer.Typer(
    help="Message templates: list them, preview one with a context.", no_args_is_help=True
)
JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")


def _catalog() -> TemplateCatalog:
    from notify.bootstrap import runtime

    return runtime().catalog()


@app.command("list")
def list_templates(json_output: bool = JSON_OPTION) -> None:
    """List templates with their priority, category and required variables.

    An internal template (made by the deliverer, refused by send) is marked INTERNAL. A broken
    template is listed with its error (the others still list); exit 1 when any is."""
    from dataclasses import replace

    from notify.rendering import BrokenTemplate

    # the variables a context must give: `recipient` is added for each recipient
    entries = [
        e if isinstance(e, BrokenTemplate) else replace(e, required_variables=e.context_variables)
        for e in _catalog().listing()
    ]
    broken = [entry for entry in entries if isinstance(entry, BrokenTemplate)]
    if json_output:
        print_json(entries)
    else:
        rows = [_listed_row(entry) for entry in entries]
        columns = ["name", "priority", "category", "variables", "description"]
        out.print(table("Templates", columns, rows))
    if broken:
        names = ", ".join(entry.name for entry in broken)
        fail_line(f"{len(broken)} broken template(s): {names}; first: {broken[0].error}")
        raise typer.Exit(EXIT_PARTIAL)


def _listed_row(entry: TemplateInfo | BrokenTemplate) -> tuple[str, ...]:
    """A template's row of `templates list`: BROKEN with its error, INTERNAL when send refuses
    it (the deliverer makes it)."""
    from notify.rendering import BrokenTemplate

    if isinstance(entry, BrokenTemplate):
        return (entry.name, "-", "-", "-", f"BROKEN: {entry.error}")
    description = f"INTERNAL: {entry.description}" if entry.internal else entry.description
    variables = ", ".join(entry.required_variables)
    return (entry.name, entry.priority, entry.category, variables, description)


@app.command("preview")
def preview(
    name: str = typer.Argument(..., help="Template name."),
    context: str | None = typer.Option(None, help="Variables as JSON (default: the sample)."),
    recipient: str | None = typer.Option(
        None,
        help="Render for this recipient (external id), as a send would: their name can change "
        "the SMS's encoding and parts (default: a stand-in named Preview).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Render a template: subject, text, HTML and SMS with its length in segments.

    Exit 1 when the SMS is longer than SNS accepts (send refuses a request whose first recipient's
    SMS comes out so long, and skips the SMS of any other)."""
    from notify.enqueue import refuse_own_recipient
    from notify.policies import EMAIL_EMPTY, SMS_EMPTY, email_is_empty
    from notify.pricing import sms_length, sms_size_problem

    catalog = _catalog()
    values = (
        parse_json_object(context, "--context")
        if context is not None
        else catalog.info(name).sample_context
    )
    refuse_own_recipient(values)  # as send does: the recipient's own would be rendered
    who = _recipient(recipient) if recipient is not None else STAND_IN
    message = _render_preview(catalog, name, values, who, from_sample=context is None)
    length = sms_length(message.sms)
    segments = length.segments if message.sms.strip() else 0  # send skips an empty SMS: no part
    if json_output:
        print_json(
            {
                **message.__dict__,
                "sms_encoding": length.encoding,
                "sms_characters": length.units,
                "sms_segments": segments,
            }
        )
    else:
        _show_preview(message, length, segments)
        if not segments:
            out.print(f"The SMS text is empty for this context: send skips the SMS ({SMS_EMPTY}).")
        if email_is_empty(message.subject, message.text):
            out.print(f"The email is empty for this context: send skips it ({EMAIL_EMPTY}).")
    problem = sms_size_problem(message.sms)
    if problem:
        fail_line(
            f"template {name!r}: {problem}: send refuses a request whose first recipient's SMS "
            "comes out like this, and skips the SMS of any other it does for; shorten the values"
        )
        raise typer.Exit(EXIT_PARTIAL)


STAND_IN = {"name": "Preview", "external_id": "-"}


def _recipient(external_id: str) -> dict[str, str]:
    """What a template sees of this recipient (as enqueue gives it); InputError if unknown."""
    from notify.bootstrap import runtime
    from notify.db import transaction
    from notify.enqueue import recipient_context
    from notify.errors import InputError
    from notify.recipients import recipients_by_external_id

    with transaction(runtime().engine()) as session:
        found = recipients_by_external_id(session=session, external_ids=[external_id])
        person = found.get(external_id.strip())
        if person is None:
            raise InputError(
                f"--recipient: no recipient {external_id!r} (notifyops recipients list --search)"
            )
        return dict(recipient_context({}, person)["recipient"])


def _render_preview(
    catalog: TemplateCatalog,
    name: str,
    values: dict[str, Any],
    who: dict[str, str],
    *,
    from_sample: bool,
) -> RenderedMessage:
    """The template rendered for `who` (as enqueue renders it: `recipient` is always `who`);
    without --context, a sample_context that lacks a variable the template needs is said to be
    meta.json's, not the (absent) context's."""
    from notify.errors import InputError
    from notify.rendering import TemplateContextError

    try:
        return catalog.render(name, {**values, "recipient": who})
    except TemplateContextError as error:
        if not (from_sample and error.missing):
            raise
        lacks = ", ".join(repr(variable) for variable in error.missing)
        raise InputError(
            f"template {name!r}: the sample_context in its meta.json lacks {lacks}, which the "
            "template needs: add it there, or preview with --context"
        ) from error


def _show_preview(message: RenderedMessage, length: SmsLength, segments: int) -> None:
    """The parts as they are stored and sent: soft-wrapped (no line break the terminal's width
    would add, nor the trailing space Rich pads a wrapped line with)."""
    from rich.markup import escape

    out.print(
        f"[bold]Subject:[/] {escape(message.subject)}  (priority {message.priority})",
        markup=True,
        soft_wrap=True,
    )
    out.print(
        f"[bold]SMS[/] ({length.encoding}, {length.units} units, {segments} segment(s)):",
        markup=True,
    )
    out.print(message.sms, soft_wrap=True)
    out.print("[bold]Text:[/]", markup=True)
    out.print(message.text, soft_wrap=True)
    out.print("[bold]HTML:[/]", markup=True)
    out.print(message.html, soft_wrap=True)
