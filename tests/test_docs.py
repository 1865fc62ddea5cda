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


def test_the_runbook_gives_each_scheduled_deployment_its_prefect_yaml_cadence() -> None:
    """What is deployed is prefect.yaml: the runbook's "scheduled checks" row says the same."""
    from deployments.serve import load_deployments, scheduled

    text = (ROOT / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    (row,) = [line for line in text.splitlines() if line.startswith("| scheduled checks |")]
    for spec in scheduled(load_deployments()):
        assert f"`{spec['name']}` (" in row, f"{spec['name']} is not in the runbook's row"
        said = row.split(f"`{spec['name']}` (", 1)[1].split(")", 1)[0]
        minute = spec["schedules"][0]["cron"].split()[0]
        if minute == "*":
            assert said == "every minute", spec["name"]
        elif minute.startswith("*/"):
            assert said == f"{minute[2:]} min", spec["name"]
        else:
            assert said.startswith("hourly"), spec["name"]


def test_the_escalation_table_names_the_health_findings_at_their_severity() -> None:
    """A P1 `data-loss` or `runs-late` page, or a P3 `indexes` finding, was in no row but
    "P4 everything else"."""
    text = (ROOT / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip()[:2]: line for line in text.splitlines() if line.startswith("| P")
    }
    assert "`data-loss`" in rows["P1"] and "`runs-late`" in rows["P1"]
    assert "`indexes`" in rows["P3"]
