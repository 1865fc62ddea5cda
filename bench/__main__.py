"""notifyops against Celery + Redis and naive Prefect, on one machine, one database, one run.

    python -m bench                     # everything (~15 min); rewrites docs/PERFORMANCE.md
    python -m bench --quick --json      # zero latency, small size (< 3 min); one JSON object

Progress goes to stderr; stdout carries the table (or, with --json, only the JSON object).
See docs/PERFORMANCE.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import doc, growth, hotpath, report
from bench.common import (
    ADMIN_URL,
    ROOT,
    PeerResult,
    Scenario,
    log,
    prepare_database,
    scratch_database,
)
from bench.suite import SuiteResult, log_load, machine, run_suite, scenarios

QUICK_NOTIFICATIONS = 5_000  # 10,000 messages: a fixed cost per run does not decide it
QUICK_NAIVE_NOTIFICATIONS = QUICK_NOTIFICATIONS  # the same size as every other peer


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="zero latency, 5,000 notifications (10,000 messages)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    parser.add_argument(
        "--notifications",
        type=int,
        default=10_000,
        help="notifications in the zero-latency scenario (2 messages each)",
    )
    parser.add_argument(
        "--naive-max-notifications",
        type=int,
        default=2_500,
        help="naive Prefect's size cap in the full run (a task run per message, ~100-200/s)",
    )
    parser.add_argument(
        "--rate14-notifications",
        type=int,
        default=140,
        help="notifications at 50 ms latency and 14/s per provider",
    )
    parser.add_argument(
        "--rate500-notifications",
        type=int,
        default=2000,
        help="notifications at 50 ms latency and 500/s per provider",
    )
    parser.add_argument("--peers", default="notifyops,notifyops_flows,celery,naive_prefect")
    parser.add_argument(
        "--growth",
        default="10000,100000",
        help="growth sizes in messages, comma-separated ('' to skip); "
        "1000000 adds the 1M run (about 50 min with today's library)",
    )
    parser.add_argument("--growth-request-notifications", type=int, default=10_000)
    parser.add_argument("--growth-one-request-max", type=int, default=100_000)
    parser.add_argument(
        "--growth-deliver-cap",
        type=int,
        default=0,
        help="deliver at most this many messages per growth size (0 = all)",
    )
    parser.add_argument(
        "--profile-notifications", type=int, default=3000, help="hot-path profile size (0 to skip)"
    )
    parser.add_argument(
        "--audit-rows", type=int, default=1_000_000, help="rows for bench.audits (0 to skip)"
    )
    parser.add_argument(
        "--startup-runs", type=int, default=5, help="runs of bench.startup (0 to skip)"
    )
    parser.add_argument("--doc", default=str(ROOT / "docs" / "PERFORMANCE.md"))
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite the doc")
    parser.add_argument("--save-results", help="also write every number of the run to this JSON")
    parser.add_argument(
        "--render-from", help="rewrite the doc from a --save-results file; run nothing"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.notifications, args.rate14_notifications, args.rate500_notifications = (
            QUICK_NOTIFICATIONS,
            0,
            0,
        )
        args.growth, args.profile_notifications, args.audit_rows = "", 0, 0
        args.startup_runs = 0
        args.naive_max_notifications = QUICK_NAIVE_NOTIFICATIONS
        args.no_doc = True
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.render_from:
        saved = json.loads(Path(args.render_from).read_text(encoding="utf-8"))
        Path(args.doc).write_text(_render(saved), encoding="utf-8")
        log(f"wrote {args.doc} from {args.render_from}")
        return dict(saved)
    started = time.perf_counter()
    plan = scenarios(args.notifications, args.rate14_notifications, args.rate500_notifications)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    biggest = max([s.notifications for s in plan] + [1])
    with (
        scratch_database(ADMIN_URL) as url,
        tempfile.TemporaryDirectory(prefix="notifyops-bench-") as tmp,
    ):
        workdir = Path(tmp)
        prepare_database(url, biggest)
        info = machine(url)
        log(f"machine: {info['cores']} cores, load {info['load_before']}")
        suite = run_suite(url, workdir, plan, peers, args.naive_max_notifications)
        growth_results = _growth(args, url, workdir)
        profile = _profile(args, url)
        info["load_after"] = log_load("after")
    audits = _audits(args.audit_rows)
    startup = doc.run_startup(args.startup_runs) if args.startup_runs else None
    elapsed = time.perf_counter() - started
    out = report.summary_json(suite)
    if args.json:
        print(json.dumps(out), flush=True)
    else:
        print(report.peer_table(suite, plan))
        print()
        print(report.ratio_table(suite, plan))
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    saved = {
        "command": command.strip(),
        "machine": info,
        "plan": [asdict(s) for s in plan],
        "results": [r.as_dict() for r in suite.results],
        "prefect_server": suite.prefect_server,
        "growth": growth_results,
        "profile": profile,
        "audits": audits,
        "startup": startup,
        "elapsed_s": elapsed,
    }
    if args.save_results:
        Path(args.save_results).write_text(json.dumps(saved, indent=1), encoding="utf-8")
    if not args.no_doc:
        Path(args.doc).write_text(_render(saved), encoding="utf-8")
        log(f"wrote {args.doc}")
    log(f"done in {elapsed:.0f} s")
    return out


def _render(saved: dict[str, Any]) -> str:
    plan = [Scenario(**s) for s in saved["plan"]]
    suite = SuiteResult(
        results=[PeerResult.from_dict(r) for r in saved["results"]],
        prefect_server=saved["prefect_server"],
    )
    return doc.render(
        saved["command"],
        saved["machine"],
        suite,
        plan,
        saved["growth"],
        saved["profile"],
        saved["audits"],
        saved["elapsed_s"],
        saved.get("startup"),
    )


def _growth(args: argparse.Namespace, url: str, workdir: Path) -> list[dict[str, Any]]:
    sizes = [int(s) for s in args.growth.split(",") if s.strip()]
    if not sizes:
        return []
    plans = [
        growth.plan_for(
            size,
            args.growth_request_notifications,
            args.growth_one_request_max,
            args.growth_deliver_cap,
        )
        for size in sizes
    ]
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    return growth.run_growth(url, workdir, env, plans)


def _profile(args: argparse.Namespace, url: str) -> dict[str, Any] | None:
    if not args.profile_notifications:
        return None
    from bench.common import add_recipients
    from notify.db import make_engine

    engine = make_engine(url)
    add_recipients(engine, 0, args.profile_notifications)
    engine.dispose()
    return hotpath.profile(url, args.profile_notifications, "auto", what_if=True)


def _audits(rows: int) -> str | None:
    """bench/audits.py is another engineer's: run it as a module if it is there, else skip."""
    if not rows:
        return None
    try:
        from bench import audits  # noqa: F401
    except Exception as error:
        log(f"audits skipped: bench.audits does not import ({error})")
        return None
    return doc.run_audits(rows)


if __name__ == "__main__":
    main()
