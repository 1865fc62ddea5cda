"""Recipient files: every row validated, bad rows reported with line, column and reason."""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

import pytest

from notify.errors import InputError
from notify.roster import parse_roster_file, read_recipient_file

HEADER = (
    "external_id,name,email,phone,timezone,receive_email,receive_sms,"
    "quiet_hours_start,quiet_hours_end\n"
)


def write(tmp_path: Path, text: str, name: str = "roster.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_rows_are_normalised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER + "tech:1, Ana ,Ana@Example.COM,+1 206 555 0101,America/Chicago,yes,1,22:00,07:00\n",
    )
    parsed = parse_roster_file(path)
    assert parsed.errors == []
    (row,) = parsed.rows
    assert row.phone == "+12065550101"
    assert row.email == "Ana@example.com"
    assert (row.receive_email, row.receive_sms) == (True, True)
    assert (row.quiet_hours_start, row.quiet_hours_end) == ("22:00", "07:00")
    assert row.timezone == "America/Chicago"


@pytest.mark.parametrize(
    ("cells", "column", "reason_part"),
    [
        ("t:1,A,not-an-email,,UTC,true,false,,", "email", "not a valid email"),
        ("t:1,A,,5551234,UTC,false,true,,", "phone", "E.164"),
        ("t:1,A,,+1555,UTC,false,true,,", "phone", "digits"),
        # E.164 has no extension: it was dropped without a word
        ("t:1,A,,+1 206 555 0101 ext 5,UTC,false,true,,", "phone", "extension (5)"),
        ("t:1,A,,+12065550101;ext=5,UTC,false,true,,", "phone", "extension (5)"),
        # letters were read as keypad digits: +1 800 FLOWERS was stored as +18003569377
        ("t:1,A,,+1 800 FLOWERS,UTC,false,true,,", "phone", "has letters"),
        ("t:1,A,,+1 206 555 0101 x,UTC,false,true,,", "phone", "has letters"),
        ("t:1,A,a@example.com,,Moon/Base,true,false,,", "timezone", "IANA"),
        ("t:1,A,a@example.com,,UTC,sometimes,false,,", "receive_email", "boolean"),
        ("t:1,A,a@example.com,,UTC,true,false,22:00,", "quiet_hours_end", "both"),
        ("t:1,A,a@example.com,,UTC,true,false,9pm,07:00", "quiet_hours_start", "HH:MM"),
        # the policy reads equal bounds as no quiet hours: the row said otherwise
        ("t:1,A,a@example.com,,UTC,true,false,22:00,22:00", "quiet_hours_end", "leave both empty"),
        (",A,a@example.com,,UTC,true,false,,", "external_id", "empty"),
        ("t:1,A,,,UTC,true,false,,", "email", "cannot be reached"),
    ],
)
def test_each_bad_field_is_named_with_its_line(
    tmp_path: Path, cells: str, column: str, reason_part: str
) -> None:
    good = "t:0,Good,good@example.com,+12065550100,UTC,true,true,,\n"
    parsed = parse_roster_file(write(tmp_path, HEADER + good + cells + "\n"))
    assert [row.external_id for row in parsed.rows] == ["t:0"], "the good neighbour still imports"
    (error,) = parsed.errors
    assert (error.line, error.column) == (3, column)
    assert reason_part in error.reason


@pytest.mark.parametrize(
    ("start", "end", "stored"),
    [
        ("22:00", "7:00", ("22:00", "07:00")),  # Excel's h:mm
        ("21:30", "0:00", ("21:30", "00:00")),
        ("22:00:00", "07:00:00", ("22:00", "07:00")),  # Excel's hh:mm:ss
        ("9:05:00", "06:00", ("09:05", "06:00")),
    ],
)
def test_quiet_hours_as_a_spreadsheet_writes_them_import_as_hh_mm(
    tmp_path: Path, start: str, end: str, stored: tuple[str, str]
) -> None:
    """An Excel export writes 7:00 or 22:00:00: the row was rejected as not HH:MM."""
    row = f"t:1,A,a@example.com,,UTC,true,false,{start},{end}\n"
    parsed = parse_roster_file(write(tmp_path, HEADER + row))
    assert parsed.errors == []
    (imported,) = parsed.rows
    assert (imported.quiet_hours_start, imported.quiet_hours_end) == stored


