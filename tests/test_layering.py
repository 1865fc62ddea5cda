"""Imports point down: flows -> tasks -> notify, and notify/ never loads Prefect."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import notify

ROOT = Path(__file__).resolve().parents[1]


def _notify_modules() -> list[str]:
    names = ["notify"]
    for info in pkgutil.walk_packages(notify.__path__, prefix="notify."):
        if ".migrations" not in info.name:  # env.py runs only inside Alembic
            names.append(info.name)
    return names


def test_importing_every_notify_module_never_loads_prefect() -> None:
    modules = _notify_modules()
    assert "notify.cli" in modules and "notify.db" in modules
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


def test_no_source_file_under_notify_imports_prefect_or_upper_layers() -> None:
    offenders = []
    for path in (ROOT / "notify").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith(("import prefect", "from prefect", "from flows", "from tasks")):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert offenders == []
