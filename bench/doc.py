"""docs/PERFORMANCE.md, written by `python -m bench` (edit this file, not the doc)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import growth, hotpath, report
from bench.common import ROOT, PeerResult, Scenario, log
from bench.scenario import run_measured
from bench.startup import markdown as startup_markdown
from bench.suite import MOST_RUNS, SuiteResult


def run_audits(rows: int) -> str | None:
    """`python -m bench.audits --rows N` (bench/audits.py), its markdown and peak RSS."""
    log(f"audits over {rows:,} rows (bench.audits)")
    ran = _run_module("audits", "--rows", str(rows), "--repeat", "3")
    if ran is None:
        return None
    output, peak = ran
    return (
        output.strip() + f"\n\nPeak RSS of the audit process: {peak:,.0f} MB (it includes the "
        "pandas comparison, which loads the whole table)."
    )


def run_startup(runs: int) -> dict[str, Any] | None:
    """`python -m bench.startup --runs N --json` (bench/startup.py): its numbers."""
    log(f"start-up of ad hoc commands, {runs} runs each (bench.startup)")
    ran = _run_module("startup", "--runs", str(runs), "--json")
    if ran is None:
        return None
    result: dict[str, Any] = json.loads(ran[0].strip().splitlines()[-1])
    return result


def _run_module(name: str, *args: str) -> tuple[str, float] | None:
    """`python -m bench.NAME ARGS` in its own process: its stdout and peak RSS (MB), or None
    (logged) when it failed: one failed part does not lose the rest of the run."""
    command = [sys.executable, "-m", f"bench.{name}", *args]
    log_path = Path(f"/tmp/notifyops-bench-{name}-{time.time_ns()}.log")
    try:
        output, peak, _ = run_measured(command, {"PYTHONPATH": str(ROOT), **_env()}, log_path, 1800)
        return output, peak
    except Exception as error:
        log(f"bench.{name} failed: {error}")
        return None
    finally:
        log_path.unlink(missing_ok=True)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def render(
    command: str,
    info: dict[str, Any],
    suite: SuiteResult,
    plan: Sequence[Scenario],
    growth_results: list[dict[str, Any]],
    profile: dict[str, Any] | None,
    audits: str | None,
    elapsed: float,
    startup: dict[str, Any] | None = None,
) -> str:
    parts = [
        HEADER.format(date=time.strftime("%Y-%m-%d %H:%M %Z"), elapsed=elapsed / 60),
        "```\n" + command + "\n```\n",
        "## Machine\n",
        "\n".join(report.machine_lines(info)) + "\n",
        METHOD.format(server=_server_line(suite)),
        "## Results: the three peers\n",
        _scenario_lines(plan),
        report.peer_table(suite, plan) + "\n",
        report.runs_lines(suite, plan),
        "Ratios of end-to-end throughput (notifyops ÷ peer; above 1 means notifyops is faster):\n",
        report.ratio_table(suite, plan) + "\n",
        _reading(suite, plan),
    ]
    if growth_results:
        parts += [GROWTH_INTRO, growth.markdown(growth_results) + "\n"]
        parts += [_growth_notes(growth_results), GROWTH_NOTES]
    if profile:
        parts += [PROFILE_INTRO, hotpath.markdown(profile) + "\n", PROFILE_NOTES]
    parts += [PROPOSALS]
    if audits:
        parts += ["## Audits over a large delivery log (bench/audits.py)\n", audits + "\n"]
    if startup:
        parts += [STARTUP_INTRO, startup_markdown(startup) + "\n"]
    parts += [LIMITS]
    return "\n".join(parts)


def _server_line(suite: SuiteResult) -> str:
    server = suite.prefect_server
    if not server:
        return "no Prefect peer ran"
    return (
        f"started in {server['startup_s']:.0f} s; its resident memory after the Prefect "
        f"runs was {server['rss_mb_after']:,.0f} MB, not counted in the peers' peak RSS"
    )


def _scenario_lines(plan: Sequence[Scenario]) -> str:
    lines = [
        f"- `{s.name}`: {s.notifications:,} notifications = {s.messages:,} messages, "
        f"{s.label()}, {s.concurrency} in flight per peer"
        for s in plan
    ]
    return "\n".join(lines) + "\n"


def _reading(suite: SuiteResult, plan: Sequence[Scenario]) -> str:
    lines = ["What the numbers say (generated from this run):", ""]
    for scenario in plan:
        by = {r.peer: r for r in suite.results if r.scenario == scenario.name}
        if not by:
            continue
        fastest = max(by.values(), key=lambda r: r.e2e_per_s)
        lines.append(
            f"- `{scenario.name}`: fastest end to end is {report.NAMES[fastest.peer]} "
            f"({fastest.e2e_per_s:,.1f} msg/s); "
            + "; ".join(
                f"{report.NAMES[p]} {r.e2e_per_s:,.1f}" for p, r in by.items() if r is not fastest
            )
            + "."
        )
        if scenario.rate:
            lines += _pacing_lines(scenario, by)
        library, flows = by.get("notifyops"), by.get("notifyops_flows")
        if library and flows:
            lines.append(_flows_against_library(flows, library))
    small = report.small_dispatch(suite)
    if small and "flows_add_s" in small:
        lines.append(small_dispatch_line(small, suite.get("notifyops_flows", "zero")))
    zero = {r.peer: r for r in suite.results if r.scenario == "zero"}
    if zero:
        lines.append(
            "- Peak memory at zero latency: "
            + ", ".join(f"{report.NAMES[p]} {r.peak_rss_mb:,.0f} MB" for p, r in zero.items())
            + " (Celery: the driver, the worker and its 8 prefork processes)."
        )
    cpu = report.cpu_line(suite)
    if cpu:
        lines.append(cpu)
    bad = [r for r in suite.results if r.duplicates or r.missing]
    lines.append(
        "- Duplicates and missing: "
        + (
            "none in any run."
            if not bad
            else ", ".join(
                f"{report.NAMES[r.peer]} {r.scenario}: {r.duplicates} duplicates, "
                f"{r.missing} missing"
                for r in bad
            )
        )
    )
    return "\n".join(lines) + "\n"


def _growth_notes(results: list[dict[str, Any]]) -> str:
    first, last = results[0], results[-1]
    rate = [r["delivered"] / r["deliver_s"] for r in (first, last)]
    enq = [r["messages"] / r["enqueue_s"] for r in (first, last)]
    return (
        f"- From {first['messages']:,} to {last['messages']:,} messages, enqueue went from "
        f"{enq[0]:,.0f} to {enq[1]:,.0f} msg/s, delivery from {rate[0]:,.0f} to {rate[1]:,.0f} "
        f"msg/s and the peak RSS from {first['peak_rss_mb']:,.0f} to "
        f"{last['peak_rss_mb']:,.0f} MB (generated from this run)."
    )


def _pacing_lines(scenario: Scenario, by: dict[str, PeerResult]) -> list[str]:
    rate = scenario.rate or 0.0
    ceiling = 2 * rate
    lines = [
        f"  Provider ceiling: {ceiling:g} msg/s (two providers at {rate:g}/s); end to end "
        + ", ".join(f"{report.NAMES[p]} {100 * r.e2e_per_s / ceiling:.0f}%" for p, r in by.items())
        + "."
    ]
    if any(r.e2e_per_s > ceiling for r in by.values()):
        lines[-1] += " Above 100%: the provider saw more than its configured rate."
    slow = [
        (p, min(r.achieved.values(), default=0.0) / rate)
        for p, r in by.items()
        if min(r.achieved.values(), default=0.0) < 0.9 * rate
    ]
    if slow:
        lines.append(
            "  Paced below the configured rate in steady state: "
            + ", ".join(f"{report.NAMES[p]} {100 * share:.0f}%" for p, share in slow)
            + "."
        )
    return lines


HEADER = """# Performance

