"""Dispatch throughput (issue 3): notifyops beside naive Prefect, end to end on PostgreSQL.

    python -m bench.dispatch [--notifications 2000] [--rate14-notifications 140]
                             [--rate500-notifications 2000] [--json]

The in-memory provider at zero latency, then with 50 ms latency at 14/s and at 500/s per
provider (achieved against configured). Peers: notifyops as a library, notifyops through its
Prefect flows, and naive Prefect (one task per notification). `python -m bench` runs the same
with Celery + Redis added, and writes docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import report
from bench.common import ADMIN_URL, prepare_database, scratch_database
from bench.suite import run_suite, scenarios

PEERS = ("notifyops", "notifyops_flows", "naive_prefect")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dispatch", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument("--rate14-notifications", type=int, default=140)
    parser.add_argument("--rate500-notifications", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    plan = scenarios(args.notifications, args.rate14_notifications, args.rate500_notifications)
    with (
        scratch_database(ADMIN_URL) as url,
        tempfile.TemporaryDirectory(prefix="notifyops-dispatch-") as tmp,
    ):
        prepare_database(url, max(s.notifications for s in plan))
        suite = run_suite(url, Path(tmp), plan, PEERS)
    rows = [r.as_dict() for r in suite.results]
    if args.json:
        print(json.dumps({"scenarios": [asdict(s) for s in plan], "results": rows}))
    else:
        print(report.peer_table(suite, plan))
        print()
        print(report.ratio_table(suite, plan))
    return rows


if __name__ == "__main__":
    main()
