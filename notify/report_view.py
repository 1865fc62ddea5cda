"""A report's JSON shaped for people: scalar facts, findings, and its lists as tables.

Shared by the CLI (Rich tables) and the Prefect artifacts (Markdown). Reports carry PII only in
masked form, so anything here may be shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEADER_KEYS = ("as_of", "window_start", "window_hours", "severity", "breached", "findings")
MAX_ROWS = 25


@dataclass
class ReportView:
    severity: str
    breaches: list[str]
    findings: list[str]
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)


def view(data: dict[str, Any]) -> ReportView:
    shaped = ReportView(
        severity=str(data.get("severity", "")),
        breaches=[str(b) for b in data.get("breaches", [])],
        findings=[f"{f['severity']} {f['code']}: {f['message']}" for f in data.get("findings", [])],
    )
    shaped.facts.append(("window", f"{data.get('window_start')} .. {data.get('as_of')}"))
    for key, value in data.items():
        if key in HEADER_KEYS or key == "breaches":
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            shaped.tables.append(_table(key, value))
        elif isinstance(value, dict):
            shaped.facts.extend((f"{key}.{k}", _cell(v)) for k, v in value.items())
        else:
            shaped.facts.append((key, _cell(value)))
    return shaped


def _table(name: str, rows: list[dict[str, Any]]) -> tuple[str, list[str], list[list[str]]]:
    columns = list(rows[0])
    body = [[_cell(row.get(column)) for column in columns] for row in rows[:MAX_ROWS]]
    title = name if len(rows) <= MAX_ROWS else f"{name} (first {MAX_ROWS} of {len(rows)})"
    return title, columns, body


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown(title: str, data: dict[str, Any], notes: list[str] | None = None) -> str:
    shaped = view(data)
    lines = [f"# {title}: {shaped.severity}", ""]
    lines += [f"- **{finding}**" for finding in shaped.findings] or ["- no findings"]
    lines += [f"- {note}" for note in notes or []]
    lines += ["", "| fact | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in shaped.facts]
    for name, columns, rows in shaped.tables:
        lines += ["", f"## {name}", "", "| " + " | ".join(columns) + " |"]
        lines += ["|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
