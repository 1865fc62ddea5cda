"""Command help read as prose: the docstrings are wrapped at the source's line length, and Typer
keeps their single line breaks (a sentence broken mid-way in `--help`). Each paragraph of plain
text becomes one line, which the help panel wraps to the terminal; a paragraph that is laid out
(indented, a list, or marked with Click's `\\b`) is kept as written."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import typer

_LAID_OUT = re.compile(r"^(\s|[-*•]\s|\d+[.)]\s|\x08)")


def unwrap(text: str) -> str:
    """`text` with the single line breaks inside each plain paragraph turned into spaces."""
    return "\n\n".join(_paragraph(part) for part in text.split("\n\n"))


def _paragraph(part: str) -> str:
    lines = part.split("\n")
    if any(_LAID_OUT.match(line) for line in lines):
        return part
    return " ".join(line.strip() for line in lines)


def unwrap_help(app: typer.Typer) -> None:
    """Unwrap the help of every command and group of `app` (their docstrings, where no `help=`
    was given), sub-apps included. Run once, before the command line is parsed."""
    for command in app.registered_commands:
        command.help = _unwrapped(command.help, command.callback)
    callback = app.registered_callback
    if callback is not None:
        callback.help = _unwrapped(callback.help, callback.callback)
    if isinstance(app.info.help, str):
        app.info.help = unwrap(app.info.help)
    for group in app.registered_groups:
        if isinstance(group.help, str):
            group.help = unwrap(group.help)
        if group.typer_instance is not None:
            unwrap_help(group.typer_instance)


def _unwrapped(help_text: Any, callback: Callable[..., Any] | None) -> Any:
    if isinstance(help_text, str):
        return unwrap(help_text)
    doc = inspect.getdoc(callback) if callback is not None else None
    return unwrap(doc) if doc else help_text
