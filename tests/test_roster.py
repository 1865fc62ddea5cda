"""Recipient files: every row validated, bad rows reported with line, column and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notify.errors import InputError
from notify.roster import parse_roster_file

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
        ("t:1,A,a@example.com,,Moon/Base,true,false,,", "timezone", "IANA"),
        ("t:1,A,a@example.com,,UTC,sometimes,false,,", "receive_email", "boolean"),
        ("t:1,A,a@example.com,,UTC,true,false,22:00,", "quiet_hours_end", "both"),
        ("t:1,A,a@example.com,,UTC,true,false,9pm,07:00", "quiet_hours_start", "HH:MM"),
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


@pytest.mark.parametrize(
    ("content", "message_part"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("external_id,name,email\nt:1,A,a@example.com\n", "missing column(s): phone"),
        (HEADER.strip() + ",favourite_color\n", "unknown column(s): favourite_color"),
    ],
)
def test_file_level_problems_are_one_clear_message(
    tmp_path: Path, content: str, message_part: str
) -> None:
    with pytest.raises(InputError, match=message_part.replace("(", r"\(").replace(")", r"\)")):
        parse_roster_file(write(tmp_path, content))


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
