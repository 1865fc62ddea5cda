"""The README's settings table, command reference and JSON keys are checked against the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from notify.settings import ENV_PREFIX, Settings
from notifyops.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + len(title))
    return README[start : end if end > 0 else None]


def _first_cells(section: str) -> list[str]:
    return [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| `")]


def _documented_variables() -> set[str]:
    names: set[str] = set()
    for cell in _first_cells(_section("## Settings")):
        parts = re.findall(r"`([A-Z_]+)`", cell)
        base = parts[0]
        names.add(base)
        for suffix in parts[1:]:  # `NOTIFY_SMTP_HOST` / `_PORT` -> NOTIFY_SMTP_PORT
            names.add(base.rsplit("_", suffix.count("_"))[0] + suffix)
    return names


def test_every_setting_is_in_the_readme_table_and_nothing_else() -> None:
    in_code = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert _documented_variables() == in_code


def _commands(group: Any, prefix: str = "notifyops") -> set[str]:
    found = set()
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (that may run on its own, like `receipts`)
            found |= _commands(command, f"{prefix} {name}")
            if getattr(command, "invoke_without_command", False):
                found.add(f"{prefix} {name}")
        else:
            found.add(f"{prefix} {name}")
    return found


def test_every_command_is_in_the_reference_and_nothing_else() -> None:
    root = typer.main.get_command(app)
    documented = set()
    for cell in _first_cells(_section("## Command reference")):
        words = re.match(r"`(notifyops(?:\s[a-z][a-z-]*)+)", cell)
        if words:  # the JSON keys table below names reports without `notifyops`
            documented.add(words.group(1).strip())
    assert documented == _commands(root)


def _json_keys(report: str) -> list[str]:
    row = next(
        line
        for line in _section("## Command reference").splitlines()
        if line.startswith(f"| `{report}` |")
    )
    return re.findall(r"`([a-z_0-9]+)`", row.split("|")[2])


def _documented_top_level(report: str) -> set[str]:
    """The keys named outside parentheses: the top level of the report."""
    row = next(
        line
        for line in _section("## Command reference").splitlines()
        if line.startswith(f"| `{report}` |")
    )
    return _top_level(row.split("|")[2])


def _top_level(text: str) -> set[str]:
    depth, top = 0, []
    for char in text:
        depth += char == "("
        depth -= char == ")"
        top.append(char if depth == 0 else " ")
    return set(re.findall(r"`([a-z_0-9]+)`", "".join(top)))


def _report_json(report: str) -> dict[str, Any]:
    from notify.delivery import BatchReport
    from notify.enqueue import EnqueueResult
    from notify.ids import NotificationIds
    from notify.outbox import Leftovers, RescueCounts
    from notify.summaries import DeliverySummary, DispatchSummary
    from notifyops.console import to_jsonable

    delivery = DeliverySummary.of(
        BatchReport(), batches=0, rescued=RescueCounts(0, 0), left=Leftovers(0, 0, 0)
    )
    enqueue = EnqueueResult("r", NotificationIds([1]), False, (), {"email": {"pending": 1}})
    values = {
        "deliver": delivery,
        "send": DispatchSummary(enqueue=enqueue, delivery=delivery),
    }
    return to_jsonable(values[report])  # type: ignore[no-any-return]


@pytest.mark.parametrize("report", ["send", "deliver"])
def test_the_documented_json_keys_are_the_keys_printed(report: str) -> None:
    printed = _report_json(report)
    assert _documented_top_level(report) == set(printed)
    if report == "send":
        assert set(_json_keys("send")) >= set(printed["enqueue"])


COMMON = {
    "as_of",
    "window_start",
    "window_hours",
    "severity",
    "findings",
    "breaches",
    "breached",
    "alerts_unreached",
    "alerts_delivered",
    "metrics_unpublished",
    "ad_hoc",
}
CHECK_COMMANDS = {
    "audit sms-cost": ["audit", "sms-cost"],
    "audit loops": ["audit", "loops", "--no-mute"],
    "audit failures": ["audit", "failures"],
    "health": ["health"],
}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("report", list(CHECK_COMMANDS))
def test_the_documented_report_keys_are_the_keys_printed(
    cli_env: str, capsys: pytest.CaptureFixture[str], report: str
) -> None:
    import json

    from notifyops.cli import main
    from tests.factories import AS_OF
    from tests.test_monitoring_flows import crafted

    crafted(cli_env)
    main([*CHECK_COMMANDS[report], "--as-of", AS_OF.isoformat(), "--json", "--direct"])
    printed = set(json.loads(capsys.readouterr().out))
    assert _documented_top_level(report) | COMMON == printed


def _roster_of_one() -> Path:
    """A roster file holding tech:1, in the working directory cli_env gives."""
    import json

    from tests.test_dispatch import tech

    roster = Path("roster.jsonl")
    roster.write_text(json.dumps(tech(1).as_values()) + "\n")
    return roster


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_documented_import_keys_are_the_keys_printed(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from notifyops.cli import main

    assert main(["recipients", "import", str(_roster_of_one()), "--dry-run", "--json"]) == 0
    printed = set(json.loads(capsys.readouterr().out))
    assert _documented_top_level("recipients import") == printed


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_documented_mute_and_unmute_keys_are_the_keys_printed(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The row names the keys both print, then `mute:` and `unmute:` each its own."""
    import json

    from notifyops.cli import main

    assert main(["recipients", "import", str(_roster_of_one())]) == 0
    capsys.readouterr()
    mute = ["recipients", "mute", "tech:1", "--channel", "sms", "--reason", "test", "--json"]
    assert main(mute) == 0
    muted = set(json.loads(capsys.readouterr().out))
    assert main(["recipients", "unmute", "tech:1", "--json"]) == 0
    unmuted = set(json.loads(capsys.readouterr().out))
    row = next(line for line in README.splitlines() if line.startswith("| `recipients mute`"))
    both, mute_part, unmute_part = map(_top_level, re.split(r"; (?:un)?mute: ", row.split("|")[2]))
    assert both | mute_part == muted
    assert both | unmute_part == unmuted


def test_the_readmes_first_command_runs_the_demo_end_to_end(
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`./scripts/demo` is `notifyops demo` on embedded defaults: a SQLite file in the working
    directory, moto started in the process, the sample roster with its bad rows. (Here on the
    session's Prefect API: an ephemeral one would cost its start-up again.)"""
    import os

    from notify.bootstrap import Runtime, using
    from notify.settings import load_settings
    from notify.standin import FAKE_CREDENTIALS
    from notifyops.cli import main

    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) or name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", *FAKE_CREDENTIALS):
        monkeypatch.setenv(name, "")  # what the stand-in sets goes away with the test
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with using(Runtime(load_settings())):
        assert main(["demo"]) == 0
    shown = capsys.readouterr().out
    assert "rejected" in shown and "line " in shown, "the sample roster's bad rows are shown"
    assert "What happened, per channel and status" in shown
    received = re.search(r"the AWS stand-in received (\d+) emails and (\d+) SMS", shown)
    assert received is not None, shown
    assert int(received.group(1)) > 0 and int(received.group(2)) > 0
    assert (tmp_path / "notifyops.db").exists()
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")  # until the teardown
