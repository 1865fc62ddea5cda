"""Recipient files (CSV with a header, or JSON Lines): parse and validate every row.

A bad row is reported with its line number, column and reason and never costs its neighbours their
import. Problems with the file as a whole (not UTF-8, empty, missing or unknown columns) raise
InputError before any row is looked at.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notify.errors import InputError
from notify.validation import (
    normalize_email,
    normalize_phone,
    normalize_timezone,
    parse_bool,
    parse_hhmm,
)

REQUIRED_COLUMNS = ("external_id", "name", "email", "phone")
OPTIONAL_COLUMNS = {
    "timezone": "UTC",
    "receive_email": "true",
    "receive_sms": "false",
    "quiet_hours_start": "",
    "quiet_hours_end": "",
}
ALL_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)


@dataclass(frozen=True)
class RecipientRow:
    """A validated recipient, ready to upsert."""

    external_id: str
    name: str
    email: str | None
    phone: str | None
    timezone: str
    receive_email: bool
    receive_sms: bool
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    line: int = field(compare=False, default=0)

    def as_values(self) -> dict[str, Any]:
        values = self.__dict__.copy()
        values.pop("line")
        return values


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    value: str
    reason: str


@dataclass
class ParsedRoster:
    rows: list[RecipientRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    total: int = 0


class _RowInvalid(Exception):
    def __init__(self, column: str, value: str, reason: str) -> None:
        super().__init__(reason)
        self.column, self.value, self.reason = column, value, reason


def parse_roster_file(path: Path) -> ParsedRoster:
    """Read, check and validate a CSV or JSON Lines recipient file."""
    text = _read_utf8(path)
    records = _jsonl_records(text) if _looks_like_jsonl(path, text) else _csv_records(text)
    return validate_records(records)


def validate_records(records: Iterator[tuple[int, Mapping[str, Any] | RowError]]) -> ParsedRoster:
    parsed = ParsedRoster()
    for line, record in records:
        parsed.total += 1
        if isinstance(record, RowError):
            parsed.errors.append(record)
            continue
        try:
            parsed.rows.append(validate_row(record, line))
        except _RowInvalid as bad:
            parsed.errors.append(RowError(line, bad.column, bad.value, bad.reason))
    _reject_duplicates(parsed)
    parsed.errors.sort(key=lambda error: error.line)
    return parsed


def validate_row(record: Mapping[str, Any], line: int) -> RecipientRow:
    value = _field_reader(record)
    external_id = value("external_id")
    if not external_id:
        raise _RowInvalid("external_id", "", "external_id is empty")
    if len(external_id) > 128:
        raise _RowInvalid(
            "external_id", external_id[:40], "external_id is longer than 128 characters"
        )
    email = _optional(value, "email", normalize_email)
    phone = _optional(value, "phone", normalize_phone)
    if email is None and phone is None:
        raise _RowInvalid("email", "", "no email and no phone: the recipient cannot be reached")
    start, end = _quiet_hours(value)
    return RecipientRow(
        external_id=external_id,
        name=value("name")[:200],
        email=email,
        phone=phone,
        timezone=_checked(value, "timezone", normalize_timezone),
        receive_email=_checked(value, "receive_email", parse_bool),
        receive_sms=_checked(value, "receive_sms", parse_bool),
        quiet_hours_start=start,
        quiet_hours_end=end,
        line=line,
    )


def _field_reader(record: Mapping[str, Any]) -> Callable[[str], str]:
    def value(column: str) -> str:
        raw = record.get(column)
        if raw is None:
            return OPTIONAL_COLUMNS.get(column, "")
        return raw if isinstance(raw, str) else _scalar_text(raw)

    return value


def _scalar_text(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw)


def _checked(value: Callable[[str], str], column: str, check: Callable[[str], Any]) -> Any:
    raw = value(column).strip() or OPTIONAL_COLUMNS.get(column, "")
    try:
        return check(raw)
    except ValueError as error:
        raise _RowInvalid(column, raw, str(error)) from None


def _optional(value: Callable[[str], str], column: str, check: Callable[[str], str]) -> str | None:
    return _checked(value, column, check) if value(column).strip() else None


def _quiet_hours(value: Callable[[str], str]) -> tuple[str | None, str | None]:
    start = _optional(value, "quiet_hours_start", lambda raw: parse_hhmm(raw).strftime("%H:%M"))
    end = _optional(value, "quiet_hours_end", lambda raw: parse_hhmm(raw).strftime("%H:%M"))
    if (start is None) != (end is None):
        column = "quiet_hours_end" if end is None else "quiet_hours_start"
        raise _RowInvalid(column, "", "quiet hours need both a start and an end (HH:MM)")
    return start, end


def _reject_duplicates(parsed: ParsedRoster) -> None:
    lines: dict[str, list[int]] = defaultdict(list)
    for row in parsed.rows:
        lines[row.external_id].append(row.line)
    repeated = {key: found for key, found in lines.items() if len(found) > 1}
    if not repeated:
        return
    for row in [row for row in parsed.rows if row.external_id in repeated]:
        others = ", ".join(str(n) for n in repeated[row.external_id] if n != row.line)
        reason = f"external_id appears more than once in the file (also line {others})"
        parsed.errors.append(RowError(row.line, "external_id", row.external_id, reason))
    parsed.rows = [row for row in parsed.rows if row.external_id not in repeated]


def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(
            f"{path} is not UTF-8 (bad byte on line {line}): save it as UTF-8"
        ) from None
    if not text.strip():
        raise InputError(
            f"{path} is empty: expected a CSV header ({', '.join(ALL_COLUMNS)}) and rows"
        )
    return text


def _looks_like_jsonl(path: Path, text: str) -> bool:
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return True
    if path.suffix.lower() == ".csv":
        return False
    return text.lstrip().startswith("{")


def _csv_records(text: str) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _check_columns([name.strip() for name in reader.fieldnames or []])
    reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
    for record in reader:
        line = reader.line_num
        if None in record:
            yield line, RowError(line, "-", "", "more values than header columns")
        elif not any((v or "").strip() for v in record.values()):
            continue
        else:
            yield line, {key: (val or "") for key, val in record.items()}


def _check_columns(columns: list[str]) -> None:
    if not columns or not any(columns):
        raise InputError("no header row: the first line must name the columns")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    unknown = [name for name in columns if name not in ALL_COLUMNS]
    if missing or unknown:
        parts = [f"missing column(s): {', '.join(missing)}"] if missing else []
        parts += [f"unknown column(s): {', '.join(unknown)}"] if unknown else []
        raise InputError(f"{'; '.join(parts)} (accepted columns: {', '.join(ALL_COLUMNS)})")


def _jsonl_records(text: str) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            yield number, RowError(number, "-", raw[:40], f"not valid JSON ({error.msg})")
            continue
        if not isinstance(record, dict):
            yield number, RowError(number, "-", raw[:40], "each line must be a JSON object")
            continue
        unknown = [key for key in record if key not in ALL_COLUMNS]
        if unknown:
            reason = f"unknown field (accepted: {', '.join(ALL_COLUMNS)})"
            yield number, RowError(number, unknown[0], "", reason)
            continue
        yield number, record


def read_recipient_file(path: Path) -> list[str]:
    """One external id per line, or a CSV whose header has an external_id column."""
    lines = _read_utf8(path).splitlines()
    if lines and "external_id" in lines[0].split(","):
        return [row["external_id"].strip() for row in csv.DictReader(lines) if row["external_id"]]
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
