"""Tables for the terminal and docs/PERFORMANCE.md, and the --json summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.common import PeerResult, Scenario
from bench.suite import SMALL, SuiteResult

NAMES = {
    "notifyops": "notifyops (library)",
    "notifyops_flows": "notifyops (Prefect flows)",
    "celery": "Celery + Redis",
    "naive_prefect": "naive Prefect",
}
ORDER = ("notifyops", "notifyops_flows", "celery", "naive_prefect")
OURS = ("notifyops", "notifyops_flows")
PEERS = ("celery", "naive_prefect")


def peer_table(suite: SuiteResult, plan: Sequence[Scenario]) -> str:
    lines = [
        "| scenario | peer | messages | enqueue msg/s | e2e msg/s | achieved email / SMS msg/s "
        "| duplicates | missing | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for scenario in plan:
        for peer in ORDER:
            r = suite.get(peer, scenario.name)
            if r is not None:
                lines.append(_row(scenario, r))
    return "\n".join(lines)


def _row(scenario: Scenario, r: PeerResult) -> str:
    achieved = " / ".join(f"{r.achieved.get(c, 0):,.1f}" for c in ("email", "sms"))
    if scenario.rate:
        share = min(r.achieved.values(), default=0.0) / scenario.rate
        achieved += f" of {scenario.rate:g} ({100 * share:.0f}%)"
    return (
        f"| {scenario.name} | {NAMES[r.peer]} | {r.messages:,} | {r.enqueue_per_s:,.0f} | "
        f"{r.e2e_per_s:,.1f} | {achieved} | {r.duplicates} | {r.missing} | "
        f"{r.peak_rss_mb:,.0f} |"
    )


def runs_lines(suite: SuiteResult, plan: Sequence[Scenario]) -> str:
    """Every run of a repeated peer (runs shorter than bench.suite.SHORT_RUN_S), in order."""
    lines = []
    with_steal = with_pace = False  # results saved before runs recorded them have none
    for scenario in plan:
        for peer in ORDER:
            r = suite.get(peer, scenario.name)
            runs = r.extra.get("runs_e2e_per_s") if r is not None else None
            if r is not None and runs and len(runs) > 1:
                stolen = r.extra.get("runs_steal_pct") or [None] * len(runs)
                paces = r.extra.get("runs_host_pace_ms") or [None] * len(runs)
                with_steal = with_steal or stolen[0] is not None
                with_pace = with_pace or paces[0] is not None
                cells = [_run_cell(*run) for run in zip(runs, stolen, paces, strict=True)]
                rates = " / ".join(cells)
                lines.append(f"- {scenario.name}, {NAMES[peer]}: {rates}")
    if not lines:
        return ""
    steal = (
        ", each with the share of the host's CPU time stolen by its hypervisor during it"
        if with_steal
        else ""
    ) + (" and the host's pace (bench/pace.py: lower is faster)" if with_pace else "")
    return (
        f"Runs under 10 s, three per peer (e2e msg/s, in order{steal}; the table shows the "
        "median):\n\n" + "\n".join(lines) + "\n"
    )


def _run_cell(rate: float, steal: float | None, pace: float | None = None) -> str:
    notes = []
    if steal is not None:
        notes.append(f"steal {steal:g}%")
    if pace is not None:
        notes.append(f"pace {pace:g} ms")
    return f"{rate:,.0f}" + (f" ({', '.join(notes)})" if notes else "")


def ratio_table(suite: SuiteResult, plan: Sequence[Scenario]) -> str:
    lines = [
        "| scenario | e2e ratio | ÷ Celery + Redis | ÷ naive Prefect |",
        "|---|---|---:|---:|",
    ]
    for scenario in plan:
        for ours in OURS:
            mine = suite.get(ours, scenario.name)
            if mine is None:
                continue
            cells = [_ratio(mine, suite.get(peer, scenario.name)) for peer in PEERS]
            lines.append(f"| {scenario.name} | {NAMES[ours]} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _ratio(mine: PeerResult, other: PeerResult | None) -> str:
    if other is None or other.e2e_per_s == 0:
        return "n/a"
    return f"{mine.e2e_per_s / other.e2e_per_s:.2f}x"


def ratio(mine: PeerResult | None, other: PeerResult | None) -> float | None:
    if mine is None or other is None or other.e2e_per_s == 0:
        return None
    return round(mine.e2e_per_s / other.e2e_per_s, 2)


def summary_json(suite: SuiteResult, scenario: str = "zero") -> dict[str, Any]:
    """The --json object: the zero-latency scenario; `notifyops` is the product (its flows)."""
    flows = suite.get("notifyops_flows", scenario)
    library = suite.get("notifyops", scenario)
    celery = suite.get("celery", scenario)
    naive = suite.get("naive_prefect", scenario)
    headline = flows or library
    out: dict[str, Any] = {
        "notifyops": headline.as_json() if headline else None,
        "celery": celery.as_json() if celery else None,
        "naive_prefect": naive.as_json() if naive else None,
        "ratios": {
            "e2e_vs_celery": ratio(headline, celery),
            "e2e_vs_naive_prefect": ratio(headline, naive),
            "library_e2e_vs_celery": ratio(library, celery),
            "library_e2e_vs_naive_prefect": ratio(library, naive),
        },
        "notifyops_library": library.as_json() if library else None,
        "scenario": scenario,
        "small_dispatch": small_dispatch(suite),
    }
    return out


def small_dispatch(suite: SuiteResult) -> dict[str, Any] | None:
    """A dispatch of SMALL notifications: seconds end to end (median run) per notifyops peer, and
    what the flows add: a cost per dispatch, whatever its size."""
    found = {peer: suite.get(peer, SMALL.name) for peer in OURS}
    if not any(found.values()):
        return None
    out: dict[str, Any] = {
        "notifications": SMALL.notifications,
        **{f"{peer}_e2e_s": round(r.e2e_s, 3) for peer, r in found.items() if r},
    }
    library, flows = found["notifyops"], found["notifyops_flows"]
    if library and flows:
        out["flows_add_s"] = round(flows.e2e_s - library.e2e_s, 3)
    return out


CPU_PARTS = {
    "peer": "its own processes",
    "postgres": "PostgreSQL",
    "prefect_server": "Prefect server",
}


def cpu_line(suite: SuiteResult, scenario: str = "zero") -> str | None:
    """The CPU time each peer's run used (the median run), by part (bench/cpu.py), the cores
    that kept busy over the run, and the CPU per 1,000 messages: how close a run is to what the
    machine can do, and whose work it is."""
    cells = []
    for peer in ORDER:
        r = suite.get(peer, scenario)
        used = r.extra.get("cpu_s") if r is not None else None
        if r is None or not used:
            continue
        total = sum(used.values())
        parts = " + ".join(f"{CPU_PARTS.get(part, part)} {s:.2f}" for part, s in used.items())
        busy = total / r.e2e_s if r.e2e_s > 0 else 0.0
        per_1000 = 1000 * total / r.messages if r.messages else 0.0
        cells.append(
            f"{NAMES[peer]} {parts} = {total:.2f} s ({busy:.1f} cores busy; "
            f"{per_1000:.3f} s per 1,000 messages)"
        )
    if not cells:
        return None
    head = f"- CPU time per run, `{scenario}` (the median run; bench/cpu.py): "
    return head + "; ".join(cells) + "."


def machine_lines(info: dict[str, Any]) -> list[str]:
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    return [
        f"- Machine: {info['cores']} cores ({info['cpu']}), {info['ram_gib']} GiB RAM, "
        f"{info['os']}",
        f"- Code: notifyops at commit {info.get('revision', '?')}",
        f"- Python {info['python']}; PostgreSQL {info['postgres']}; Redis {info['redis']}",
        f"- Packages: {packages}",
        f"- Load average (1, 5, 15 min) before: {info['load_before']}, "
        f"after: {info.get('load_after', '?')}; the machine is shared, so other jobs may run "
        "during a benchmark.",
    ]