@pytest.mark.parametrize("bad", ["22:00:30", "24:00", "7.00", "7:0", "123:00", ":00", "7:00:"])
def test_a_quiet_hour_that_is_not_a_whole_minute_of_the_day_is_still_rejected(
    tmp_path: Path, bad: str
) -> None:
    row = f"t:1,A,a@example.com,,UTC,true,false,{bad},07:00\n"
    parsed = parse_roster_file(write(tmp_path, HEADER + row))
    assert parsed.rows == []
    (error,) = parsed.errors
    assert (error.line, error.column, error.value) == (2, "quiet_hours_start", bad)
    assert error.reason == f"{bad!r} is not a time in 24-hour HH:MM form, e.g. 22:00"


def test_duplicate_external_ids_reject_every_copy_and_name_the_other_line(tmp_path: Path) -> None:
    rows = [
        "t:1,A,a@example.com,,UTC,true,false,,",
        "t:2,B,b@example.com,,UTC,true,false,,",
        "t:1,C,c@example.com,,UTC,true,false,,",
    ]
    parsed = parse_roster_file(write(tmp_path, HEADER + "\n".join(rows) + "\n"))
    assert [row.external_id for row in parsed.rows] == ["t:2"]
    assert [(e.line, e.column) for e in parsed.errors] == [(2, "external_id"), (4, "external_id")]
    assert "line 4" in parsed.errors[0].reason


def test_optional_columns_take_defaults(tmp_path: Path) -> None:
    parsed = parse_roster_file(
        write(tmp_path, "external_id,name,email,phone\nt:1,A,a@example.com,\n")
    )
    (row,) = parsed.rows
    assert (row.timezone, row.receive_email, row.receive_sms) == ("UTC", True, False)
    assert row.absent == {
        "timezone",
        "receive_email",
        "receive_sms",
        "quiet_hours_start",
        "quiet_hours_end",
    }, "an update keeps what the header leaves out"


def test_an_optional_column_in_the_header_is_given_even_when_empty(tmp_path: Path) -> None:
    parsed = parse_roster_file(write(tmp_path, around("t:1,A,a@example.com,,,,,,")))
    assert [row.absent for row in parsed.rows] == [frozenset()] * 3
    assert parsed.rows[1].timezone == "UTC"


@pytest.mark.parametrize(
    ("fields", "absent"),
    [
        ({}, {"timezone", "receive_email", "receive_sms", "quiet_hours_start", "quiet_hours_end"}),
        (
            {"timezone": None, "receive_sms": ""},
            {"receive_email", "quiet_hours_start", "quiet_hours_end"},
        ),
        ({"quiet_hours_start": ""}, {"timezone", "receive_email", "receive_sms"}),
    ],
)
def test_a_json_line_gives_the_optional_fields_it_names(
    tmp_path: Path, fields: dict[str, object], absent: set[str]
) -> None:
    parsed = parse_roster_file(write(tmp_path, jsonl("t:1", **fields) + "\n", "roster.jsonl"))
    (row,) = parsed.rows
    assert row.absent == absent
    assert (row.timezone, row.receive_sms, row.quiet_hours_start) == ("UTC", False, None)


@pytest.mark.parametrize(
    ("content", "message_part"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("external_id,name,email\nt:1,A,a@example.com\n", "missing column(s): phone"),
        (HEADER.strip() + ",favourite_color\n", "unknown column(s): favourite_color"),
        (HEADER.strip() + ",phone\n", "column(s) named twice: phone"),
        ("external_id,name,email,EMAIL,phone\n", "column(s) named twice: email and EMAIL"),
        ("External_Id,Name,E-mail,Phone\n", "missing column(s): email; unknown column(s): E-mail"),
        (HEADER.strip() + ",\n", "unknown column(s): (unnamed column 10: a comma too many"),
    ],
)
def test_file_level_problems_are_one_clear_message(
    tmp_path: Path, content: str, message_part: str
) -> None:
    with pytest.raises(InputError, match=message_part.replace("(", r"\(").replace(")", r"\)")):
        parse_roster_file(write(tmp_path, content))


