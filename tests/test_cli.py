"""The `notifyops` command line: help everywhere, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer.main

from notifyops.cli import app, main
from tests.runtime import reload_runtime

SAMPLE = Path(__file__).resolve().parents[1] / "notify" / "samples" / "roster.csv"


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, (*prefix, name))
    return paths


ALL_COMMANDS = _command_paths(typer.main.get_command(app))


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "notifyops")
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage:" in text
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help, f"`notifyops {' '.join(path)}` has no help text"


def test_import_reports_rejected_rows_and_exits_1(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["recipients", "import", str(SAMPLE), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == report["valid"] + report["rejected"]
    assert report["rejected"] >= 1 and report["created"] == report["valid"]
    assert {"line", "column", "value", "reason"} <= set(report["errors"][0])
    assert main(["recipients", "list", "--json", "--limit", "500"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == report["valid"]


def test_dry_run_writes_nothing(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["db", "upgrade"])
    main(["recipients", "import", str(SAMPLE), "--dry-run"])
    assert "would import" in capsys.readouterr().out
    assert main(["recipients", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 0


def test_bad_input_is_one_line_and_exit_2(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["recipients", "import", str(empty)]) == 2
    captured = capsys.readouterr()
    assert "empty" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert len(captured.err.strip().splitlines()) == 1


def test_commands_refuse_an_unmigrated_database(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NOTIFY_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    reload_runtime()
    assert main(["recipients", "list"]) == 2
    assert "notifyops db upgrade" in capsys.readouterr().err


def test_bad_setting_stops_at_start_naming_the_variable(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SES_RATE", "lots")
    reload_runtime()
    assert main(["config"]) == 2
    assert "NOTIFY_SES_RATE" in capsys.readouterr().err


def test_config_masks_secrets(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "s3cret-pass")
    reload_runtime()
    assert main(["config", "--json"]) == 0
    shown = capsys.readouterr().out
    assert "s3cret-pass" not in shown
    assert json.loads(shown)["smtp_password"] == "********"


def test_test_email_prints_the_message_id_or_the_classified_error(
    cli_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SENDER", "aws")
    reload_runtime()
    assert main(["test-email", "admin@example.com", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provider_message_id"]

    monkeypatch.setenv("NOTIFY_EMAIL_FROM", "unverified@example.com")
    reload_runtime()
    assert main(["test-email", "admin@example.com"]) == 1
    shown = capsys.readouterr().out
    assert "MessageRejected" in shown and "fix:" in shown

    assert main(["test-email", "not-an-address"]) == 2
    assert "not-an-address" in capsys.readouterr().err


def test_templates_preview_shows_sms_segments(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["templates", "preview", "repair_assigned", "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["sms_segments"] == 1 and "TEST-001" in preview["subject"]
    assert main(["templates", "preview", "repair_assigned", "--context", '{"repair_id": 1}']) == 2
    assert "unit_number" in capsys.readouterr().err