Generated by `python -m bench` ({elapsed:.0f} min, rendered {date}); do not edit by hand: change
`bench/doc.py` and run the benchmark again (`--save-results FILE` keeps the numbers,
`--render-from FILE` rewrites this page from them). Benchmarks report numbers; no test asserts a
timing. The benchmark needs the `bench` extra (Celery, redis, psutil, py-spy) and Redis on
127.0.0.1:6379:

```
.venv/bin/pip install -e '.[dev,bench]'
.venv/bin/python -m bench --quick --json     # ~1.5-5 min: zero latency, 10,000 messages per peer
.venv/bin/python -m bench                    # the full run (12-15 min), rewrites this page
.venv/bin/python -m bench.dispatch           # notifyops beside naive Prefect only (issue 3)
.venv/bin/python -m bench.growth --sizes 1000000   # growth only
.venv/bin/python -m bench.hotpath --what-if  # the profile and the proposed changes
.venv/bin/python -m bench.startup            # ad hoc commands, with and without a standby
```

The command of this run:
"""

METHOD = """## What is measured

One run, one machine, one scratch PostgreSQL database (created by the benchmark and dropped at
the end), the same data for every peer: recipients `bench:<n>` with an email address and a phone
number, both channels on, no quiet hours. A request sends `repair_assigned` with priority
`urgent`, so every notification goes out by email **and** SMS: one notification = two provider
messages = two `delivery_logs` rows. **Message** below always means a provider message.