@pytest.mark.parametrize(
    "header",
    [
        "EXTERNAL_ID,NAME,EMAIL,PHONE,TIMEZONE,RECEIVE_SMS",
        "External_Id, Name ,Email,Phone,TimeZone,Receive_SMS",
    ],
)
def test_a_header_in_another_case_imports_as_written_in_lower_case(
    tmp_path: Path, header: str
) -> None:
    """A spreadsheet export writes `EXTERNAL_ID,NAME,...`: it was refused as missing every
    column and naming unknown ones."""
    text = header + "\nt:1,Ana,ana@example.com,+12065550101,America/Chicago,yes\n"
    parsed = parse_roster_file(write(tmp_path, text))
    assert parsed.errors == []
    (row,) = parsed.rows
    assert (row.external_id, row.name, row.email, row.phone) == (
        "t:1",
        "Ana",
        "ana@example.com",
        "+12065550101",
    )
    assert (row.timezone, row.receive_sms) == ("America/Chicago", True)
    assert row.absent == {"receive_email", "quiet_hours_start", "quiet_hours_end"}


def test_a_header_in_another_case_reports_rows_under_the_columns_names(tmp_path: Path) -> None:
    text = "EXTERNAL_ID,NAME,EMAIL,PHONE\nt:1,Ana,not-an-email,\nt:2,Bo,bo@example.com,\n"
    parsed = parse_roster_file(write(tmp_path, text))
    assert [row.external_id for row in parsed.rows] == ["t:2"]
    assert [(e.line, e.column) for e in parsed.errors] == [(2, "email")]


def test_a_json_line_naming_a_field_twice_is_rejected_not_read_as_its_last_value(
    tmp_path: Path,
) -> None:
    line = jsonl("t:1", phone="+12065550101")[:-1] + ', "phone": "+12065550199"}'
    parsed = parse_roster_file(write(tmp_path, line + "\n" + jsonl("t:2") + "\n", "r.jsonl"))
    assert [row.external_id for row in parsed.rows] == ["t:2"]
    (error,) = parsed.errors
    assert (error.line, error.reason) == (1, "field phone given twice (which value is meant?)")


def test_an_address_ses_cannot_send_to_is_rejected_and_a_unicode_domain_is_stored_in_punycode(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        HEADER
        + "t:1,José,josé@example.com,,UTC,true,false,,\n"
        + "t:2,Ana,ana@exämple.com,,UTC,true,false,,\n"
        + 't:3,Bo,"bo k@example.com",,UTC,true,false,,\n',
    )
    parsed = parse_roster_file(path)
    unicode, space = parsed.errors
    assert (unicode.line, unicode.column, unicode.value) == (2, "email", "josé@example.com")
    assert "SES sends only to addresses whose part before the @ is ASCII" in unicode.reason
    assert (space.line, space.column) == (4, "email")
    assert "SPACE" in space.reason and "ASCII" not in space.reason, "a space is not unicode"
    (row,) = parsed.rows
    assert row.email == "ana@xn--exmple-cua.com"


def test_non_utf8_file_is_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "t:1,Jos\xe9,j@example.com,,UTC,true,false,,\n").encode("latin-1"))
    with pytest.raises(InputError, match=r"not UTF-8 .*line 2"):
        parse_roster_file(path)


def test_utf8_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = HEADER + "t:1,Zoë,z@example.com,,Europe/Paris,true,false,,\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    parsed = parse_roster_file(path)
    assert parsed.errors == [] and parsed.rows[0].name == "Zoë"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le"])
def test_a_utf16_roster_as_excel_saves_unicode_text_imports(tmp_path: Path, encoding: str) -> None:
    text = "external_id\tname\temail\tphone\ntechnician:7\tAna Muñoz\tana@example.com\t\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":  # the codec names its byte order and writes no mark: add it
        data = codecs.BOM_UTF16_BE + data  # (utf-16-le: as a program may write it, no mark)
    path = tmp_path / "roster.txt"
    path.write_bytes(data)
    parsed = parse_roster_file(path)
    assert parsed.errors == []
    assert [(row.external_id, row.name) for row in parsed.rows] == [("technician:7", "Ana Muñoz")]
    assert read_recipient_file(path) == ["technician:7"], "send --to-file reads it too"


