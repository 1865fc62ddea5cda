"""The bad-input corpus: every invocation here is wrong in one way, and each must end the same
way: the right exit code (2 bad input or setup, 1 partial: some roster rows rejected), exactly one
line on stderr naming what was wrong, no traceback, and for roster files every valid row kept.

In-process (`notifyops.cli.main`) on SQLite, so the whole table runs in seconds; none of these
reaches a Prefect flow (the CLI checks first, or the command runs with --direct).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from notify.bootstrap import Runtime, using
from notify.db import Recipient, transaction
from notify.recipients import upsert_recipients
from notify.roster import RecipientRow
from notify.settings import load_settings
from notifyops.cli import main
from tests.conftest import empty_tables, engine_for
from tests.runtime import reload_runtime

Args = list[str] | Callable[[Path], list[str]]
HEADER = "external_id,name,email,phone,timezone,receive_email,receive_sms"
GOOD_CSV = [
    "g:1,Good One,g1@example.com,+12065550101,UTC,true,true",
    "g:2,Two,g2@example.com,,UTC,,",
]


def jsonl(**fields: object) -> str:
    """A JSON line holding every required field, with these fields changed (None: left out)."""
    person = {"external_id": "x:1", "name": "N", "email": "x@example.com", "phone": ""}
    return json.dumps({k: v for k, v in (person | fields).items() if v is not None})


GOOD_JSONL = [
    jsonl(external_id="g:1", name="One", email="g1@example.com"),
    jsonl(external_id="g:2", name="Two", email="", phone="+12065550102"),
]
KNOWN = "t:1"  # a recipient every case's database holds


@dataclass(frozen=True)
class Case:
    id: str
    args: Args
    named: str  # must appear on the one stderr line (the bad field, option or variable)
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)
    kept: int | None = None  # roster files: valid rows imported despite the bad one


def roster(name: str, lines: list[str]) -> Callable[[Path], list[str]]:
    """`recipients import <file>` of a file written into the test's directory."""

    def args(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogateescape") + b"\n")
        return ["recipients", "import", str(path)]

    return args


def raw_file(name: str, data: bytes, *args: str) -> Callable[[Path], list[str]]:
    """A command given a file (written with exactly these bytes) as its last argument."""

    def build(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes(data)
        return [*args, str(path)]

    return build


def csv_row_cases() -> list[Case]:
    """One bad row between two good ones (CSV): line 3 is rejected, lines 2 and 4 imported."""
    bad_rows = {
        "long-name": ("x:1," + "n" * 200_000 + ",x@example.com,,UTC,,", "name"),
        "long-id": ("x" * 131_073 + ",N,x@example.com,,UTC,,", "external_id"),
        "long-email": ("x:1,N," + "e" * 140_000 + "@example.com,,UTC,,", "email"),
        "long-phone": ("x:1,N,x@example.com,+1" + "5" * 140_000 + ",UTC,,", "phone"),
        "long-timezone": ("x:1,N,x@example.com,,America/" + "z" * 131_073 + ",,", "timezone"),
        "long-bool": ("x:1,N,x@example.com,,UTC," + "t" * 140_000 + ",", "receive_email"),
        "id-129": ("i" * 129 + ",N,x@example.com,,UTC,,", "external_id"),
        "nul-name": ("x:1,A\x00B,x@example.com,,UTC,,", "name"),
        "nul-id": ("x:\x001,N,x@example.com,,UTC,,", "external_id"),
        "nul-email": ("x:1,N,x@exa\x00mple.com,,UTC,,", "email"),
        "nul-only": ("x:1,\x00,x@example.com,,UTC,,", "name"),
        "control-char": ("x:1,A\x07B,x@example.com,,UTC,,", "name"),
        "escape-char": ("x:1,A\x1bB,x@example.com,,UTC,,", "name"),
        "tab-name": ("x:1,Ann\tLee,x@example.com,,UTC,,", "line 3, name: name contains a tab"),
        "id-spaces": ("   ,N,x@example.com,,UTC,,", "external_id"),
        "id-tab": ("\t,N,x@example.com,,UTC,,", "external_id"),
        "id-empty": (",N,x@example.com,,UTC,,", "external_id"),
        "bad-email": ("x:1,N,not-an-email,,UTC,,", "email"),
        "email-two-at": ("x:1,N,a@b@example.com,,UTC,,", "email"),
        "phone-local": ("x:1,N,,5551234,UTC,,", "phone"),
        "phone-short": ("x:1,N,,+1555,UTC,,", "phone"),
        "phone-letters": ("x:1,N,,+1-CALL-NOW,UTC,,", "phone"),
        "unreachable": ("x:1,N,,,UTC,,", "email"),
        "bad-timezone": ("x:1,N,x@example.com,,Moon/Base,,", "timezone"),
        "bad-bool": ("x:1,N,x@example.com,,UTC,sometimes,", "receive_email"),
        "bad-bool-sms": ("x:1,N,x@example.com,,UTC,,perhaps", "receive_sms"),
        "too-many-values": ("x:1,N,x@example.com,,UTC,,,extra,values", "more values"),
        "too-few-values": ("x:1,N,x@example.com", "no value for phone, timezone"),
        "quote-unclosed": ('x:1,"Never closed,x@example.com,,UTC,,', "quote"),
        "quote-after-text": ('x:1,"Ana"bel,x@example.com,,UTC,,', "line 3"),
        "duplicate-of-good": ("g:1,Again,again@example.com,,UTC,,", "external_id"),
    }
    cases = []
    for name, (row, named) in bad_rows.items():
        lines = [HEADER, GOOD_CSV[0], row, GOOD_CSV[1]]
        kept = 1 if name == "duplicate-of-good" else 2  # a repeated id rejects both copies
        cases.append(Case(f"csv-{name}", roster(f"{name}.csv", lines), named, 1, kept=kept))
    return cases


def quiet_hours_cases() -> list[Case]:
    header = HEADER + ",quiet_hours_start,quiet_hours_end"
    rows = {
        "quiet-start-only": ("x:1,N,x@example.com,,UTC,,,22:00,", "quiet_hours_end"),
        "quiet-end-only": ("x:1,N,x@example.com,,UTC,,,,07:00", "quiet_hours_start"),
        "quiet-9pm": ("x:1,N,x@example.com,,UTC,,,9pm,07:00", "quiet_hours_start"),
        "quiet-25h": ("x:1,N,x@example.com,,UTC,,,25:00,07:00", "quiet_hours_start"),
    }
    return [
        Case(
            name,
            roster(f"{name}.csv", [header, GOOD_CSV[0] + ",,", row, GOOD_CSV[1] + ",,"]),
            named,
            1,
            kept=2,
        )
        for name, (row, named) in rows.items()
    ]


def jsonl_row_cases() -> list[Case]:
    """One bad line between two good ones (JSON Lines): line 2 rejected, lines 1 and 3 kept."""
    deep = "[" * 100_000 + "]" * 100_000
    bad_lines = {
        "nul-escaped": (jsonl(external_id="x\u0000"), "NUL"),
        "nul-raw": ('{"external_id": "x\x00", "email": "x@example.com"}', "NUL"),
        "nested-deep": ('{"external_id": "x:1", "name": ' + deep + "}", "nested"),
        "nested-object-value": (jsonl(name={"a": 1}), "name"),
        "list-value": (jsonl(external_id=["x"]), "external_id"),
        "array-line": ("[1, 2, 3]", "JSON object"),
        "string-line": ('"just text"', "JSON object"),
        "number-line": ("42", "JSON object"),
        "null-line": ("null", "JSON object"),
        "true-line": ("true", "JSON object"),
        "broken-json": ('{"external_id": "x:1",', "not valid JSON"),
        "single-quotes": ("{'external_id': 'x:1'}", "not valid JSON"),
        "unknown-field": (jsonl(shoe=9), "shoe"),
        "huge-int": ('{"external_id": ' + "9" * 5_000 + ', "email": "x@example.com"}', "digits"),
        "long-value": (jsonl(name="n" * 200_000), "name"),
        "tab-name": (jsonl(name="Ann\tLee"), "line 2, name: name contains a tab"),
        "id-spaces": (jsonl(external_id="   "), "blank"),
        "bad-phone": (jsonl(phone="12345"), "phone"),
        "bool-as-text": (jsonl(receive_sms="maybe"), "receive_sms"),
        "missing-phone": (jsonl(phone=None), "missing required field(s): phone"),
        "missing-name-email": (jsonl(name=None, email=None), "field(s): name, email"),
    }
    return [
        Case(
            f"jsonl-{name}",
            roster(f"{name}.jsonl", [GOOD_JSONL[0], line, GOOD_JSONL[1]]),
            named,
            1,
            kept=2,
        )
        for name, (line, named) in bad_lines.items()
    ]


def roster_file_cases() -> list[Case]:
    """Problems with the file as a whole: exit 2 before any row is looked at."""
    import_ = ("recipients", "import")
    return [
        Case("file-empty", raw_file("empty.csv", b"", *import_), "empty"),
        Case(
            "demo-roster-without-a-valid-row",
            raw_file("bad.csv", f"{HEADER}\nx 1,A,a@example.com,\n".encode(), "demo", "--roster"),
            "--roster bad.csv: no valid row to send to (1 rejected",
        ),
        Case("file-blank", raw_file("blank.csv", b"  \n\n", *import_), "empty"),
        Case(
            "file-missing-columns",
            raw_file("m.csv", b"external_id,name\nx,y\n", *import_),
            "missing column",
        ),
        Case(
            "file-unknown-column",
            raw_file("u.csv", (HEADER + ",shoe\n").encode(), *import_),
            "unknown column",
        ),
        Case(
            "file-latin1",
            raw_file("l.csv", (HEADER + "\nx:1,Jos\xe9,a@b.co,,,,\n").encode("latin-1"), *import_),
            "not UTF-8",
        ),
        Case("file-binary", raw_file("b.csv", bytes(range(256)), *import_), "not UTF-8"),
        Case("file-missing", lambda t: [*import_, str(t / "nope.csv")], "nope.csv"),
        Case("file-directory", lambda t: [*import_, str(t)], "cannot read"),
        Case(
            "file-column-twice-in-two-cases",
            raw_file("c.csv", (HEADER.replace("email", "email,EMAIL") + "\n").encode(), *import_),
            "column(s) named twice: email and EMAIL",
        ),
        Case(
            "file-header-broken-quote",
            raw_file("q.csv", b'"external_id,name\n', *import_),
            "header",
        ),
    ]


def usage_cases() -> list[Case]:
    """The command line itself: unknown commands and options, missing and malformed values."""
    cases = [
        Case("unknown-command", ["sned"], "sned"),
        Case("unknown-db-command", ["db", "downgrade"], "downgrade"),
        Case("unknown-recipients-command", ["recipients", "delete"], "delete"),
        Case("unknown-templates-command", ["templates", "edit"], "edit"),
        Case("unknown-audit-command", ["audit", "everything"], "everything"),
        Case("unknown-alarms-command", ["alarms", "remove"], "remove"),
        Case("send-no-template", ["send", "--to", KNOWN], "--template"),
        Case("send-template-no-value", ["send", "--to", KNOWN, "-t"], "-t"),
        Case("test-email-no-address", ["test-email"], "address"),
        Case("preview-no-name", ["templates", "preview"], "name"),
        Case("import-no-file", ["recipients", "import"], "file"),
        Case("json-takes-no-value", ["config", "--json=yes"], "--json"),
        Case("limit-zero", ["recipients", "list", "--limit", "0"], "--limit"),
        Case("limit-negative", ["recipients", "list", "--limit", "-1"], "--limit"),
        Case("limit-text", ["recipients", "list", "--limit", "ten"], "--limit"),
        Case("limit-too-big", ["recipients", "list", "--limit", "10001"], "--limit"),
        Case("limit-float", ["recipients", "list", "--limit", "1.5"], "--limit"),
        Case("offset-negative", ["recipients", "list", "--offset", "-1"], "--offset"),
        Case("offset-overflow", ["recipients", "list", "--offset", "9" * 20], "--offset"),
        Case("batch-size-text", ["deliver", "--batch-size", "lots"], "--batch-size"),
        Case("batch-size-zero", ["deliver", "--batch-size", "0"], "--batch-size"),
        Case("batch-size-negative", ["deliver", "--batch-size", "-5"], "--batch-size"),
        Case("batch-size-over", ["deliver", "--batch-size", "50001"], "--batch-size"),
        Case("batch-size-huge", ["deliver", "--batch-size", "9" * 30], "--batch-size"),
        Case("max-batches-zero", ["deliver", "--max-batches", "0"], "--max-batches"),
        Case("max-batches-over", ["deliver", "--max-batches", "100001"], "--max-batches"),
        Case("max-batches-text", ["deliver", "--max-batches", "all"], "--max-batches"),
        Case("redrive-status", ["redrive", "--status", "sent"], "--status"),
        Case("redrive-status-bogus", ["redrive", "--status", "bogus"], "--status"),
        Case("redrive-unknown-unasked", ["redrive", "--status", "unknown"], "--status"),
        Case("redrive-since-text", ["redrive", "--since", "soon"], "--since"),
        Case("redrive-until-text", ["redrive", "--until", "later"], "--until"),
        Case(
            "redrive-since-after-until",
            ["redrive", "--since", "2026-12-04", "--until", "2026-12-01"],
            "--since 2026-12-04 (2026-12-04 00:00 UTC) is not before --until 2026-12-01",
        ),
        Case(
            "redrive-since-is-until",
            ["redrive", "--since", "2026-12-01T08:00Z", "--until", "2026-12-01T08:00+00:00"],
            "--until",
        ),
        Case(
            "redrive-since-in-the-future",
            ["redrive", "--since", "2099-01-01"],
            "--since 2099-01-01 (2099-01-01 00:00 UTC) is in the future",
        ),
        Case(
            "redrive-since-before-year-one-in-utc",
            ["redrive", "--since", "0001-01-01T00:00+01:00"],
            "--since: '0001-01-01T00:00+01:00' is out of range once converted to UTC",
        ),
        Case(
            "redrive-until-after-9999-in-utc",
            ["redrive", "--until", "9999-12-31T23:59-01:00"],
            "--until: '9999-12-31T23:59-01:00' is out of range",
        ),
        Case("redrive-since-before-year-one", ["redrive", "--since", "23000000000h"], "--since"),
        Case("redrive-error-class", ["redrive", "--error-class", "confg"], "--error-class"),
        Case("redrive-id-101", ["redrive", "--redrive-id", "r" * 101], "--redrive-id"),
        Case("redrive-template-unknown", ["redrive", "--template", "nope"], "template 'nope'"),
        Case(
            "purge-template-unknown",
            ["purge", "--older-than", "1h", "--template", "nope"],
            "template 'nope'",
        ),
        Case("purge-older-than-text", ["purge", "--older-than", "abc"], "--older-than"),
        Case("purge-older-than-zero", ["purge", "--older-than", "0h"], "'0h' is no time at all"),
        Case("purge-older-than-800d", ["purge", "--older-than", "800d"], "--older-than"),
        Case("purge-channel", ["purge", "--older-than", "1h", "--channel", "fax"], "--channel"),
        Case("purge-priority", ["purge", "--older-than", "1h", "--priority", "max"], "--priority"),
        Case(
            "mute-recipient-129",
            ["recipients", "mute", "r" * 129, "--channel", "sms", "--reason", "x"],
            "error: recipient: String should have at most 128",
        ),
        Case(
            "mute-hours-zero",
            ["recipients", "mute", KNOWN, "--channel", "sms", "--reason", "x", "--hours", "0"],
            "--hours",
        ),
        Case("unmute-channel", ["recipients", "unmute", KNOWN, "--channel", "fax"], "--channel"),
        Case("redrive-channel", ["redrive", "--channel", "fax"], "--channel"),
        Case("redrive-id-text", ["redrive", "--id", "abc"], "--id"),
        Case("redrive-id-zero", ["redrive", "--id", "0"], "--id"),
        Case("redrive-id-overflow", ["redrive", "--id", "99999999999"], "--id"),
        Case("redrive-id-huge", ["redrive", "--id", "9" * 40], "--id"),
        Case("mute-with-value", ["audit", "loops", "--direct", "--mute=1"], "--mute"),
        Case("mark-read-neither", ["inbox", "mark-read", KNOWN], "--id N (repeatable) or --all"),
        Case("mark-read-both", ["inbox", "mark-read", KNOWN, "--id", "1", "--all"], "--all"),
        Case("mark-read-no-such-id", ["inbox", "mark-read", KNOWN, "--id", "99999"], "99999"),
        Case(  # SQLite: "a number or date is out of range", naming no option
            "mark-read-id-past-int",
            ["inbox", "mark-read", KNOWN, "--id", "99999999999999999999"],
            "--id",
        ),
    ]
    for command in (
        ["send"],
        ["deliver"],
        ["config"],
        ["redrive"],
        ["health"],
        ["recipients", "list"],
        ["templates", "list"],
        ["audit", "loops"],
        ["audit", "sms-cost"],
        ["audit", "failures"],
        ["db", "upgrade"],
        ["alarms", "install"],
        ["demo"],
        ["serve"],
    ):
        name = "-".join(command)
        cases.append(Case(f"unknown-option-{name}", [*command, "--bogus"], "--bogus"))
    return cases


def send_cases() -> list[Case]:
    """send and preview: parameters, contexts, templates and recipients checked before a flow."""
    send = ["send", "-t", "repair_assigned", "--to", KNOWN]
    good = '{"repair_id": "R-1", "unit_number": "12"}'
    deep = "[" * 100_000 + "]" * 100_000
    return [
        Case(
            "idempotency-key-151",
            [*send, "--context", good, "--idempotency-key", "k" * 151],
            "--idempotency-key",
        ),
        Case(
            "context-value-null",
            [*send, "--context", '{"repair_id": "R-1", "unit_number": null}'],
            "unit_number",
        ),
        Case(
            "idempotency-key-blank",
            [*send, "--context", good, "--idempotency-key", "  "],
            "--idempotency-key",
        ),
        Case(
            "idempotency-key-empty",  # an unset "$KEY": it sent with no key at all
            [*send, "--context", good, "--idempotency-key", ""],
            "--idempotency-key is empty",
        ),
        Case(
            "idempotency-key-10k",
            [*send, "--context", good, "--idempotency-key", "k" * 10_000],
            "--idempotency-key",
        ),
        Case(
            "priority-unknown", [*send, "--context", good, "--priority", "critical"], "--priority"
        ),
        Case("priority-upper", [*send, "--context", good, "--priority", "HIGH"], "--priority"),
        Case("template-empty", ["send", "-t", "", "--to", KNOWN], "--template"),
        Case("template-10k", ["send", "-t", "t" * 10_000, "--to", KNOWN], "--template"),
        Case("recipient-10k", ["send", "-t", "repair_assigned", "--to", "r" * 10_000], "--to"),
        Case("no-recipient", ["send", "-t", "repair_assigned"], "to"),
        Case("recipient-blank", ["send", "-t", "repair_assigned", "--to", "   "], "to"),
        Case("recipient-unknown", [*send, "--to", "nobody:1", "--context", good], "nobody:1"),
        Case(
            "recipient-all-skipped",
            [
                "send",
                "-t",
                "repair_assigned",
                "--to",
                "nobody:1",
                "--skip-unknown",
                "--context",
                good,
            ],
            "to",
        ),
        Case(
            "to-empty",
            ["send", "-t", "repair_assigned", "--to", "", "--context", good],
            "give at least one recipient id (on the command line: --to ID or --to-file FILE)",
        ),
        Case(
            "to-file-missing",
            ["send", "-t", "repair_assigned", "--to-file", "nope.txt"],
            "--to-file: cannot read nope.txt",
        ),
        Case(
            "to-file-empty",
            raw_file("ids.txt", b"", "send", "-t", "repair_assigned", "--to-file"),
            "empty",
        ),
        Case(
            "to-file-latin1",
            raw_file(
                "ids.txt",
                "t:\xe9\n".encode("latin-1"),
                "send",
                "-t",
                "repair_assigned",
                "--to-file",
            ),
            "not UTF-8",
        ),
        Case(
            "to-file-unknown",
            raw_file(
                "ids.txt",
                b"nobody:7\n",
                "send",
                "-t",
                "repair_assigned",
                "--context",
                good,
                "--to-file",
            ),
            "nobody:7",
        ),
        Case("template-unknown", ["send", "-t", "nope", "--to", KNOWN], "nope"),
        Case("template-path", ["send", "-t", "../../etc/passwd", "--to", KNOWN], "etc/passwd"),
        Case(
            "template-nested-name",
            ["send", "-t", "repair_assigned/meta.json", "--to", KNOWN],
            "repair_assigned/meta.json",
        ),
        Case(
            "context-nul",
            [*send, "--context", '{"repair_id": "R-\\u0000", "unit_number": "1"}'],
            "context.repair_id",
        ),
        Case("recipient-nul", ["send", "-t", "repair_assigned", "--to", "t:\x001"], "to"),
        Case(
            "idempotency-key-nul",
            [*send, "--context", good, "--idempotency-key", "k\x00"],
            "idempotency",
        ),
        Case("context-missing-var", [*send, "--context", '{"repair_id": "R-1"}'], "unit_number"),
        Case("context-empty-object", [*send, "--context", "{}"], "repair_id"),
        Case("context-broken", [*send, "--context", '{"repair_id": '], "--context"),
        Case("context-list", [*send, "--context", "[1, 2]"], "--context"),
        Case(
            "context-nan",
            [*send, "--context", '{"repair_id": NaN, "unit_number": "1"}'],
            "--context: NaN is not a JSON value",
        ),
        Case(
            "context-infinity",
            [*send, "--context", '{"repair_id": "R-1", "unit_number": -Infinity}'],
            "--context: -Infinity is not a JSON value",
        ),
        Case(
            "context-number-overflow",
            [*send, "--context", '{"repair_id": "R-1", "unit_number": {"n": [1E400]}}'],
            "context.unit_number.n[0]: is out of range for a number (inf)",
        ),
        Case(
            "context-repeated-key",
            [*send, "--context", '{"repair_id": "R-1", "unit_number": "1", "repair_id": "R-2"}'],
            "--context: key 'repair_id' given twice",
        ),
        Case(
            "context-recipient-key",
            [*send, "--context", '{"repair_id": "R-1", "unit_number": "1", "recipient": "Ann"}'],
            "context.recipient: templates get each recipient's own",
        ),
        Case("context-string", [*send, "--context", '"R-1"'], "--context"),
        Case("context-number", [*send, "--context", "7"], "--context"),
        Case("context-null", [*send, "--context", "null"], "--context"),
        Case("context-single-quotes", [*send, "--context", "{'repair_id': 1}"], "--context"),
        Case("context-deep", [*send, "--context", deep], "--context"),
        Case("context-huge-int", [*send, "--context", '{"a": ' + "9" * 5_000 + "}"], "--context"),
        Case(
            "context-too-big", [*send, "--context", json.dumps({"a": "x" * 1_000_001})], "--context"
        ),
        Case(
            "context-and-file",
            [*send, "--context", good, "--context-file", "c.json"],
            "--context-file",
        ),
        Case("context-file-missing", [*send, "--context-file", "nope.json"], "nope.json"),
        Case(
            "context-file-latin1",
            raw_file("c.json", '{"a": "\xe9"}'.encode("latin-1"), *send, "--context-file"),
            "--context-file",
        ),
        Case(
            "context-file-list",
            raw_file("c.json", b"[]", *send, "--context-file"),
            "--context-file",
        ),
        Case(
            "context-file-broken",
            raw_file("c.json", b"{\n\n  oops", *send, "--context-file"),
            "--context-file",
        ),
        Case(
            "sms-50000",
            [*send, "--context", json.dumps({"repair_id": "R" * 50_000, "unit_number": "1"})],
            "SMS",
        ),
        Case(
            "sms-1601-bytes",
            [*send, "--context", json.dumps({"repair_id": "é" * 800, "unit_number": "1"})],
            "1,600",
        ),
        Case("preview-unknown", ["templates", "preview", "nope"], "nope"),
        Case("preview-unknown-10k", ["templates", "preview", "p" * 10_000], "unknown template"),
        Case(
            "preview-context-broken",
            ["templates", "preview", "repair_assigned", "--context", "{"],
            "--context",
        ),
        Case(
            "preview-context-list",
            ["templates", "preview", "repair_assigned", "--context", "[]"],
            "--context",
        ),
        Case(  # as send refuses it: preview rendered the recipient's own and said nothing
            "preview-context-recipient-key",
            [
                "templates",
                "preview",
                "repair_assigned",
                "--context",
                '{"repair_id": "R-1", "unit_number": "1", "recipient": "x"}',
            ],
            "context.recipient: templates get each recipient's own",
        ),
        Case(
            "preview-missing-var",
            ["templates", "preview", "repair_assigned", "--context", '{"repair_id": 1}'],
            "unit_number",
        ),
        Case("test-email-bad-address", ["test-email", "not-an-address"], "not-an-address"),
        Case("test-email-empty", ["test-email", ""], "email"),
        Case("verify-sender-bad-address", ["ses", "verify-sender", "nope"], "nope"),
        Case(  # quoted back whole: it said 'bad'
            "verify-sender-two-words", ["ses", "verify-sender", "bad address"], "'bad address'"
        ),
    ]


def window_cases() -> list[Case]:
    """--window and --as-of of the four checks (run --direct: no Prefect needed to refuse)."""
    cases: list[Case] = []
    windows = {
        "zero": "0",
        "negative": "-1h",
        "text": "abc",
        "unit": "24x",
        "empty": "",
        "over-744h": "745h",
        "over-31d": "32d",
        "over-minutes": "44700m",
        "overflow": "99999999999d",
        "exponent": "1e400",
        "many-digits": "9" * 400,
    }
    as_ofs = {
        "garbage": "yesterday",
        "month-13": "2026-13-01",
        "year-1": "0001-01-01T00:00:00Z",
        "year-1-offset": "0001-01-01T00:00:00+01:00",
        "day-32": "2026-01-32T00:00:00Z",
        "future": "9999-01-01T00:00:00Z",  # nothing measured there: an empty report, exit 0
    }
    for check in ("sms-cost", "loops", "failures"):
        for name, value in windows.items():
            cases.append(
                Case(
                    f"{check}-window-{name}",
                    ["audit", check, "--direct", "--window", value],
                    "--window",
                )
            )
        for name, value in as_ofs.items():
            cases.append(
                Case(
                    f"{check}-as-of-{name}",
                    ["audit", check, "--direct", "--as-of", value],
                    "--as-of",
                )
            )
    for name in ("over-744h", "garbage-as-of", "year-1", "future"):
        option, value = {
            "over-744h": ("--window", "800h"),
            "garbage-as-of": ("--as-of", "soon"),
            "year-1": ("--as-of", "0001-01-01T00:00:00Z"),
            "future": ("--as-of", "9999-01-01T00:00:00Z"),
        }[name]
        cases.append(Case(f"health-{name}", ["health", "--direct", option, value], option))
    # Through Prefect (no --direct): the CLI refuses before a flow starts.
    cases.append(
        Case(
            "failures-year-1-flow",
            ["audit", "failures", "--as-of", "0001-01-01T00:00:00Z"],
            "--as-of",
        )
    )
    cases.append(Case("loops-window-flow", ["audit", "loops", "--window", "800h"], "--window"))
    return cases


def settings_cases() -> list[Case]:
    """A bad NOTIFY_ variable stops any command at start, naming the variable."""
    bad = {
        "NOTIFY_SES_RATE": ["fast", "0", "-1"],
        "NOTIFY_SNS_RATE": ["0", "many"],
        "NOTIFY_SENDER": ["ses"],
        "NOTIFY_DATABASE_URL": ["mysql://app:pw@db/notify", "not a url"],
        "NOTIFY_SMS_MIN_PRIORITY": ["critical"],
        "NOTIFY_SMS_PRICES": [
            "{not json",
            '{"US": "-0.01"}',
            '{"USA": "0.01"}',
            '{"US": "NaN"}',
            '["US"]',
        ],
        "NOTIFY_SMS_PRICE_USD": ["-0.00645", "free"],
        "NOTIFY_SMS_DAILY_CAP_USD": ["-1"],
        "NOTIFY_SMS_HOURLY_ALARM_USD": ["-20"],
        "NOTIFY_SMTP_PASSWORD": ["", "   "],
        "NOTIFY_SMTP_PORT": ["0", "70000", "smtp"],
        "NOTIFY_BATCH_SIZE": ["0", "50001"],
        "NOTIFY_LEASE_SECONDS": ["1", "9" * 30],
        "NOTIFY_RETRY_MAX_S": ["1e308"],
        "NOTIFY_RETRY_BASE_S": ["0", "inf"],
        "NOTIFY_SMTP_TIMEOUT_S": ["nan"],
        "NOTIFY_LOOP_MUTE_HOURS": ["99999999"],
        "NOTIFY_MAX_ATTEMPTS": ["0", "51"],
        "NOTIFY_SEND_CONCURRENCY": ["0"],
        "NOTIFY_EMAIL_FROM": ["nobody"],
        "NOTIFY_LOOP_THRESHOLD": ["-1"],
        "NOTIFY_ALERT_WEBHOOK_URL": ["ftp://hooks.example.com/x", "hooks.slack.com"],
        "NOTIFY_SMTP_STARTTLS": ["sometimes"],
        "NOTIFY_ALERT_ROUTING": [
            "P1=sms,log",
            "P9=sns",
            "P1",
            "P2=webhook;P3=email",
            "P1=sns;P1=log",
        ],
    }
    cases = []
    for variable, values in bad.items():
        for number, value in enumerate(values):
            cases.append(
                Case(
                    f"env-{variable.lower()}-{number}", ["config"], variable, env={variable: value}
                )
            )
    cases.append(
        Case(
            "env-templates-dir-missing",
            ["templates", "list"],
            "NOTIFY_TEMPLATES_DIR",
            env={"NOTIFY_TEMPLATES_DIR": "/nonexistent/templates"},
        )
    )
    return cases


def database_cases() -> list[Case]:
    """A database that cannot be used: one line, before any flow starts."""
    refused = "postgresql+psycopg2://app:pw-not-shown@127.0.0.1:1/notify"
    cases = []
    for command in (
        ["deliver"],
        ["recipients", "list"],
        ["audit", "failures"],
        ["audit", "loops", "--direct"],
        ["redrive"],
        ["send", "-t", "repair_assigned", "--to", KNOWN],
    ):
        name = "-".join(part.strip("-") for part in command[:2])
        cases.append(
            Case(
                f"db-unreachable-{name}",
                command,
                "cannot open the database",
                env={"NOTIFY_DATABASE_URL": refused},
            )
        )
        cases.append(
            Case(
                f"db-unmigrated-{name}",
                command,
                "notifyops db upgrade",
                env={"NOTIFY_DATABASE_URL": "sqlite:///fresh.db"},
            )
        )
    return cases


CASES = [
    *csv_row_cases(),
    *quiet_hours_cases(),
    *jsonl_row_cases(),
    *roster_file_cases(),
    *usage_cases(),
    *send_cases(),
    *window_cases(),
    *settings_cases(),
    *database_cases(),
]


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 150
    assert len({case.id for case in CASES}) == len(CASES), "case ids are unique"


@pytest.fixture
def sqlite_cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """cli_env on SQLite only, with one known recipient (t:1)."""
    engine = engine_for(sqlite_url)
    empty_tables(engine)
    for name in list(os.environ):
        if name.startswith("NOTIFY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NOTIFY_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("NOTIFY_SENDER", "memory")
    monkeypatch.chdir(tmp_path)
    known = RecipientRow(
        KNOWN, "Tech", "t1@example.com", "+12065550100", "UTC", True, True, None, None
    )
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=[known])
    with using(Runtime(load_settings(), engine=engine)):
        yield sqlite_url


def named(what: str, line: str) -> bool:
    """`what` is in the line; an option as a whole word (--status, not inside --statuses)."""
    if not what.startswith("-"):
        return what in line
    return re.search(rf"(?<![\w-]){re.escape(what)}(?![\w-])", line) is not None


def _recipients(url: str) -> int:
    with transaction(engine_for(url)) as session:
        return int(session.scalar(select(func.count()).select_from(Recipient)) or 0)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_is_one_line_with_the_right_exit_code(
    case: Case,
    sqlite_cli: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for variable, value in case.env.items():
        monkeypatch.setenv(variable, value)
    if case.env:
        reload_runtime()  # the next command reads the environment again
    args = case.args(tmp_path) if callable(case.args) else case.args

    code = main(args)

    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == case.code, f"exit {code}: {captured.err}"
    assert len(lines) == 1, f"one line on stderr, got {len(lines)}: {captured.err[:2000]}"
    assert "Traceback" not in captured.err + captured.out
    assert named(case.named, lines[0]), f"{case.named!r} not named in: {lines[0]}"
    assert len(lines[0]) < 1000, "the line is readable, not a dump of the input"
    if case.kept is not None:
        assert _recipients(sqlite_cli) == 1 + case.kept, "every valid row was imported"


def test_debug_keeps_the_traceback(sqlite_cli: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deliver", "--batch-size", "0", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: --batch-size")
