"""Recipient files (CSV with a header, or JSON Lines): parse and validate every row.

A bad row is reported with its line number, column and reason and never costs its neighbours their
import: a value longer than its column allows (MAX_LENGTH), a NUL or other control character (in a
name any of them: a tab, a line break, ESC, ...), a CSV row with more or fewer values than the
header, a JSON line without a required field, a JSON value nested too deeply or not a scalar, a
line that is not a JSON object, and a quote that never closes (reported on the line it opens;
parsing goes on with the next line, so it cannot swallow the rest of the file). A quoted CSV
`name` holding a line break (RFC 4180) is read as one record when it has the header's number of
values, and refused for its line break on the line it starts on; a record running over lines
otherwise is a quote that never closes. A CSV header's names are matched without regard to case
or the spaces around them (_column_key); its values are separated by commas, semicolons or tabs,
as its header line is (header_delimiter). Problems with the file as a whole (not UTF-8, empty,
missing or unknown columns, a column named twice, in any case) raise InputError before any row is
looked at.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from notify.errors import InputError
from notify.json_objects import RepeatedKey, refuse_repeated_keys
from notify.validation import (
    UNSHOWABLE,
    decode_text,
    describe_control,
    normalize_email,
    normalize_name,
    normalize_phone,
    normalize_timezone,
    parse_bool,
    parse_hhmm,
    undecodable,
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
_QUIET_HOURS = frozenset({"quiet_hours_start", "quiet_hours_end"})
# The columns a quoted CSV value holding a line break is read in as one record (RFC 4180), so
# that the row is refused for its value (normalize_name: no control character), on the line it
# starts on, and not as a quote that never closes with the rest of the value as another row.
_MULTILINE_COLUMNS = frozenset({"name"})
# The columns whose validator refuses control characters itself (with its own reason).
_OWN_CONTROL_RULE = frozenset({"name"})
# Longest accepted raw value per column (the database columns, with room for spaces and a
# formatted phone number); anything longer is rejected before it is parsed.
MAX_LENGTH = {
    "external_id": 128,
    "name": 200,
    "email": 320,
    "phone": 32,
    "timezone": 64,
    "receive_email": 16,
    "receive_sms": 16,
    "quiet_hours_start": 16,
    "quiet_hours_end": 16,
}
# A CSV field may be as long as the file (csv's default cap of 131,072 characters would abort the
# whole file with csv.Error); MAX_LENGTH then rejects the one row.
_CSV_FIELD_LIMIT = 2**31 - 1
_SHOWN = 40  # characters of a bad value quoted back in the report
_QUOTE = 'a quote (")'
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What a CSV's values may be separated by (a European Excel saves with semicolons), told from the
# header line; the first is the default, for a header none of them splits into known columns.
CSV_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
# What separates recipient ids in a send's `to` (one text pasted in the UI, or `--to a,b`): an
# external id holding one of them could be imported but never sent to, so the roster refuses it.
ID_SEPARATORS = re.compile(r"[,;\s]+")


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
    # Optional columns the file does not give (not in the CSV header, not a key of the JSON line):
    # a new recipient gets their defaults (held above), an existing one keeps its stored values.
    absent: frozenset[str] = frozenset()

    def as_values(self) -> dict[str, Any]:
        values = self.__dict__.copy()
        values.pop("line")
        values.pop("absent")
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
    if path.suffix.lower() != ".csv":
        _refuse_whole_file_json(path, text)
    records = _jsonl_records(text) if _looks_like_jsonl(path, text) else _csv_records(text)
    return validate_records(records)


def _refuse_whole_file_json(path: Path, text: str) -> None:
    """A JSON array, or one object written over several lines, is JSON but not JSON Lines: said
    of the file, not as a CSV header or line-by-line errors."""
    stripped = text.strip()
    fix = f"write one object per line, e.g. `jq -c '.[]' {path.name} > roster.jsonl`"
    if stripped.startswith("["):
        raise InputError(f"{path} is a JSON array; a roster in JSON is JSON Lines: {fix}")
    if stripped.startswith("{") and "\n" in stripped:
        try:
            json.loads(stripped)
        except ValueError:
            return  # several objects, or broken ones: each line is reported
        fix = f"write it on one line, e.g. `jq -c . {path.name} > roster.jsonl`"
        raise InputError(
            f"{path} is one JSON object over several lines; a roster in JSON is JSON Lines: {fix}"
        )


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
    _check_raw_values(record)
    value = _field_reader(record)
    external_id = _external_id(value)
    name = _checked_raw(value, "name", normalize_name)
    email = _optional(value, "email", normalize_email)
    phone = _optional(value, "phone", normalize_phone)
    if email is None and phone is None:
        raise _RowInvalid("email", "", "no email and no phone: the recipient cannot be reached")
    start, end = _quiet_hours(value)
    return RecipientRow(
        external_id=external_id,
        name=name,
        email=email,
        phone=phone,
        timezone=_checked(value, "timezone", normalize_timezone),
        receive_email=_checked(value, "receive_email", parse_bool),
        receive_sms=_checked(value, "receive_sms", parse_bool),
        quiet_hours_start=start,
        quiet_hours_end=end,
        line=line,
        absent=_absent_columns(record),
    )


def _external_id(value: Callable[[str], str]) -> str:
    external_id = value("external_id").strip()
    if not external_id:
        raw = value("external_id")
        reason = "external_id is blank (only spaces)" if raw else "external_id is empty"
        raise _RowInvalid("external_id", raw, reason)
    separator = ID_SEPARATORS.search(external_id)
    if separator:
        first = separator.group()[0]
        what = "a space" if first.isspace() else f"a {first!r}"
        reason = (
            f"external_id contains {what}: a send splits recipient ids at commas, semicolons "
            "and spaces, so it could never be sent to"
        )
        raise _RowInvalid("external_id", _shown(external_id), reason)
    return external_id


def _checked_raw(value: Callable[[str], str], column: str, check: Callable[[str], str]) -> str:
    """`check` of the value as the file wrote it (spaces around it included); its ValueError is
    the row's reason, the value shown with its control characters escaped."""
    raw = value(column)
    try:
        return check(raw)
    except ValueError as error:
        raise _RowInvalid(column, _shown(raw), str(error)) from None


