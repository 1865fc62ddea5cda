"""An action's result shaped for people: facts, counts per filter value, and its lists as tables;
as Markdown for the Prefect artifact (addresses are masked in the results already)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_ROWS = 25


@dataclass
class ActionView:
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)


def action_view(data: dict[str, Any]) -> ActionView:
    shaped = ActionView()
    matched = data.get("matched")
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            shaped.tables.append(_table(key, value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            shaped.tables += [
                _counts(f"{key} by {name}", name, v, matched) for name, v in value.items() if v
            ]
        elif isinstance(value, dict):
            shaped.facts += [(f"{key}.{k}", cell(v)) for k, v in value.items()]
        else:
            shaped.facts.append((key, cell(value)))
    return shaped


def _table(name: str, rows: list[dict[str, Any]]) -> tuple[str, list[str], list[list[str]]]:
    columns = list(rows[0])
    body = [[cell(row.get(column)) for column in columns] for row in rows[:MAX_ROWS]]
    return name, columns, body


def _counts(
    title: str, name: str, values: dict[str, Any], matched: Any = None
) -> tuple[str, list[str], list[list[str]]]:
    """One row per value; when the counts are only the largest values (of `matched` rows), a
    last row with the rows the other values hold, so the table never looks complete when cut."""
    rows = [[str(k), cell(v)] for k, v in values.items()]
    listed = sum(v for v in values.values() if isinstance(v, int))
    if isinstance(matched, int) and listed < matched:
        rows.append([f"({len(values)} largest shown; others)", f"{matched - listed:,}"])
    return title, [name, "rows"], rows


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    return str(value)


def action_markdown(title: str, data: dict[str, Any], notes: list[str]) -> str:
    shaped = action_view(data)
    lines = [f"# {title}", "", *[f"- {note}" for note in notes]]
    lines += ["", "| fact | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in shaped.facts]
    for name, columns, rows in shaped.tables:
        lines += ["", f"## {name}", "", "| " + " | ".join(columns) + " |"]
        lines += ["|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
