"""The import drawing of the repository, read from the source with `ast`.

Four floors, imports pointing down only: notifyops (the CLI) -> flows -> tasks -> notify. notify/
never imports prefect. `deployments/` stands beside the flows (it reads prefect.yaml and may load
flows, tasks and notify); only the CLI imports it. Every `import`, every `from ... import`, and
every string constant that names one of our modules (what importlib or __import__ would be given)
counts.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FLOORS = {"notify": 0, "tasks": 1, "flows": 2, "notifyops": 3}
BESIDE = {"deployments": 2}  # may import flows, tasks and notify
PACKAGES = {**FLOORS, **BESIDE}
FORBIDDEN_IN = {"notify": ("prefect",)}
_MODULE_STRING = re.compile(r"^(" + "|".join(PACKAGES) + r")(\.[A-Za-z_]\w*)+(:\w+)?$")


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    target: str
    how: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.how} {self.target}"


def violations(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:  # Alembic's env.py and versions run inside Alembic
                continue
            found += _check_file(root, package, path)
    return found


def _check_file(root: Path, package: str, path: Path) -> Iterator[Violation]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = str(path.relative_to(root))
    for line, target, how in _imports(tree):
        top = target.split(".")[0]
        if top in FORBIDDEN_IN.get(package, ()) or (
            top in PACKAGES and top != package and not _allowed(package, top)
        ):
            yield Violation(where, line, target, how)


def _allowed(importer: str, imported: str) -> bool:
    if imported in BESIDE:
        return importer == "notifyops"  # only the CLI (`notifyops serve`) reaches deployments/
    return FLOORS[imported] < PACKAGES[importer] or (
        importer in BESIDE and FLOORS[imported] <= BESIDE[importer]
    )


def _imports(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, "imports"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, "imports"
        elif isinstance(node, ast.Constant) and _names_a_module(node.value):
            yield node.lineno, str(node.value).strip().split(":")[0], "names in a string"


def _names_a_module(value: object) -> bool:
    return isinstance(value, str) and bool(_MODULE_STRING.match(value.strip()))