def _absent_columns(record: Mapping[str, Any]) -> frozenset[str]:
    """The optional columns the record does not name at all. Quiet hours go as a pair: naming
    either sets both, so a stored pair is never left half changed."""
    absent = frozenset(column for column in OPTIONAL_COLUMNS if column not in record)
    return absent if absent >= _QUIET_HOURS else absent - _QUIET_HOURS


def _check_raw_values(record: Mapping[str, Any]) -> None:
    """Shape checks before any parsing: scalars only, no control characters, not too long."""
    for column, raw in record.items():
        if raw is None:
            continue
        if isinstance(raw, dict | list):
            kind = "an object" if isinstance(raw, dict) else "a list"
            shown = _shown(json.dumps(raw, ensure_ascii=False))  # as the file wrote it
            raise _RowInvalid(column, shown, f"{column} is {kind}; expected text")
        text = raw if isinstance(raw, str) else _scalar_text(raw)
        limit = MAX_LENGTH.get(column)
        if limit is not None and len(text) > limit:
            reason = f"{column} is {len(text):,} characters long; at most {limit} are accepted"
            raise _RowInvalid(column, _shown(text), reason)
        bad = None if column in _OWN_CONTROL_RULE else _CONTROL.search(text)
        if bad:
            what = describe_control(bad.group())
            raise _RowInvalid(column, _shown(text), f"{column} contains {what}")
        if column not in _MULTILINE_COLUMNS and _has_line_break(text):
            raise _RowInvalid(column, _shown(text), f"{column} contains a line break")


def _has_line_break(text: str) -> bool:
    return "\n" in text or "\r" in text


def _shown(text: str) -> str:
    """A bad value as quoted back in the report: short, control characters (and direction
    controls) escaped."""
    cut = text[:_SHOWN] + ("…" if len(text) > _SHOWN else "")
    return UNSHOWABLE.sub(lambda m: repr(m.group())[1:-1], cut)


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
    if start is not None and start == end:  # the policy reads equal bounds as no quiet hours
        reason = (
            "quiet hours that start and end at the same time are empty: leave both empty for none"
        )
        raise _RowInvalid("quiet_hours_end", value("quiet_hours_end").strip(), reason)
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


def _read_utf8(path: Path, expected: str = "") -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None
    try:
        text = decode_text(data)
    except UnicodeDecodeError as error:
        raise InputError(f"{path} {undecodable(data, error)}") from None
    if not text.strip():
        expected = expected or f"a CSV header ({', '.join(ALL_COLUMNS)}) and rows"
        raise InputError(f"{path} is empty: expected {expected}")
    return text


def _looks_like_jsonl(path: Path, text: str) -> bool:
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return True
    if path.suffix.lower() == ".csv":
        return False
    return text.lstrip().startswith("{")