def test_a_damaged_utf16_or_a_utf32_roster_is_named_as_such(tmp_path: Path) -> None:
    """A UTF-16 file cut short was refused as `not UTF-8` and told to be saved as UTF-8; a UTF-32
    one (its mark begins as UTF-16's) was read as UTF-16 and refused for columns with a NUL in
    every other character."""
    text = "external_id\tname\temail\tphone\ntechnician:7\tAna\tana@example.com\t\n"
    cut = tmp_path / "cut.txt"
    cut.write_bytes(text.encode("utf-16")[:-1])
    with pytest.raises(InputError, match=r"is not valid UTF-16 \(bad bytes on line 2"):
        parse_roster_file(cut)
    wide = tmp_path / "wide.txt"
    wide.write_bytes(text.encode("utf-32"))
    with pytest.raises(InputError, match=r"is UTF-32, which is not read: save it as UTF-8"):
        parse_roster_file(wide)
    with pytest.raises(InputError, match="UTF-32"):
        read_recipient_file(wide)


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_roster_separated_by_semicolons_or_tabs_imports(tmp_path: Path, delimiter: str) -> None:
    """A European Excel saves CSV with semicolons: the whole file was refused, its header read as
    one unknown column `external_id;name;email;phone`."""
    path = tmp_path / "excel.csv"
    header = HEADER.replace(",", delimiter)
    cells = 't:1|"Doe, Ana"|ana@example.com|+12065550101|Europe/Paris|true|true|22:00|7:00'
    text = header + cells.replace("|", delimiter)
    path.write_bytes(b"\xef\xbb\xbf" + (text + "\n").replace("\n", "\r\n").encode())
    parsed = parse_roster_file(path)
    assert parsed.errors == []
    (row,) = parsed.rows
    assert (row.external_id, row.name, row.email, row.phone) == (
        "t:1",
        "Doe, Ana",
        "ana@example.com",
        "+12065550101",
    )
    assert (row.timezone, row.quiet_hours_start, row.quiet_hours_end) == (
        "Europe/Paris",
        "22:00",
        "07:00",
    )


def test_a_semicolon_separated_rows_problems_name_its_columns_and_its_semicolons(
    tmp_path: Path,
) -> None:
    header = HEADER.replace(",", ";")
    rows = ["g:1;A;a@example.com;;UTC;true;false;;", "t:1;B;b@example.com", 't:2;"C;c@example.com']
    parsed = parse_roster_file(write(tmp_path, header + "\n".join(rows) + "\n"))
    assert [row.external_id for row in parsed.rows] == ["g:1"]
    short, unclosed = parsed.errors
    assert (short.line, short.column) == (3, "phone")
    assert short.reason.endswith("(an empty value still needs its semicolon)")
    assert (unclosed.line, unclosed.column) == (4, "name")


@pytest.mark.parametrize(
    ("header", "message_part"),
    [
        (
            "external_id|name|email|phone",
            "missing column(s): external_id, name, email, phone; "
            "unknown column(s): external_id|name|email|phone",
        ),
        ("external_id;name;;email;phone", "unnamed column 3: a semicolon too many"),
    ],
)
def test_a_header_no_known_delimiter_splits_is_refused_as_before(
    tmp_path: Path, header: str, message_part: str
) -> None:
    with pytest.raises(InputError, match=re.escape(message_part)):
        parse_roster_file(write(tmp_path, header + "\nt:1|A|a@example.com|\n"))


def test_json_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "external_id": "t:1",
                "name": "A",
                "email": "a@example.com",
                "receive_sms": True,
                "phone": "+442079460000",
                "timezone": "Europe/London",
            }
        ),
        "{broken",
        json.dumps(["not", "an", "object"]),
        json.dumps({"external_id": "t:4", "name": "D", "email": "d@example.com", "shoe": 9}),
    ]
    parsed = parse_roster_file(write(tmp_path, "\n".join(lines) + "\n", "roster.jsonl"))
    assert [row.external_id for row in parsed.rows] == ["t:1"]
    assert parsed.rows[0].receive_sms is True
    assert [(e.line, e.column) for e in parsed.errors] == [(2, "-"), (3, "-"), (4, "shoe")]