The peers:

- **Celery + Redis** (the runbook's architecture): the producer stores one notification row per
  recipient (bulk insert, template name and context), then publishes one Celery task per
  notification to Redis (127.0.0.1:6379). The task loads the notification and its recipient,
  renders the template, sends the email and the SMS through the in-memory provider, and writes
  the rendered text and one `delivery_logs` row per channel. A real worker process:
  `celery -A bench.celery_peer worker -P prefork -c 8` (the runbook's concurrency), or
  `-P threads -c 64` in the 500/s scenario (two providers at 500/s with 50 ms calls need at
  least 50 calls in flight; 8 processes cannot go past 160 msg/s). Rates use Celery's task
  `rate_limit` (the runbook's CELERY_ANNOTATIONS); one task is one email plus one SMS, so `N/s`
  tasks is `N/s` per provider.
- **naive Prefect**: the same job as the Celery task, as one Prefect task per notification
  (`cache_policy=NO_CACHE`), submitted from a flow to `ThreadPoolTaskRunner(max_workers=8)` (64 in
  the 500/s scenario); a local token bucket per provider paces the sends.
- **notifyops (library)**: `notify.enqueue.enqueue` (one transaction for the request, streamed
  1,000 recipients at a time: decisions once per distinct situation, render once, `COPY` into
  both tables), then one `Deliverer` running batches of the default `NOTIFY_BATCH_SIZE` (5,000),
  each claimed as it goes (straight into `sending`, a chunk at a time) and delivered as a
  pipeline: `send_concurrency` provider calls in flight continuously (8; 64 in the 500/s
  scenario), at most `NOTIFY_SEND_WINDOW` (512) rows in `sending`, outcomes group-committed every
  ~25 ms, a token bucket per provider.
- **notifyops (Prefect flows)**: the same through `flows.dispatch.dispatch_notifications` with
  its default parameters (the enqueue task, then the delivery tasks inline: a task per batch, then
  the request's own-rows report and the artifacts; a request of more than `NOTIFY_ENQUEUE_PART`
  (5,000) recipients is stored in parts, the later ones while the batches send the first, where
  the library peer stores the whole request before it sends), which is what `notifyops send`
  runs. The
  benchmark hands its provider in through the composition root
  (`notify.bootstrap.install(Runtime(settings, senders=...))`), in its own process.

Every peer runs in its own fresh process (the Celery worker is a child of it). The provider is
the library's in-memory sender (`bench/ledger.py`) with a fixed latency per call, which appends
one line per accepted message to a ledger file before it answers. After each run the ledgers
are loaded into PostgreSQL and compared with the messages the input asked for and with the
`sent` delivery rows:

- **duplicates**: receipts beyond one per expected message, plus `sent` rows beyond one per
  message (a message sent twice, or one nobody asked for);
- **missing**: expected messages without a receipt or without a `sent` row;
- **enqueue msg/s**: messages ÷ seconds from the request until every notification is stored and
  its work queued (Celery: rows stored and tasks published; naive Prefect: rows stored and every
  task submitted; notifyops: the enqueue transaction committed; for the flows, seen by a thread
  polling every 20 ms for the request's last notification (one unique-key probe));
- **e2e msg/s**: messages ÷ seconds from the request until the last message is sent and
  recorded. Process start-up and imports are not included (Celery's worker is already running);
  for the Prefect peers the flow run's own creation and its task runs are included;
- **achieved**: per provider, the steady rate the provider saw (receipts ÷ seconds over the
  second half of its receipts, so the ramp-up is left out), against the configured rate; the
  pacers hold a burst of one token, so no second sees more than the rate (+1);
- **peak RSS**: the largest sum of resident memory of the peer's process tree (the driver and,
  for Celery, the worker and its pool processes), sampled every 100 ms. PostgreSQL, Redis and
  the Prefect server are shared services and not counted.
- **CPU**: the CPU time of the reported run's timed window, by who used it (bench/cpu.py): the
  peer's processes, the PostgreSQL backends serving the benchmark's database, and the Prefect
  server with its own database's backends (`--json`: `cpu_s`). Their sum over the run's wall time
  is how many cores kept busy: a run near the machine's core count cannot go faster without
  doing less work. CPU time is steadier than wall time on a shared host (steal stretches a run,
  not its work), so it also compares two versions of the code where the rates are noisy.
- **runs**: a run shorter than 10 s is at the mercy of a second of noise on a shared two-core
  machine (one peer measured 3,700 to 4,900 msg/s over five runs of 10,000 messages), so such a
  peer runs three times (each its own request, ledgers and process) and the table shows its
  median run; `--json` lists every run's e2e msg/s (`runs_e2e_per_s`) and the share of the
  host's CPU time stolen by its hypervisor during it (`runs_steal_pct`; `steal_pct` for every
  peer's reported run), and duplicates and missing count all three runs. A longer run (Celery,
  naive Prefect, the paced scenarios) evens the noise out within itself and runs once;
- **a small dispatch**: both notifyops peers also send 20 notifications (three runs, the median),
  the flows after their untimed first run: what a dispatch costs whatever its size (`--json`:
  `small_dispatch`). Through the flows that is nearly all the orchestrator's: the flow run, its
  task runs, the request's report and artifacts.

Prefect peers run against one `prefect server start` on 127.0.0.1 backed by its own scratch
PostgreSQL database (architecture.md: a SQLite-backed server locks up under task load; an
ephemeral API costs 17-27 s per process). Each Prefect peer first runs once with 20
notifications, untimed, so that neither pays for the new server's first requests (0.3-0.4 s on
the first dispatch after a start); between peers the benchmark waits for the server to go idle.
This run's server: {server}.
"""

GROWTH_INTRO = """## Growth: notifyops from 10k messages up (library path, zero latency)

Each size in its own process: enqueue, then one deliverer (the library's defaults: batches of
5,000, 8 calls in flight, a window of 512) until nothing is due, or until the delivery cap of
the command above. Sizes up to the one-request limit of the command are ONE request
(`enqueue` streams it 1,000 recipients at a time inside one transaction, so its memory should
not grow with the request); larger sizes are several requests of the size shown.
`python -m bench.growth --sizes 1000000 --one-request-max 1000000` runs the million alone.
"""

GROWTH_NOTES = """- The claim uses the partial index on due rows; what still grows with the outbox
  is the cost of each status change, which writes new entries into the indexes of
  `delivery_logs`.
- What still grows in a single request's memory: `enqueue` keeps the list of external ids and
  every new notification id (returned in `EnqueueResult.notification_ids`); a 1,000,000-message
  request peaked at 210 MB in `python -m bench.enqueue --rss-rows 1000000` (at a037012).
"""

STARTUP_INTRO = """## Start-up of an ad hoc command (bench/startup.py)

`python -m bench.startup`: what an on-call engineer waits for, from typing a command to its
exit, against a running Prefect server on PostgreSQL with moto in server mode as SES and SNS.
Without a standby a command loads Prefect, the flows, SQLAlchemy, Jinja2 and boto3 itself (most
of its time, and it follows the machine's state: the last row says which state this run met);
`notifyops standby` loads them once, and each command runs in a fork of it (README, "A standby
for repeated commands").
"""

PROFILE_INTRO = """## Hot path profile (zero latency: the orchestrator's own cost)

`python -m bench.hotpath --what-if`: one enqueue and one delivery of the same request, each
phase timed without a profiler (best of two runs, so ms/message is the orchestrator's cost: the
provider takes no time), then profiled with py-spy (`--idle`, so time spent waiting on
PostgreSQL counts; main thread; cProfile if py-spy is missing). `current` is the library with
its defaults.
"""

PROFILE_NOTES = """The profile splits the library's time per message into enqueue and delivery;
the component benchmarks below measure each part at larger sizes.
"""

PROPOSALS = """## Component benchmarks

Each prints one JSON object; the figures are from their runs on this machine class while other
jobs shared the two cores (compare ratios within a run):

- `python -m bench.deliverer --rows 20000 --json`: the pipelined deliverer on PostgreSQL, 0 ms
  latency: 12,562 msg/s (runs 10,997 / 12,562 / 11,563 at a037012; window 512, 8 calls in
  flight; 8,158 msg/s in an earlier run, 3,998 at load 7-10); at 50 ms latency 100% of 14/s and
  99.1% of 500/s per provider (64 in flight); 0 duplicates, 0 missing. Speed by window at 0 ms,
  in that earlier run: 6,648 (128), 7,635 (256), 8,158 (512), 8,898 (1,024) msg/s, hence the
  default 512 (the crash bound doubles for under 10% more).
- `python -m bench.enqueue --rows 20000,100000 --rss-rows 1000000 --json`: enqueue on PostgreSQL
  21,221 msg/s (20,000) and 22,158 msg/s (100,000), 21,323 msg/s and 210 MB peak for one
  1,000,000-message request (at a037012, load average 1-2). An earlier run measured 29,875,
  31,935 and 25,069 msg/s on a faster machine: side by side with that run's commit (b686f2c),
  20,000 messages, two alternating runs each, today's enqueue is the faster one (19,444 and
  25,630 msg/s against 9,781 and 15,096). The database server (two tables with their indexes and
  foreign keys) is what limits it: its CPU for a 10,000-message enqueue is 0.37-0.46 s, of which
  the two foreign keys' per-row checks and parent-row locks take about 0.1 s (measured by
  dropping them in a scratch database).
- `python -m bench.audits --rows 1000000 --json`: each audit from the hourly rollups, warm, in
  the section below (generated from this run); results equal to a full scan.
- `python -m bench.receipts --json`: 2,470-5,441 receipt events/s applied into PostgreSQL from
  parsed batches (the goal, 5,000/s, reached only at the lower load), 30-46k/s for duplicates.
- `python -m bench.chaos`: the reliability suite (docs/RELIABILITY.md): 0 duplicates and 0 lost
  under 100 SIGKILLs, provider fault storms and PostgreSQL restarts.
"""

LIMITS = """## Limits of this benchmark

- The machine is shared: other jobs (test suites, other benchmarks) may run at the same time;
  the load average before and after is printed above. Compare ratios within one run, not
  absolute numbers across runs.
- The machine is a virtual one: its hypervisor may give part of the two cores' time to other
  guests (`steal`), which slows a run of a few seconds without any change in the code (0-22% of
  the CPU time of 2-3 s runs, measured; the slowest runs of the same dispatch were the most
  stolen from). Each repeated run is listed with the share stolen during it; the `--json`
  summary gives `steal_pct` for every peer and `runs_steal_pct` for repeated ones.
- The host's speed also changes with no steal at all, every few seconds to tens of seconds: a
  fixed piece of pure-Python work takes 0.76 ms, 1.25 ms or 1.5 ms of CPU (Celery, the library
  and naive Prefect all move with it). A run of a second or two lands on one speed, a run of a
  minute averages several, so a short peer's ratio to a long one swings with when each ran
  (three quick runs of one commit: 45.8x, 43.0x and 71.2x naive Prefect). The parent of each
  run times that work's CPU time every 0.25 s (bench/pace.py: a sample waiting for a core the
  run keeps busy does not count the wait);
  `--json` gives each peer's `host_pace_ms` (the median over its timed window; lower is faster;
  `runs_host_pace_ms` for repeated runs). Over 14 runs of one dispatch through the flows, pace
  and rate correlated at -0.77 (9,042 msg/s at 0.82 ms, 6,132 at 1.39 ms): compare ratios of
  peers that ran at about the same pace.