def _csv_records(text: str) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    delimiter = header_delimiter(text)
    source = _CsvSource(io.StringIO(text, newline="").readlines(), delimiter)
    header = source.next_record()
    written = [name.strip() for name in header] if isinstance(header, list) else []
    _check_columns(written, delimiter)
    columns = [_column_key(name) for name in written]
    while not source.done():
        start = source.position + 1  # 1-based number of the line the record starts on
        record = source.next_record()
        if isinstance(record, list) and source.position > start:  # ran over several lines
            record = record if _spans_lines(record, columns) else source.quote_reason(start - 1)
        if isinstance(record, str):
            line = source.lines[start - 1]
            quoted = record.startswith(_QUOTE)
            column = _broken_column(line, columns, delimiter) if quoted else "-"
            yield start, RowError(start, column, _shown(line), record)
            source.restart_at(start)  # go on with the next line: nothing after it is lost
        elif record:
            yield from _csv_row(start, columns, record, delimiter)


def header_delimiter(text: str) -> str:
    """The delimiter (CSV_DELIMITERS) that splits the header line into the most known column
    names: `external_id;name;email;phone` is a semicolon-separated file. A header none of them
    splits into any known column is read with commas (and refused for its columns)."""
    header = text.split("\n", 1)[0].rstrip("\r")

    def known(delimiter: str) -> int:
        names = next(csv.reader([header], delimiter=delimiter), [])
        return sum(_column_key(name) in ALL_COLUMNS for name in names)

    return max(CSV_DELIMITERS, key=known)  # the first of equals: a comma


def _csv_row(
    line: int, columns: list[str], values: list[str], delimiter: str
) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    if len(values) > len(columns):
        yield line, RowError(line, "-", "", "more values than header columns")
    elif not any(value.strip() for value in values):
        return  # a blank line: nothing to import
    elif len(values) < len(columns):
        yield line, _short_row(line, columns, values, delimiter)
    else:
        yield line, dict(zip(columns, values, strict=True))


def _spans_lines(values: list[str], columns: list[str]) -> bool:
    """A record read over several lines is one (RFC 4180: a quoted value holds line breaks) when
    its line breaks are in columns that take them and it has the header's number of values;
    otherwise it is most likely a quote that never closes, which swallowed the lines after it."""
    return len(values) == len(columns) and not any(
        _has_line_break(value)
        for column, value in zip(columns, values, strict=True)
        if column not in _MULTILINE_COLUMNS
    )


def _short_row(line: int, columns: list[str], values: list[str], delimiter: str) -> RowError:
    """A row that ends before the header does: its missing values are not empty ones (an empty
    value still has its comma), so the row is rejected rather than read with blanks."""
    missing = columns[len(values) :]
    reason = (
        f"{len(values)} values for {len(columns)} header columns: no value for "
        f"{', '.join(missing)} (an empty value still needs its {CSV_DELIMITERS[delimiter]})"
    )
    return RowError(line, missing[0], "", reason)


def _broken_column(line: str, columns: list[str], delimiter: str) -> str:
    """The column whose value breaks the line (where a quote opens), or '-'."""
    fields = next(
        csv.reader([line], delimiter=delimiter), []
    )  # lenient: the broken value runs to the end
    index = len(fields) - 1
    return columns[index] if 0 <= index < len(columns) else "-"


class _CsvSource:
    """The file's physical lines read by one csv reader, with a position that can be moved back
    (to the line after a broken record) and a fresh reader from there."""

    def __init__(self, lines: list[str], delimiter: str) -> None:
        self.lines, self.position, self.delimiter = lines, 0, delimiter
        self._reader = self._new_reader()

    def _new_reader(self) -> Iterator[list[str]]:
        return csv.reader(self, delimiter=self.delimiter, strict=True)

    def __iter__(self) -> _CsvSource:
        return self

    def __next__(self) -> str:
        if self.position >= len(self.lines):
            raise StopIteration
        self.position += 1
        return self.lines[self.position - 1]

    def done(self) -> bool:
        return self.position >= len(self.lines)

    def restart_at(self, position: int) -> None:
        self.position = position
        self._reader = self._new_reader()

    def next_record(self) -> list[str] | str | None:
        """The next record, which may run over several lines (the caller decides whether it
        may); a reason (str) when it is broken; None at the end."""
        start = self.position
        try:
            return next(self._reader, None)
        except csv.Error as error:
            ran_on = self.position - start > 1 or "end of data" in str(error)
            return self.quote_reason(start) if ran_on else f"not valid CSV ({error})"

    def quote_reason(self, start: int) -> str:
        """Why the record that started after line `start` (0-based position) is broken."""
        return (
            f"{_QUOTE} opened on line {start + 1} never closes (the value ran to line "
            f"{self.position}); close it or remove it"
        )