def jsonl(external_id: str = "x:1", **fields: object) -> str:
    """A JSON line with every required field (email and phone made up from the id)."""
    person = {"external_id": external_id, "name": "N", "email": f"{external_id[-1]}@example.com"}
    return json.dumps(person | {"phone": ""} | fields)


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"external_id": "t:1", "name": "A", "email": "a@example.com"}, "phone"),
        ({"external_id": "t:1", "phone": "+12065550101"}, "name, email"),
    ],
)
def test_a_json_line_without_a_required_field_is_rejected_naming_it(
    tmp_path: Path, fields: dict[str, str], missing: str
) -> None:
    text = "\n".join([jsonl("g:1"), json.dumps(fields), jsonl("g:2")]) + "\n"
    parsed = parse_roster_file(write(tmp_path, text, "roster.jsonl"))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2"]
    (error,) = parsed.errors
    assert (error.line, error.column) == (2, missing.split(",")[0])
    assert f"missing required field(s): {missing}" in error.reason


def test_a_json_line_may_leave_a_required_field_empty(tmp_path: Path) -> None:
    lines = [jsonl("t:1", phone=None), jsonl("t:2", email="", phone="+12065550102", name=None)]
    parsed = parse_roster_file(write(tmp_path, "\n".join(lines) + "\n", "roster.jsonl"))
    assert parsed.errors == []
    assert [(row.email, row.phone) for row in parsed.rows] == [
        ("1@example.com", None),
        (None, "+12065550102"),
    ]


GOOD_ROWS = (
    "g:1,Good,g1@example.com,,UTC,true,false,,",
    "g:2,Good,g2@example.com,,UTC,true,false,,",
)


def around(bad: str) -> str:
    """A CSV file with the bad row (line 3) between two good ones (lines 2 and 4)."""
    return HEADER + "\n".join([GOOD_ROWS[0], bad, GOOD_ROWS[1]]) + "\n"


@pytest.mark.parametrize(
    ("bad", "column", "reason_part"),
    [
        ("x:1," + "n" * 131_073 + ",x@example.com,,UTC,true,false,,", "name", "at most 200"),
        ("x" * 200_000 + ",N,x@example.com,,UTC,true,false,,", "external_id", "at most 128"),
        ("x:1,N,x@example.com,,UTC," + "t" * 140_000 + ",false,,", "receive_email", "at most"),
        ("x:1,A\x00B,x@example.com,,UTC,true,false,,", "name", "NUL byte"),
        ("x\x00,N,x@example.com,,UTC,true,false,,", "external_id", "NUL byte"),
        ("   ,N,x@example.com,,UTC,true,false,,", "external_id", "blank"),
    ],
)
def test_one_bad_row_never_costs_the_valid_rows(
    tmp_path: Path, bad: str, column: str, reason_part: str
) -> None:
    parsed = parse_roster_file(write(tmp_path, around(bad)))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2"]
    (error,) = parsed.errors
    assert (error.line, error.column) == (3, column)
    assert reason_part in error.reason
    assert len(error.value) <= 41, "the report quotes the bad value, not all of it"


@pytest.mark.parametrize(
    ("short", "missing"),
    [
        ("t:1,A,a@example.com", "phone"),
        ("t:1,A,a@example.com,+12065550101,UTC,true,true", "quiet_hours_start, quiet_hours_end"),
    ],
)
def test_a_short_row_is_rejected_naming_the_columns_it_lacks(
    tmp_path: Path, short: str, missing: str
) -> None:
    parsed = parse_roster_file(write(tmp_path, around(short)))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2"]
    (error,) = parsed.errors
    assert (error.line, error.column) == (3, missing.split(",")[0])
    assert f"no value for {missing}" in error.reason


