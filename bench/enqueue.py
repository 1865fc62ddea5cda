"""Enqueue alone: messages stored per second, and the peak RSS of one big request.

    python -m bench.enqueue [--rows 20000,100000] [--rss-rows 1000000] [--backends postgres,sqlite]
                            [--repeat 2] [--personal] [--json]

A "message" is one `delivery_logs` row: the benchmark request (`repair_assigned`, urgent) gives each
recipient one notification and two rows (email + SMS), so `--rows 20000` sends to 10,000
recipients in ONE request (one `enqueue` call, one transaction), the way `notifyops send` does.
Postgres runs in a scratch database created and dropped here; SQLite in a temporary file. Each
measurement runs in its own process (a fresh interpreter: compiled templates, statement caches
and memory start cold, as in a worker); the outbox is emptied between runs and the best of
`--repeat` runs is kept (the machine is shared). Peak RSS is the child's `ru_maxrss`, measured once
for a `--rss-rows` request on Postgres (0 skips it). `--personal` adds a run on Postgres with a
body that greets each recipient by name (rendered per recipient; subject, HTML and SMS once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ADMIN_URL, ROOT, log, prepare_database, reset_outbox, scratch_database

DEFAULT_ROWS = (20_000, 100_000)
RSS_ROWS = 1_000_000


def child(url: str, rows: int, tag: str, template_dir: str = "") -> dict[str, Any]:
    """One request of `rows` messages, timed; its process's peak RSS."""
    from bench.common import Scenario
    from bench.notifyops_peer import bench_settings, enqueue_request, send_request
    from notify.db import make_engine
    from notify.rendering import TemplateCatalog

    notifications = rows // 2
    settings = bench_settings(url, Scenario("enqueue", 0.0, None, 8, notifications))
    engine = make_engine(url)
    catalog = TemplateCatalog(Path(template_dir)) if template_dir else TemplateCatalog()
    request = send_request(notifications, tag)
    started = time.perf_counter()
    stored = enqueue_request(engine, settings, catalog, request)
    seconds = time.perf_counter() - started
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"rows": 2 * stored, "seconds": seconds, "peak_rss_mb": peak}


def _run_child(url: str, rows: int, tag: str) -> dict[str, Any]:
    return _run(url, rows, tag, "")


def _run(url: str, rows: int, tag: str, template_dir: str) -> dict[str, Any]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, "-m", "bench.enqueue", "--child", url, str(rows), tag, template_dir]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"enqueue child exited {done.returncode}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rows"] != rows:
        raise RuntimeError(f"asked for {rows} rows, stored {result['rows']}")
    return result


def _empty(url: str) -> None:
    if url.startswith("postgresql"):
        reset_outbox(url)
        return
    from sqlalchemy import text

    from notify.db import make_engine

    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM delivery_logs"))
        connection.execute(text("DELETE FROM notifications"))
    engine.dispose()


def measure(
    url: str, sizes: list[int], repeat: int, backend: str, template_dir: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rows in sizes:
        best: dict[str, Any] | None = None
        for attempt in range(repeat):
            _empty(url)
            run = _run(url, rows, f"{backend}-{rows}-{attempt}", template_dir)
            if best is None or run["seconds"] < best["seconds"]:
                best = run
        assert best is not None
        rate = rows / best["seconds"]
        log(f"{backend} {rows:,} rows: {rate:,.0f} msg/s ({best['seconds']:.2f} s)")
        out[str(rows)] = {
            "msg_per_s": round(rate, 1),
            "seconds": round(best["seconds"], 3),
            "peak_rss_mb": round(best["peak_rss_mb"], 1),
        }
    _empty(url)
    return out


def _personal_template(folder: Path) -> None:
    """The benchmark template with a body that greets the recipient by name (the other parts
    stay the built-in ones, shared by every recipient)."""
    from notify.rendering import BUILTIN_DIR

    body = (BUILTIN_DIR / "repair_assigned" / "body.txt.j2").read_text(encoding="utf-8")
    (folder / "repair_assigned").mkdir()
    greeting = "Hi {{ recipient.name }},\n\n" + body
    (folder / "repair_assigned" / "body.txt.j2").write_text(greeting, encoding="utf-8")


def run(
    sizes: list[int], rss_rows: int, backends: list[str], repeat: int, personal: bool = False
) -> dict[str, Any]:
    load = [round(v, 2) for v in os.getloadavg()]  # others share the machine: say how much
    results: dict[str, Any] = {"rows": sizes, "cpus": os.cpu_count(), "load_average": load}
    most = max([*sizes, rss_rows if "postgres" in backends else 0]) // 2
    if "postgres" in backends:
        with scratch_database(ADMIN_URL, prefix="notifyops_bench_enqueue") as url:
            log(f"postgres: migrating and adding {most:,} recipients")
            prepare_database(url, most)
            results["postgres"] = measure(url, sizes, repeat, "postgres")
            if personal:
                with tempfile.TemporaryDirectory() as folder:
                    _personal_template(Path(folder))
                    label = "postgres personal"
                    results["postgres_personal"] = measure(url, sizes, repeat, label, folder)
            if rss_rows:
                _empty(url)
                big = _run_child(url, rss_rows, "rss")
                results["postgres_rss"] = {
                    "rows": rss_rows,
                    "peak_rss_mb": round(big["peak_rss_mb"], 1),
                    "msg_per_s": round(rss_rows / big["seconds"], 1),
                }
                log(f"postgres {rss_rows:,} rows: peak RSS {big['peak_rss_mb']:,.0f} MB")
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            _prepare_sqlite(url, max(sizes) // 2)
            results["sqlite"] = measure(url, sizes, repeat, "sqlite")
    return results


def _prepare_sqlite(url: str, recipients: int) -> None:
    from bench.common import add_recipients
    from notify.db import make_engine
    from notify.migrate import upgrade_database

    upgrade_database(url)
    engine = make_engine(url)
    add_recipients(engine, 0, recipients)
    engine.dispose()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="notifyops enqueue: msg/s and peak RSS")
    parser.add_argument("--rows", default=",".join(str(r) for r in DEFAULT_ROWS))
    parser.add_argument("--rss-rows", type=int, default=RSS_ROWS)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--personal", action="store_true", help="also a template whose body names the recipient"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, rows, tag, template_dir = args.child
        print(json.dumps(child(url, int(rows), tag, template_dir)), flush=True)
        return {}
    sizes = [int(r) for r in str(args.rows).split(",")]
    backends = str(args.backends).split(",")
    results = run(sizes, args.rss_rows, backends, args.repeat, args.personal)
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