def _column_key(written: str) -> str:
    """The column a header's name stands for: matched without regard to case or the spaces
    around it (`EXTERNAL_ID`, ` Email `), as a spreadsheet export may write it."""
    return written.strip().lower()


def _check_columns(written: list[str], delimiter: str) -> None:
    if not written or not any(written):
        raise InputError("no header row: the first line must name the columns")
    keys = [_column_key(name) for name in written]
    missing = [name for name in REQUIRED_COLUMNS if name not in keys]
    separator = CSV_DELIMITERS[delimiter]
    unknown = [
        name or f"(unnamed column {number}: a {separator} too many in the header?)"
        for number, (name, key) in enumerate(zip(written, keys, strict=True), start=1)
        if key not in ALL_COLUMNS
    ]
    twice = _named_twice(written)
    if missing or unknown or twice:
        parts = [f"missing column(s): {', '.join(missing)}"] if missing else []
        parts += [f"unknown column(s): {', '.join(unknown)}"] if unknown else []
        if twice:
            parts.append(f"column(s) named twice: {', '.join(twice)} (which value is meant?)")
        raise InputError(f"{'; '.join(parts)} (accepted columns: {', '.join(ALL_COLUMNS)})")


def _named_twice(written: list[str]) -> list[str]:
    """Each column the header names more than once, in any case, as written: `phone`, or
    `email and EMAIL`."""
    forms: dict[str, list[str]] = defaultdict(list)
    for name in written:
        if name:
            forms[_column_key(name)].append(name)
    return [
        " and ".join(dict.fromkeys(names)) for _, names in sorted(forms.items()) if len(names) > 1
    ]


def _jsonl_records(text: str) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        record = _json_line(raw)
        if isinstance(record, str):
            yield number, RowError(number, "-", _shown(raw), record)
            continue
        yield number, _field_error(number, record) or record


def _field_error(number: int, record: dict[str, Any]) -> RowError | None:
    """A JSON line's fields must be columns, and hold every required one: a missing field is not
    an empty one (`""` or null), as a CSV row's missing values are not empty values."""
    unknown = [key for key in record if key not in ALL_COLUMNS]
    if unknown:
        reason = f"unknown field (accepted: {', '.join(ALL_COLUMNS)})"
        return RowError(number, _shown(unknown[0]), "", reason)
    missing = [key for key in REQUIRED_COLUMNS if key not in record]
    if missing:
        reason = (
            f"missing required field(s): {', '.join(missing)} (required: "
            f'{", ".join(REQUIRED_COLUMNS)}; "" or null for an empty value)'
        )
        return RowError(number, missing[0], "", reason)
    return None


def _json_line(raw: str) -> dict[str, Any] | str:
    """The line's object, or why it is not one."""
    if "\x00" in raw:
        return "the line contains a NUL byte"
    try:
        # a number with a fraction or an exponent is kept as the file wrote it: as a float,
        # 1e3 was stored as "1000.0" and 12345678901234567890.0 as "1.2345678901234567e+19"
        record = json.loads(raw, object_pairs_hook=refuse_repeated_keys, parse_float=str)
    except RepeatedKey as repeated:
        return f"field {_shown(repeated.key)} given twice (which value is meant?)"
    except json.JSONDecodeError as error:
        return f"not valid JSON ({error.msg.removesuffix(' at')} at column {error.colno})"
    except RecursionError:
        return "not valid JSON here (nested too deeply)"
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        return f"not valid JSON here ({str(error).split(';')[0]})"
    if not isinstance(record, dict):
        return f"each line must be a JSON object, not {type(record).__name__}"
    return record


def read_recipient_file(path: Path) -> list[str]:
    """External ids separated as `--to` separates them (lines, commas, semicolons, spaces; a
    line starting with # is a comment), or a CSV whose header has an external_id column (in
    any case, and separated as a roster's may be: header_delimiter)."""
    lines = _read_utf8(path, "external ids, one a line").splitlines()
    delimiter = header_delimiter(lines[0]) if lines else ","
    header = next(csv.reader(lines[:1], delimiter=delimiter), [])
    if "external_id" in [_column_key(name) for name in header]:
        reader = csv.DictReader(lines, skipinitialspace=True, delimiter=delimiter)
        reader.fieldnames = [_column_key(name) for name in reader.fieldnames or []]
        found = [(row.get("external_id") or "").strip() for row in reader]
    else:  # an id never holds a separator (the roster refuses one that does)
        kept = (line for line in lines if not line.lstrip().startswith("#"))
        found = [part for line in kept for part in ID_SEPARATORS.split(line)]
    return [value for value in found if value]