def test_an_empty_value_with_its_comma_is_not_a_short_row(tmp_path: Path) -> None:
    parsed = parse_roster_file(write(tmp_path, around("t:1,A,a@example.com,,UTC,true,false,,")))
    assert parsed.errors == []
    assert (parsed.rows[1].phone, parsed.rows[1].quiet_hours_start) == (None, None)


def test_a_blank_line_is_skipped_not_rejected(tmp_path: Path) -> None:
    parsed = parse_roster_file(write(tmp_path, around("   ")))
    assert parsed.errors == [] and [row.external_id for row in parsed.rows] == ["g:1", "g:2"]


def test_a_quote_that_never_closes_is_reported_on_its_line_and_the_rest_still_imports(
    tmp_path: Path,
) -> None:
    text = around('x:1,"Never closed,x@example.com,,UTC,true,false,,') + (
        "g:3,Three,g3@example.com,,UTC,true,false,,\n"
    )
    parsed = parse_roster_file(write(tmp_path, text))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2", "g:3"]
    (error,) = parsed.errors
    assert (error.line, error.column) == (3, "name")
    assert "never closes" in error.reason and "line 3" in error.reason
    assert parsed.total == 4


def test_a_quote_closed_lines_later_still_loses_only_its_own_line(tmp_path: Path) -> None:
    text = around('x:1,"Opened here,x@example.com,,UTC,true,false,,') + (
        'g:3,"Three",g3@example.com,,UTC,true,false,,\n'
    )
    parsed = parse_roster_file(write(tmp_path, text))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2", "g:3"]
    assert [error.line for error in parsed.errors] == [3]


def test_a_quoted_name_with_a_line_break_is_one_record_refused_on_its_line(
    tmp_path: Path,
) -> None:
    """RFC 4180 lets a quoted value hold a line break: it was rejected as a quote that never
    closes, and the next row as short. It is one record, refused for the name's line break (a
    name holds no control character) on the line it starts on; errors after it still name the
    lines they start on."""
    text = HEADER + (
        "g:1,One,g1@example.com,,UTC,true,false,,\n"
        'x:1,"Multi\nLine Name",x@example.com,,UTC,true,false,,\n'
        "g:2,Two,g2@example.com,,Mars/Olympus,true,false,,\n"
        '"x:2","Three\r\nLines\r\nHere",x2@example.com,,UTC,true,false,,\r\n'
        "g:3,Three,g3@example.com,,UTC,true,false,,\n"
    )
    parsed = parse_roster_file(write(tmp_path, text))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:3"]
    assert [(e.line, e.column) for e in parsed.errors] == [
        (3, "name"),
        (5, "timezone"),
        (6, "name"),
    ]
    assert parsed.errors[0].value == "Multi\\nLine Name"
    assert "name contains a line break" in parsed.errors[2].reason
    assert parsed.total == 5


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("Ann\tLee", "a tab"),
        ("\tAnn Lee", "a tab"),  # was stripped away with the spaces, without a word
        ("Ann Lee\r", "a line break"),
        ("Ann\x1b[2JLee", "control character '\\x1b'"),
        ("Ann\x85Lee", "a line break"),
        ("Ann\x9bLee", "control character '\\x9b'"),
        ("Ann\u202eeeL", "the invisible direction control U+202E"),  # shown as "Ann Lee"
        ("\u2067Ann Lee", "the invisible direction control U+2067"),
        ("Ann\u200bLee", "the invisible character U+200B"),  # a zero width space
        ("\ufeffAnn Lee", "the invisible character U+FEFF"),  # a byte-order mark mid-file
        ("Ann\u2060Lee", "the invisible character U+2060"),
    ],
)
@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_name_with_a_control_character_is_refused_and_the_other_rows_land(
    tmp_path: Path, name: str, what: str, kind: str
) -> None:
    """A tab is not in the SMS alphabet (GSM 03.38): a name holding one was imported, and every
    SMS naming the technician went as UCS-2, in more parts; ESC garbled the terminal listing
    it. The row is refused naming `name`, its value shown escaped."""
    if kind == "csv":
        path = write(tmp_path, around(f'x:1,"{name}",x@example.com,,UTC,true,false,,'))
    else:
        lines = [jsonl("g:1"), jsonl("x:1", name=name), jsonl("g:2")]
        path = write(tmp_path, "\n".join(lines) + "\n", "roster.jsonl")
    parsed = parse_roster_file(path)
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2"]
    (error,) = parsed.errors
    assert (error.line, error.column) == (3 if kind == "csv" else 2, "name")
    assert error.reason.startswith(f"name contains {what}: ")
    assert error.value == repr(name)[1:-1]


