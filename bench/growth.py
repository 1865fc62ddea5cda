"""Growth: how notifyops' cost grows from 10k to 1M messages (library path, zero latency).

    python -m bench.growth [--sizes 10000,100000,1000000] [--request-notifications 10000]
                           [--one-request-max 100000] [--deliver-cap 0]

A size is in provider messages (two per notification: email + SMS). Sizes up to
`--one-request-max` are sent as ONE request (today's `enqueue` renders and plans the whole request
in memory, in one transaction: this shows how its memory grows); larger sizes as requests of
`--request-notifications` notifications each. Then one deliverer (batches of 1000, send
concurrency 8) delivers until nothing is due, or until `--deliver-cap` messages when set (the
claim cost on a big outbox is what grows; the rest is per message). Each size runs in its own
process; peak RSS is that process's, sampled every 100 ms.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    ADMIN_URL,
    Request,
    Scenario,
    account,
    add_recipients,
    expect,
    log,
    prepare_database,
    reset_outbox,
    scratch_database,
)
from bench.scenario import run_measured

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class GrowthPlan:
    messages: int
    request_notifications: int
    deliver_cap: int  # 0 = deliver everything

    @property
    def notifications(self) -> int:
        return self.messages // 2

    def requests(self) -> list[Request]:
        size, total = self.request_notifications, self.notifications
        return [
            Request(f"g{self.messages}-{i}", min(size, total - start))
            for i, start in enumerate(range(0, total, size))
        ]


def plan_for(
    messages: int, request_notifications: int, one_request_max: int, deliver_cap: int
) -> GrowthPlan:
    one = messages <= one_request_max
    return GrowthPlan(messages, messages // 2 if one else request_notifications, deliver_cap)


# --- the child -----


def child(plan: GrowthPlan, url: str, ledger_dir: Path) -> dict[str, Any]:
    from bench.ledger import LedgerSender
    from bench.notifyops_peer import (
        bench_settings,
        enqueue_request,
        make_deliverer,
        send_request,
    )
    from notify.db import make_engine
    from notify.rendering import TemplateCatalog

    scenario = Scenario("growth", 0.0, None, 8, plan.notifications)
    settings, catalog, engine = bench_settings(url, scenario), TemplateCatalog(), make_engine(url)
    started = time.perf_counter()
    for request in plan.requests():
        enqueue_request(engine, settings, catalog, send_request(request.recipients, request.tag))
    enqueued = time.perf_counter()
    enqueue_peak = _max_rss_mb()
    sender = LedgerSender(ledger_dir)
    deliverer = make_deliverer(engine, settings, sender, None, owner="bench-growth")
    delivered = _deliver(deliverer, plan.deliver_cap or plan.messages)
    finished = time.perf_counter()
    sender.close()
    engine.dispose()
    return {
        "enqueue_s": enqueued - started,
        "deliver_s": finished - enqueued,
        "delivered": delivered,
        "enqueue_peak_rss_mb": enqueue_peak,
        "peak_rss_mb_self": _max_rss_mb(),
    }


def _deliver(deliverer: Any, cap: int) -> int:
    delivered = 0
    for _ in range(cap // 1000 + 10):  # bounded: cap / batch size, plus the empty claim
        if delivered >= cap:
            break
        report = deliverer.deliver_batch()
        delivered += report.claimed
        if report.claimed == 0:
            break
    return delivered


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# --- the parent -----


def run_growth(
    url: str, workdir: Path, env: dict[str, str], plans: list[GrowthPlan]
) -> list[dict[str, Any]]:
    results = []
    for plan in plans:
        add_recipients_for(url, plan.request_notifications)
        reset_outbox(url)
        expect(url, plan.requests())
        ledger_dir = workdir / f"growth-{plan.messages}"
        ledger_dir.mkdir(parents=True, exist_ok=True)
        log(
            f"growth: {plan.messages:,} messages in {len(plan.requests())} request(s)"
            + (f", delivering {plan.deliver_cap:,}" if plan.deliver_cap else "")
        )
        command = [
            sys.executable,
            "-m",
            "bench.growth",
            "--child",
            json.dumps(plan.__dict__),
            "--url",
            url,
            "--ledger-dir",
            str(ledger_dir),
        ]
        output, peak, _ = run_measured(command, env, ledger_dir / "process.log", timeout=4 * 3600)
        values = json.loads(output.strip().splitlines()[-1])
        books = account(url, ledger_dir)
        capped = plan.deliver_cap and plan.deliver_cap < plan.messages
        result = {
            **values,
            "messages": plan.messages,
            "requests": len(plan.requests()),
            "request_notifications": plan.request_notifications,
            "peak_rss_mb": peak,
            "duplicates": books.duplicates,
            "missing": None if capped else books.missing,
        }
        log(
            f"growth {plan.messages:,}: enqueue {plan.messages / values['enqueue_s']:,.0f}/s, "
            f"deliver {values['delivered'] / values['deliver_s']:,.0f}/s, peak {peak:,.0f} MB"
        )
        results.append(result)
    return results


def add_recipients_for(url: str, count: int) -> None:
    from notify.db import make_engine

    engine = make_engine(url)
    add_recipients(engine, 0, count)
    engine.dispose()


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| messages | requests x notifications | enqueue/s | delivered | deliver/s | "
        "peak RSS enqueue (MB) | peak RSS run (MB) | duplicates | missing |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        missing = "n/a (capped)" if r["missing"] is None else f"{r['missing']}"
        lines.append(
            f"| {r['messages']:,} | {r['requests']} x {r['request_notifications']:,} | "
            f"{r['messages'] / r['enqueue_s']:,.0f} | {r['delivered']:,} | "
            f"{r['delivered'] / r['deliver_s']:,.0f} | {r['enqueue_peak_rss_mb']:,.0f} | "
            f"{r['peak_rss_mb']:,.0f} | {r['duplicates']} | {missing} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description="notifyops growth: 10k, 100k, 1M messages")
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--request-notifications", type=int, default=10_000)
    parser.add_argument("--one-request-max", type=int, default=100_000)
    parser.add_argument("--deliver-cap", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ledger-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        plan = GrowthPlan(**json.loads(args.child))
        print(json.dumps(child(plan, args.url, Path(args.ledger_dir))), flush=True)
        return []
    plans = [
        plan_for(int(s), args.request_notifications, args.one_request_max, args.deliver_cap)
        for s in args.sizes.split(",")
    ]
    import os
    import tempfile

    from bench.common import ROOT

    with scratch_database(ADMIN_URL) as url, tempfile.TemporaryDirectory() as tmp:
        prepare_database(url, 0)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        results = run_growth(url, Path(tmp), env, plans)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
