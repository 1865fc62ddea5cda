"""Docs are tested: every `notifyops` command in docs/RUNBOOK.md's bash blocks runs and exits 0 or
1 (healthy or threshold breached), never 2 (bad input) or a crash."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from notifyops.cli import main
from tests.runtime import reload_runtime
from tests.test_monitoring_flows import crafted

ROOT = Path(__file__).resolve().parents[1]
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def runbook_commands() -> list[str]:
    text = (ROOT / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    lines = [line.strip() for block in BASH_BLOCK.findall(text) for line in block.splitlines()]
    return [line for line in lines if line.startswith("notifyops ")]


def test_the_runbook_covers_its_six_sections_with_commands() -> None:
    text = (ROOT / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    assert len(re.findall(r"^## [1-6]\. ", text, re.MULTILINE)) == 6
    assert len(runbook_commands()) >= 12


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the commands, not the database
def test_every_runbook_command_runs(
    flow_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SENDER", "aws")
    reload_runtime()
    crafted(flow_env)
    for command in runbook_commands():
        code = main(shlex.split(command)[1:])
        captured = capsys.readouterr()
        assert code in (0, 1), f"{command} exited {code}: {captured.err[-500:]}"
        assert "Traceback" not in captured.err, command
