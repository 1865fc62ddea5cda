"""Output for people (Rich tables) and machines (--json), and the CLI's exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

EXIT_OK = 0
EXIT_PARTIAL = 1  # partial failure or a threshold breached
EXIT_BAD_INPUT = 2  # bad input or setup error
# the reader of the output left (`notifyops ... | head -1`): 128 + SIGPIPE, the status a shell
# reports for a Unix tool that SIGPIPE ended, as Ctrl-C's is 128 + SIGINT (notifyops.interrupts)
EXIT_OUTPUT_CLOSED = 128 + signal.SIGPIPE


class OutputClosed(Exception):
    """The program reading this one's output closed it: the command stops printing, and
    notifyops.cli.main exits quietly (output_closed). Not an OSError: Click takes a broken pipe
    raised by a command for its own and exits 1, the status of a partial failure here."""


class _WholeWrites:
    """A text stream whose every write is written whole, or raises. A write into a pipe whose
    reader leaves part-way (`| head -1` over a long listing) came back short, with the part the
    pipe took, and no error: CPython's buffered writer returns a short count when a signal
    (SIGPIPE) arrives during the write, and the text layer drops the rest. The command then
    exited 0 for output it never finished printing. Writing the rest raises BrokenPipeError."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        buffer = getattr(self._stream, "buffer", None)
        if buffer is None:
            return int(self._stream.write(text))
        self._stream.flush()  # what the text layer holds goes first
        encoding = getattr(self._stream, "encoding", None) or "utf-8"
        errors = getattr(self._stream, "errors", None) or "strict"
        rest = memoryview(text.encode(encoding, errors))
        while rest:
            written = buffer.write(rest)
            rest = rest[len(rest) if written is None else written :]
        buffer.flush()
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self._stream, name)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Rich's own exits 1 (and points stdout, even for stderr's console, at /dev/null)."""
        self.quiet = True
        raise OutputClosed from None

    @property
    def file(self) -> Any:
        """The console's stream (stdout or stderr as it is now), written whole (_WholeWrites)."""
        return _WholeWrites(Console.file.fget(self))  # type: ignore[attr-defined]

    @file.setter
    def file(self, new_file: Any) -> None:
        Console.file.fset(self, new_file)  # type: ignore[attr-defined]


_WIDTH = None if sys.stdout.isatty() else 160  # pipes and CI logs get room for wide tables
# Rich markup and emoji codes off: what is printed is mostly data (names, ids, titles, reasons,
# template output), and `[/]`, `[admin]` or `site:x:1` in it must print as written, not style the
# line, fail it (MarkupError) or become an emoji. A line with styled labels says markup=True and
# escapes (rich.markup.escape) the data it holds, or assembles a rich.text.Text.
out = _Console(highlight=False, width=_WIDTH, markup=False, emoji=False)
err = _Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):  # notify.ids
        return list(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def print_json(value: Any) -> None:
    text = json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n"
    try:
        _WholeWrites(sys.stdout).write(text)
    except BrokenPipeError:
        raise OutputClosed from None


def output_closed() -> int:
    """After OutputClosed: nothing more is printed, and stdout is pointed at /dev/null so that
    the interpreter's last flush of what is still buffered cannot fail again (the `signal`
    docs' note on SIGPIPE). The exit status: EXIT_OUTPUT_CLOSED."""
    with contextlib.suppress(OSError, ValueError):  # a stdout with no file (a test's capture)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_OUTPUT_CLOSED


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column(column)
    for row in rows:
        view.add_row(*("" if cell is None else str(cell) for cell in row))
    return view


def fail_line(message: str) -> None:
    err.print(Text.assemble(("error: ", "bold red"), message))


MAX_JSON_BYTES = 1_000_000  # a template context; anything bigger is a mistake


class _NotJson(ValueError):
    """A value Python's JSON reader takes that JSON has not."""


def _not_json(name: str) -> Any:
    """NaN, Infinity and -Infinity are not JSON (json.loads takes them; a template then
    renders `nan`)."""
    raise _NotJson(f"{name} is not a JSON value (give a number or a string)")


def parse_json_object(raw: str, option: str) -> dict[str, Any]:
    """A JSON object given on the command line; InputError naming the option otherwise."""
    from notify.errors import InputError

    if len(raw) > MAX_JSON_BYTES:
        raise InputError(f"{option}: {len(raw):,} characters of JSON; at most {MAX_JSON_BYTES:,}")
    from notify.json_objects import RepeatedKey, refuse_repeated_keys

    try:
        value = json.loads(raw, parse_constant=_not_json, object_pairs_hook=refuse_repeated_keys)
    except _NotJson as error:
        raise InputError(f"{option}: {error}") from None
    except RepeatedKey as repeated:  # json.loads would keep the last value without a word
        raise InputError(
            f"{option}: key {repeated.key!r} given twice (which value is meant?)"
        ) from None
    except json.JSONDecodeError as error:
        where = (
            f"line {error.lineno} column {error.colno}"
            if error.lineno > 1
            else (f"column {error.colno}")
        )
        raise InputError(f"{option}: not valid JSON ({error.msg} at {where})") from None
    except RecursionError:
        raise InputError(f"{option}: not valid JSON here (nested too deeply)") from None
    except ValueError as error:  # an integer of more than 4,300 digits
        raise InputError(f"{option}: not valid JSON here ({str(error).split(':')[0]})") from None
    if not isinstance(value, dict):
        raise InputError(f'{option}: must be a JSON object such as {{"repair_id": "R-1"}}')
    return value


def read_text_option(path: Path, option: str) -> str:
    """The text of a file named on the command line (UTF-8, or UTF-16 with its byte-order mark);
    InputError naming the option."""
    from notify.errors import InputError
    from notify.validation import decode_text, undecodable

    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{option}: cannot read {path} ({error.strerror or error})") from None
    try:
        return decode_text(data)
    except UnicodeDecodeError as error:
        raise InputError(f"{option}: {path} {undecodable(data, error)}") from None