def test_a_name_keeps_the_joiners_its_script_needs(tmp_path: Path) -> None:
    """Zero width (non-)joiners shape Persian and Indic names: not refused as invisible."""
    names = ["\u0645\u06cc\u200c\u0631\u0627", "\u0915\u094d\u200d\u0937"]
    lines = [jsonl(f"x:{n}", name=name) for n, name in enumerate(names)]
    parsed = parse_roster_file(write(tmp_path, "\n".join(lines) + "\n", "roster.jsonl"))
    assert parsed.errors == [] and [row.name for row in parsed.rows] == names


def test_a_name_keeps_its_inner_spaces_and_loses_those_around_it(tmp_path: Path) -> None:
    parsed = parse_roster_file(write(tmp_path, around("x:1,  Ann  Lee ,x@example.com,,UTC,,,,")))
    assert parsed.errors == [] and parsed.rows[1].name == "Ann  Lee"


def test_a_line_break_outside_the_name_is_still_a_quote_that_never_closes(tmp_path: Path) -> None:
    text = around('x:1,X,"x@example.com\n",,UTC,true,false,,') + (
        "g:3,Three,g3@example.com,,UTC,true,false,,\n"
    )
    parsed = parse_roster_file(write(tmp_path, text))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2", "g:3"]
    error = parsed.errors[0]
    assert error.line == 3 and "never closes" in error.reason and "line 4" in error.reason


def test_external_ids_are_stored_without_surrounding_spaces(tmp_path: Path) -> None:
    parsed = parse_roster_file(write(tmp_path, around("  x:9  , Padded ,x@example.com,,UTC,,,,")))
    assert [row.external_id for row in parsed.rows] == ["g:1", "x:9", "g:2"]
    assert parsed.rows[1].name == "Padded"


