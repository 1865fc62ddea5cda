"""Profile the notifyops hot path, enqueue and deliver separately, at zero provider latency.

    python -m bench.hotpath [--notifications 5000] [--profiler auto|py-spy|cprofile] [--what-if]

Per phase: the wall time per message without a profiler (the orchestrator's cost: the provider
takes no time), then where that time goes. py-spy (sampling, wall clock with --idle, main thread)
is used when installed, cProfile otherwise (it inflates pure-Python code several times over).
`--what-if` runs the same again with more provider calls in flight (send concurrency 64 and 256;
the window of rows in `sending`, NOTIFY_SEND_WINDOW, stays at its default), to show what more
sender threads cost at zero latency; the library is not modified.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, Scenario, log, prepare_database, reset_outbox, scratch_database

PHASE_ROOTS = {"enqueue": "enqueue_request", "deliver": "deliver_all"}
# "concurrencyN": N provider calls in flight (the default is 8)
VARIANTS = ("current", "concurrency64", "concurrency256")
TOP = 12
TIMING_RUNS = 2


@dataclass
class PhaseProfile:
    phase: str
    messages: int
    seconds: float
    inclusive: list[tuple[str, float]] = field(default_factory=list)  # function, % of phase
    by_package: list[tuple[str, float]] = field(default_factory=list)  # where self time lands

    @property
    def ms_per_message(self) -> float:
        return 1000 * self.seconds / self.messages


# --- the child: one enqueue and one delivery, timed -----


def child(variant: str, url: str, notifications: int, concurrency: int, cprofile_out: str) -> None:
    from bench.ledger import LedgerSender
    from bench.notifyops_peer import (
        bench_settings,
        deliver_all,
        enqueue_request,
        make_deliverer,
        send_request,
    )
    from notify.db import make_engine
    from notify.rendering import TemplateCatalog

    calls = re.search(r"concurrency(\d+)$", variant)
    in_flight = int(calls[1]) if calls else concurrency
    scenario = Scenario("profile", 0.0, None, in_flight, notifications)
    engine = make_engine(url)
    settings, catalog = bench_settings(url, scenario), TemplateCatalog()
    catalog.render  # noqa: B018 - compiled on first use, inside the phase like in production
    ledger = Path(tempfile.mkdtemp(prefix="notifyops-hotpath-"))
    sender = LedgerSender(ledger)
    request = send_request(notifications, f"hotpath-{variant}")
    timings = {}
    for phase, work in (
        ("enqueue", lambda: enqueue_request(engine, settings, catalog, request)),
        ("deliver", lambda: deliver_all(make_deliverer(engine, settings, sender, None))),
    ):
        profiler = cProfile.Profile() if cprofile_out else None
        started = time.perf_counter()
        if profiler:
            profiler.runcall(work)
            profiler.dump_stats(f"{cprofile_out}.{phase}")
        else:
            work()
        timings[phase] = time.perf_counter() - started
    sender.close()
    shutil.rmtree(ledger, ignore_errors=True)
    engine.dispose()
    print(json.dumps(timings), flush=True)


# --- the parent -----


def profile(
    url: str,
    notifications: int,
    profiler: str,
    what_if: bool,
    concurrency: int = 8,
    variants: tuple[str, ...] = VARIANTS,
) -> dict[str, Any]:
    """Timings and profiles of each phase, for the default window and (what_if) larger ones."""
    chosen = _profiler(profiler)
    results: dict[str, Any] = {
        "profiler": chosen,
        "notifications": notifications,
        "messages": 2 * notifications,
        "variants": {},
    }
    for variant in variants if what_if else ("current",):
        timings: dict[str, float] = {}
        for _ in range(TIMING_RUNS):  # best of: the machine is shared
            reset_outbox(url)
            run = _run_child(variant, url, notifications, concurrency, None)
            timings = {p: min(run[p], timings.get(p, run[p])) for p in PHASE_ROOTS}
        reset_outbox(url)
        phases = _profiled(chosen, variant, url, notifications, concurrency)
        results["variants"][variant] = {
            phase: _as_dict(phases[phase], timings[phase], 2 * notifications)
            for phase in PHASE_ROOTS
        }
        for phase in PHASE_ROOTS:
            ms = 1000 * timings[phase] / (2 * notifications)
            log(f"hotpath {variant} {phase}: {ms:.3f} ms/message")
    return results


def _as_dict(profile: PhaseProfile, seconds: float, messages: int) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "ms_per_message": 1000 * seconds / messages,
        "profiled_seconds": profile.seconds,
        "inclusive": profile.inclusive,
        "by_package": profile.by_package,
    }


def _profiler(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    return "py-spy" if _py_spy() else "cprofile"


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _child_command(
    variant: str, url: str, notifications: int, concurrency: int, cprofile_out: str | None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.hotpath",
        "--child",
        variant,
        "--url",
        url,
        "--notifications",
        str(notifications),
        "--concurrency",
        str(concurrency),
        "--cprofile-out",
        cprofile_out or "",
    ]


def _run_child(
    variant: str,
    url: str,
    notifications: int,
    concurrency: int,
    cprofile_out: str | None,
    prefix: list[str] | None = None,
) -> dict[str, float]:
    command = [
        *(prefix or []),
        *_child_command(variant, url, notifications, concurrency, cprofile_out),
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"hotpath child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1]))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _profiled(
    profiler: str, variant: str, url: str, notifications: int, concurrency: int
) -> dict[str, PhaseProfile]:
    with tempfile.TemporaryDirectory(prefix="notifyops-hotpath-") as tmp:
        if profiler == "py-spy":
            raw = Path(tmp) / "stacks.txt"
            spy = [
                str(_py_spy()),
                "record",
                "--idle",
                "--threads",
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(raw),
                "--",
            ]
            _run_child(variant, url, notifications, concurrency, None, prefix=spy)
            return _from_py_spy(raw.read_text(), 2 * notifications)
        out = str(Path(tmp) / "profile")
        _run_child(variant, url, notifications, concurrency, out)
        return {
            phase: _from_cprofile(f"{out}.{phase}", phase, 2 * notifications)
            for phase in PHASE_ROOTS
        }


# --- reading py-spy's raw stacks -----

_LINE = re.compile(r":\d+\)$")


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    frames = stack.split(";")[1:]  # the first element names the thread
    return [_LINE.sub(")", frame) for frame in frames], int(count)


def _from_py_spy(raw: str, messages: int) -> dict[str, PhaseProfile]:
    phases = {}
    samples = [_frames(line) for line in raw.splitlines() if line.strip()]
    for phase, root in PHASE_ROOTS.items():
        inside = [
            (f[f.index(m) + 1 :], n)
            for f, n in samples
            for m in [_root_index(f, root)]
            if m is not None
        ]
        total = sum(n for _, n in inside) or 1
        inclusive: Counter[str] = Counter()
        packages: Counter[str] = Counter()
        for frames, n in inside:
            for name in set(frames):
                inclusive[name] += n
            packages[_package(frames[-1]) if frames else "notify (phase root)"] += n
        phases[phase] = PhaseProfile(
            phase,
            messages,
            total / 250,
            _top(inclusive, total, _interesting),
            _top(packages, total, lambda _: True),
        )
    return phases


def _root_index(frames: list[str], root: str) -> str | None:
    return next((frame for frame in frames if frame.startswith(f"{root} (")), None)


def _top(counts: Counter[str], total: int, keep: Any) -> list[tuple[str, float]]:
    ranked = [
        (_short(name) if "(" in name else name, 100.0 * n / total)
        for name, n in counts.most_common()
        if keep(name)
    ]
    return ranked[:TOP]


def _interesting(name: str) -> bool:
    """notify/ functions and the calls that wait on PostgreSQL, render, or parse phones."""
    return (
        "notify/" in name
        or any(f"{call} (" in name for call in ("do_execute", "do_executemany", "do_commit"))
        or ("jinja2" in name and "render" in name)
        or (name.startswith("parse (") and "phonenumbers" in name)
    )


def _package(frame: str) -> str:
    path = "/" + frame[frame.find("(") + 1 : -1].lstrip("/")
    if "sqlalchemy/engine/default.py" in path and frame.startswith(("do_", "_do")):
        return "PostgreSQL round trip (psycopg2 call, waiting)"
    for package in ("sqlalchemy", "jinja2", "phonenumbers", "psycopg2", "pydantic", "concurrent"):
        if f"/{package}/" in path:
            return package
    if "/notify/" in path:
        return "notify"
    if "/prefect/" in path:
        return "prefect"
    if "/bench/" in path:
        return "bench (ledger sender)"
    return "stdlib/other"


def _short(name: str) -> str:
    func, _, path = name.partition(" (")
    path = path.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})"


# --- reading cProfile -----


def _from_cprofile(path: str, phase: str, messages: int) -> PhaseProfile:
    stats: Any = pstats.Stats(path).stats  # type: ignore[attr-defined]  # (file, line, func) -> (cc, nc, tt, ct, callers)
    total = max(ct for _, _, _, ct, _ in stats.values())
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for (file, _line, func), (_cc, _nc, tt, ct, _callers) in stats.items():
        name = f"{func} ({file})"
        inclusive[name] = max(inclusive[name], int(ct * 1e6))
        packages[_package(name)] += int(tt * 1e6)
    scale = int(total * 1e6)
    return PhaseProfile(
        phase,
        messages,
        total,
        _top(inclusive, scale, _interesting),
        _top(packages, scale, lambda _: True),
    )


# --- report -----


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"{results['messages']:,} messages ({results['notifications']:,} notifications), "
        f"zero latency, one deliverer, profiler {results['profiler']}.",
        "",
    ]
    lines += ["| variant | phase | ms/message | messages/s |", "|---|---|---:|---:|"]
    for variant, phases in results["variants"].items():
        for phase, values in phases.items():
            ms = values["ms_per_message"]
            lines.append(f"| {variant} | {phase} | {ms:.3f} | {1000 / ms:,.0f} |")
    for variant, phase in _breakdowns(list(results["variants"])):
        values = results["variants"][variant][phase]
        lines += ["", f"**{variant}, {phase}**: share of the phase's wall time", ""]
        lines += _pairs("function (inclusive)", values["inclusive"])
        lines += ["", *_pairs("where the time lands (self)", values["by_package"])]
    return "\n".join(lines)


def _breakdowns(variants: list[str]) -> list[tuple[str, str]]:
    """The defaults, and the deliverer with the most calls in flight."""
    shown = [("current", "enqueue"), ("current", "deliver")]
    if len(variants) > 1:
        shown.append((variants[-1], "deliver"))
    return [(v, p) for v, p in shown if v in variants]


def _pairs(title: str, rows: Iterable[tuple[str, float]]) -> list[str]:
    return [f"| {title} | % |", "|---|---:|", *(f"| `{n}` | {p:.1f} |" for n, p in rows)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--notifications", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profiler", choices=["auto", "py-spy", "cprofile"], default="auto")
    parser.add_argument("--what-if", action="store_true")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="with --what-if")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cprofile-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.url, args.notifications, args.concurrency, args.cprofile_out)
        return {}
    with scratch_database() as url:
        prepare_database(url, args.notifications)
        variants = tuple(args.variants.split(","))
        results = profile(
            url, args.notifications, args.profiler, args.what_if, args.concurrency, variants
        )
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
