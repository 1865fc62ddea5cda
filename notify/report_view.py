"""A report's JSON shaped for people: scalar facts, findings, and its lists as tables.

Shared by the CLI (Rich tables) and the Prefect artifacts (Markdown). Reports carry PII only in
masked form, so anything here may be shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from notify.check_names import HEALTH_DATABASE_FACTS

HEADER_KEYS = (
    "as_of",
    "window_start",
    "window_hours",
    "severity",
    "breached",
    "findings",
    "alerts_unreached",  # the flow's artifact and the CLI say it on a line of its own
    "alerts_delivered",  # the same line says it
    "metrics_unpublished",  # the same
    "ad_hoc",  # the same
)
MAX_ROWS = 25
NONE = "none"  # not "-": a lone "-" in Markdown renders as a bullet
HOURLY = "hourly"  # one row per hour of the window: only hours with traffic are shown
SAME_AS = {"top_recipients_by_cost": "top_recipients"}  # omitted when identical
UNKNOWN = "unknown"  # a fact that could not be read: not "none", which reads as zero


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
    unread = HEALTH_DATABASE_FACTS if data.get("database_reachable") is False else ()
    for key, value in data.items():
        if key in HEADER_KEYS or key == "breaches" or _repeats(data, key):
            continue
        if value is None and key in unread:
            shaped.facts.append((key, UNKNOWN))
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            shaped.tables.append(_hourly(value) if key == HOURLY else _table(key, value))
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


def _repeats(data: dict[str, Any], key: str) -> bool:
    twin = SAME_AS.get(key)
    return twin is not None and data.get(key) == data.get(twin)


def _hourly(rows: list[dict[str, Any]]) -> tuple[str, list[str], list[list[str]]]:
    busy = [row for row in rows if row.get("count")]
    title, columns, body = _table(HOURLY, busy or rows[-1:])
    return f"{title}: {len(busy)} of {len(rows)} hours with traffic", columns, body


def _cell(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or NONE
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def cell(value: Any) -> str:
    """A value as one Markdown table cell: `|` escaped, newlines folded, never a lone `-`."""
    text = " ".join(_cell(value).split()).replace("|", "\\|")
    return NONE if text in ("", "-") else text


def _line(text: str) -> str:
    """A value on one Markdown line (a bullet): newlines folded."""
    return " ".join(text.split())


def markdown(title: str, data: dict[str, Any], notes: list[str] | None = None) -> str:
    shaped = view(data)
    lines = [f"# {_line(title)}: {shaped.severity}", ""]
    lines += [f"- **{_line(finding)}**" for finding in shaped.findings] or ["- no findings"]
    lines += [f"- {_line(note)}" for note in notes or []]
    lines += ["", "| fact | value |", "|---|---|"]
    lines += [f"| {cell(key)} | {cell(value)} |" for key, value in shaped.facts]
    for name, columns, rows in shaped.tables:
        lines += ["", f"## {_line(name)}", "", *markdown_table(columns, rows)]
    return "\n".join(lines) + "\n"


def markdown_table(columns: Sequence[Any], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: a header, then one line per row, every value a `cell`."""
    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