@pytest.mark.parametrize(
    ("line", "reason_part"),
    [
        ('{"external_id": "x:1", "name": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested"),
        (jsonl("x:1\u0000"), "NUL"),
        ('{"external_id": "x:1\x00", "email": "x@example.com"}', "NUL"),
        (jsonl(name={"first": "A"}), "object"),
        ("[1, 2]", "JSON object"),
        ("null", "JSON object"),
        ('{"external_id": ' + "9" * 5_000 + "}", "digits"),
    ],
)
def test_json_lines_reject_the_bad_line_only(tmp_path: Path, line: str, reason_part: str) -> None:
    good = [jsonl("g:1"), jsonl("g:2")]
    text = "\n".join([good[0], line, good[1]]) + "\n"
    parsed = parse_roster_file(write(tmp_path, text, "roster.jsonl"))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2"]
    (error,) = parsed.errors
    assert error.line == 2 and reason_part in error.reason


@pytest.mark.parametrize(
    ("external_id", "what"),
    [("tech 1", "a space"), ('"tech:1,2"', "a ','"), ("tech;1", "a ';'"), ('"a\tb"', "a space")],
)
def test_an_external_id_a_send_would_split_is_rejected(
    tmp_path: Path, external_id: str, what: str
) -> None:
    """`--to` and the dispatch form split ids at commas, semicolons and spaces: an id holding one
    was imported and then refused as unknown recipients by every send."""
    parsed = parse_roster_file(write(tmp_path, around(f"{external_id},N,x@example.com,,UTC,,,,")))
    assert [row.external_id for row in parsed.rows] == ["g:1", "g:2"]
    (error,) = parsed.errors
    assert (error.line, error.column) == (3, "external_id")
    assert f"contains {what}" in error.reason and "never be sent to" in error.reason


def test_recipient_files_strip_ids_in_both_forms(tmp_path: Path) -> None:
    from notify.roster import read_recipient_file

    plain = write(tmp_path, "  t:1  \n# comment\n\n t:2\n", "ids.txt")
    assert read_recipient_file(plain) == ["t:1", "t:2"]
    separated = write(tmp_path, "t:1,t:2\nt:3; t:4\n", "separated.txt")  # as --to separates
    assert read_recipient_file(separated) == ["t:1", "t:2", "t:3", "t:4"]
    table = write(tmp_path, "name, external_id\nA,  t:3 \nB,\n", "ids.csv")
    assert read_recipient_file(table) == ["t:3"]
    shouted = write(tmp_path, "NAME, External_ID \nA,t:4\n", "shouted.csv")
    assert read_recipient_file(shouted) == ["t:4"]


def test_a_semicolon_separated_roster_gives_a_send_its_external_ids(tmp_path: Path) -> None:
    """The roster import reads a European Excel's file; `send --to-file` read its header and
    every value (names, addresses) as recipient ids."""
    from notify.roster import read_recipient_file

    roster = "external_id;name;email\r\nt:1;Doe, Ana;ana@example.com\r\nt:2;Bo;\r\n"
    assert read_recipient_file(write(tmp_path, roster, "excel.csv")) == ["t:1", "t:2"]


@pytest.mark.parametrize(
    ("name", "content", "message_part"),
    [
        ("roster.json", "[" + jsonl("t:1") + "]\n", "is a JSON array; a roster in JSON is JSON"),
        ("roster.jsonl", "[\n" + jsonl("t:1") + "\n]\n", "jq -c '.[]' roster.jsonl"),
        ("roster.json", json.dumps(json.loads(jsonl("t:1")), indent=2), "over several lines"),
    ],
)
def test_json_that_is_not_json_lines_is_one_message_about_the_file(
    tmp_path: Path, name: str, content: str, message_part: str
) -> None:
    with pytest.raises(InputError, match=re.escape(message_part)):
        parse_roster_file(write(tmp_path, content, name))


def test_a_json_number_is_stored_as_the_file_wrote_it(tmp_path: Path) -> None:
    """A number with a fraction or an exponent went through a float: the id 1e3 was stored as
    1000.0 and 12345678901234567890.0 as 1.2345678901234567e+19, a recipient no send names."""
    lines = [
        '{"external_id": 1e3, "name": 1.50, "email": "a@example.com", "phone": null}',
        '{"external_id": 12345678901234567890.0, "name": 7, "email": "b@x.com", "phone": null}',
        '{"external_id": 12345678901234567890123, "name": "", "email": "c@x.com", "phone": null}',
    ]
    parsed = parse_roster_file(write(tmp_path, "\n".join(lines) + "\n", "roster.jsonl"))
    assert parsed.errors == []
    assert [(row.external_id, row.name) for row in parsed.rows] == [
        ("1e3", "1.50"),
        ("12345678901234567890.0", "7"),
        ("12345678901234567890123", ""),
    ]


def test_a_json_object_where_text_belongs_is_quoted_back_as_json(tmp_path: Path) -> None:
    """It was quoted as Python writes it ({'first': 'Zoë', 'ok': True})."""
    line = jsonl("x:1", name={"first": "Zoë", "ok": True})
    parsed = parse_roster_file(write(tmp_path, line + "\n", "roster.jsonl"))
    (error,) = parsed.errors
    assert (error.column, error.value) == ("name", '{"first": "Zoë", "ok": true}')


@pytest.mark.parametrize(
    "zone", ["localtime", "posixrules", "Factory", "posix/America/Chicago", "right/UTC"]
)
def test_a_zone_file_that_is_not_a_places_zone_is_rejected(tmp_path: Path, zone: str) -> None:
    """`localtime` is the zone of whichever machine reads it: quiet hours would move with the
    worker. Such names were taken because the zone database has files by those names."""
    parsed = parse_roster_file(write(tmp_path, HEADER + f"t:1,T,t@example.com,,{zone},,,,\n"))
    (error,) = parsed.errors
    assert (error.column, error.value) == ("timezone", zone)
    assert "not a place's time zone" in error.reason
