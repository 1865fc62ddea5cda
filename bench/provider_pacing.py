"""Provider pacing measured: achieved rate against configured, one and two worker processes.

    python -m bench.provider_pacing [--rate 14] [--seconds 20]

Needs a running Prefect server (PREFECT_API_URL); creates/updates the `ses-send` rate limit the
way `python -m deployments.setup` does, then has 1 and then 2 processes send as fast as the pacer
lets them (8 threads each, like a deliverer's window) and counts acquisitions per second. For
comparison it runs the local token bucket alone (one process) and one slot per call from the
global limit (what bulk acquisition improves on).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from deployments.setup import ensure_rate_limits


def acquire_for(mode: str, rate: float, seconds: float) -> int:
    """Acquire tokens from 8 threads for `seconds`; return how many were granted."""
    from notify.pacing import Pacer, TokenBucket
    from tasks.pacing import GlobalRateLimitPacer

    pacer: Pacer
    if mode == "local":
        pacer = TokenBucket(rate)
    else:
        pacer = GlobalRateLimitPacer("ses-send", rate, bulk=1 if mode == "global-1" else None)
    deadline = time.monotonic() + seconds

    def spin() -> int:
        granted = 0
        while time.monotonic() < deadline:
            pacer.acquire()
            granted += 1
        return granted

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(lambda _: spin(), range(8)))


def run(mode: str, processes: int, rate: float, seconds: float) -> float:
    command = [
        sys.executable,
        "-m",
        "bench.provider_pacing",
        "--child",
        mode,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
    ]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    granted = sum(int(child.communicate()[0].strip() or 0) for child in children)
    return granted / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=14.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        print(acquire_for(args.child, args.rate, args.seconds))
        return
    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("set PREFECT_API_URL to a running Prefect server")
    ensure_rate_limits(args.rate, args.rate)
    rows = []
    for mode, processes in (("local", 1), ("global-1", 1), ("global", 1), ("global", 2)):
        achieved = run(mode, processes, args.rate, args.seconds)
        rows.append(
            {
                "pacer": mode,
                "processes": processes,
                "configured_per_s": args.rate,
                "achieved_per_s": round(achieved, 2),
                "achieved_share": round(achieved / args.rate, 3),
            }
        )
        time.sleep(2)  # let the limit's slots decay between runs
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
