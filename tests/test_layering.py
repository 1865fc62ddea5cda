"""Imports point down: notifyops (CLI) -> flows -> tasks -> notify; notify/ never loads Prefect."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import notify
from tests.layering import violations

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_or_import_string_crosses_a_floor_upwards() -> None:
    assert [str(v) for v in violations(ROOT)] == []


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("notify", "from flows.dispatch import dispatch_notifications\n"),
        ("notify", "import tasks.dispatch\n"),
        ("notify", "import importlib\nimportlib.import_module('flows.dispatch')\n"),
        ("notify", "def f():\n    from notifyops.cli import main\n"),
        ("notify", "import prefect\n"),
        ("tasks", "from flows.params import DispatchParams\n"),
        ("flows", "x = __import__('notifyops.cli')\n"),
        ("flows", "from deployments.serve import main\n"),
    ],
)
def test_a_planted_violation_is_found(tmp_path: Path, package: str, source: str) -> None:
    for name in ("notify", "tasks", "flows", "notifyops", "deployments"):
        (tmp_path / name).mkdir()
    (tmp_path / package / "planted.py").write_text(source, encoding="utf-8")
    assert [v.path for v in violations(tmp_path)] == [f"{package}/planted.py"]


def test_downward_imports_are_allowed(tmp_path: Path) -> None:
    for name in ("notify", "tasks", "flows", "notifyops", "deployments"):
        (tmp_path / name).mkdir()
    (tmp_path / "notifyops" / "ok.py").write_text("from flows.dispatch import x\nimport notify\n")
    (tmp_path / "flows" / "ok.py").write_text("from tasks.dispatch import y\nimport prefect\n")
    (tmp_path / "deployments" / "ok.py").write_text("from flows.deliver import z\n")
    assert violations(tmp_path) == []


def _notify_modules() -> list[str]:
    names = ["notify"]
    for info in pkgutil.walk_packages(notify.__path__, prefix="notify."):
        if ".migrations" not in info.name:  # env.py runs only inside Alembic
            names.append(info.name)
    return names


def test_importing_every_notify_module_never_loads_prefect() -> None:
    modules = _notify_modules()
    assert "notify.bootstrap" in modules and "notify.db" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print(','.join(loaded[:5]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"notify/ loaded prefect modules: {result.stdout}"


def test_the_cli_help_loads_neither_prefect_nor_the_database_layer() -> None:
    script = (
        "import sys\n"
        "from notifyops.cli import main\n"
        "main(['--help'])\n"
        "heavy = [m for m in ('prefect', 'sqlalchemy', 'boto3', 'alembic') if m in sys.modules]\n"
        "print('LOADED=' + ','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "LOADED=\n" in result.stdout or result.stdout.rstrip().endswith("LOADED=")


@pytest.mark.parametrize("check", ["health", "audit sms-cost", "audit loops", "audit failures"])
def test_a_direct_check_never_loads_prefect(check: str, tmp_path: Path) -> None:
    """`--direct` is for when Prefect itself is down: the check runs without it, and starts
    without the seconds its import takes."""
    args = [*check.split(), "--direct", "--json"]
    script = (
        "import sys\n"
        "from notifyops.cli import main\n"
        f"code = main({args!r})\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print('EXIT=%s LOADED=%s' % (code, ','.join(loaded[:5])))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "NOTIFY_DATABASE_URL": f"sqlite:///{tmp_path / 'direct.db'}",
        "NOTIFY_SENDER": "memory",
        "NOTIFY_CLOUDWATCH_ENABLED": "false",
        "NOTIFY_STANDBY": "off",
    }
    subprocess.run(
        [sys.executable, "-m", "notifyops", "db", "upgrade"], cwd=ROOT, env=env, check=True
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert "LOADED=\n" in result.stdout, result.stdout + result.stderr[-2000:]