- The provider is in memory with a fixed latency; real SES/SNS calls add TLS, variance and
  throttling, which only widen the gap between a paced run and an unpaced one.
- One deliverer process for notifyops and one worker for Celery: scaling out (more deliverers on
  `SKIP LOCKED`, more Celery workers) is not measured here; `tests/test_reliability.py` checks
  that two deliverers never duplicate.
- The Celery peer writes each notification's rows in its own two transactions, as the runbook's
  Django task did; it applies no channel policies (notifyops does: preferences, caps, loop guard,
  suppressions), so its per-message work is smaller than notifyops'.
"""


def small_dispatch_line(small: dict[str, Any], flows_zero: PeerResult | None) -> str:
    line = (
        f"- A dispatch of {small['notifications']} notifications (median of {MOST_RUNS} runs): "
        f"{small['notifyops_flows_e2e_s']:.2f} s through the flows, "
        f"{small['notifyops_e2e_s']:.2f} s in the library: the flows add "
        f"{small['flows_add_s']:.2f} s to every dispatch whatever its size"
    )
    if flows_zero is None:
        return line + "."
    share = 100 * small["flows_add_s"] / flows_zero.e2e_s
    return (
        line + f", {share:.0f}% of the flows' {flows_zero.e2e_s:.2f} s for the `zero` "
        f"scenario's {flows_zero.messages:,} messages."
    )


def _flows_against_library(flows: PeerResult, library: PeerResult) -> str:
    """What the flows cost (or save) against the library peer's calls, in seconds."""
    both = f"({flows.e2e_s:,.1f} s against {library.e2e_s:,.1f} s for the library peer)"
    if flows.e2e_s >= library.e2e_s:
        return (
            f"  The Prefect flows add {flows.e2e_s - library.e2e_s:,.1f} s to this dispatch "
            f"{both}: the flow run, a task run per step and per batch, the request's own-rows "
            "report, artifacts, logs sent to the API. It is a cost per dispatch, not per message."
        )
    return (
        f"  The Prefect flows finish {library.e2e_s - flows.e2e_s:,.1f} s sooner than the library "
        f"peer {both}: they store the request in parts and send the first parts while the rest "
        "is stored, and run two batches at once, where the library peer stores the whole request "
        "and then delivers it with one deliverer; the flow run, its task runs, the report and "
        "the artifacts are paid inside that time."
    )
