"""Benchmark: each audit over N delivery rows on PostgreSQL, from rollups and by a full scan.

    .venv/bin/python -m bench.audits --rows 1000000 [--json]

Creates its own database (admin URL from NOTIFY_BENCH_POSTGRES_URL, default
postgresql+psycopg2://postgres@127.0.0.1:5432/postgres), migrates it and fills it server-side
with generate_series (60% email / 40% SMS, 3% failed with a few error messages, 1.5% of the
last 2 hours pending, 1.5% skipped, 2,000 recipients, 5 loops, spread over 48 h; 9 in 10 sent
SMS with a receipt's price beside the estimate), folds the
rollups once (timed: the first fold), then times each audit over the last 24 h reading the rollups
(warm: nothing left to fold) and by a full scan, checks that both give the same report, prints a
markdown table (or with --json one JSON object: rows, sms_cost_ms, loops_ms, failures_ms,
health_ms as the median warm audit, first_fold_ms, refold_nothing_new_ms (a fold with no new
rows: checking the open rows), full_scan_ms, equal_to_full_scan) and drops
the database. `main()` returns the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from notify.audits import failure_summary, health, loop_detection, sms_cost_audit
from notify.audits.rollups import FULL_SCAN, ROLLUPS, RollupPolicy, fold
from notify.db import make_engine, transaction, utcnow
from notify.migrate import upgrade_database
from notify.settings import Settings, load_settings

ADMIN_URL = os.environ.get(
    "NOTIFY_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=24)
SPREAD_HOURS = 48
LOOP_ROWS = 150  # 5 recipients x 30 repeats of one title in the last 2.5 h

FILL_SQL = [
    """
    INSERT INTO recipients (id, external_id, name, email, phone, timezone, receive_email,
                            receive_sms, created_at, updated_at)
    SELECT g, 'technician:' || g, 'Tech ' || g, 'tech' || g || '@example.com',
           '+1555' || lpad(g::text, 7, '0'), 'UTC', true, true, now(), now()
    FROM generate_series(1, :recipients) AS g
    """,
    "SELECT setseed(0.42)",
    """
    CREATE TEMP TABLE src AS
    SELECT g,
           CASE WHEN g <= :loop_rows THEN 1 + g % 5
                ELSE (1 + (g::bigint * 7919) % :recipients)::int END AS rid,
           CASE WHEN g <= :loop_rows THEN 'Repair assigned (loop)'
                ELSE 'Repair #' || g || ' assigned' END AS title,
           CASE WHEN g <= :loop_rows OR random() >= 0.6 THEN 'sms' ELSE 'email' END AS channel,
           random() AS r,
           CASE WHEN g <= :loop_rows THEN :as_of - make_interval(mins => g)
                ELSE :as_of - make_interval(secs => random() * :spread) END AS created
    FROM generate_series(1, :rows) AS g
    """,
    """
    INSERT INTO notifications (id, recipient_id, template_name, title, message, priority,
                               category, context, read, created_at, flow_run_id,
                               deployment_name, request_id)
    SELECT g, rid, CASE WHEN g % 3 = 0 THEN 'repair_reminder' ELSE 'repair_assigned' END,
           title, title, 'normal', 'general', '{}', false, created,
           'run-' || (g / 1000), 'dispatch/hourly', 'req-' || (g / 100)
    FROM src
    """,
    """
    INSERT INTO delivery_logs (id, notification_id, channel, recipient_email, recipient_phone,
                               status, decision, error_code, error_class, error_message,
                               attempts, segments, cost, actual_cost, created_at, sent_at,
                               next_attempt_at)
    SELECT g, g, channel,
           CASE WHEN channel = 'email' THEN 'tech' || rid || '@example.com' END,
           CASE WHEN channel = 'sms' THEN '+1555' || lpad(rid::text, 7, '0') END,
           CASE WHEN r < 0.03 THEN (CASE WHEN r < 0.02 THEN 'failed_permanent' ELSE 'failed' END)
                WHEN r < 0.035 AND created > :as_of - interval '2 hours' THEN 'pending_retry'
                WHEN r < 0.045 AND created > :as_of - interval '2 hours' THEN 'pending'
                WHEN r >= 0.045 AND r < 0.06 THEN 'skipped'
                WHEN r < 0.5 THEN 'delivered' ELSE 'sent' END,
           '',
           CASE WHEN r < 0.03 THEN (CASE WHEN channel = 'email'
                THEN (CASE WHEN r < 0.02 THEN 'MessageRejected' ELSE 'Throttling' END)
                ELSE (CASE WHEN r < 0.02 THEN 'InvalidParameter' ELSE 'InternalError' END) END)
           END,
           CASE WHEN r < 0.02 THEN 'permanent' WHEN r < 0.03 THEN 'transient' END,
           CASE WHEN r < 0.03 THEN (CASE WHEN channel = 'email'
                THEN (CASE WHEN r < 0.02 THEN 'Email address is not verified. The following '
                      || 'identities failed the check in region US-EAST-1: tech' || rid
                      || '@example.com' ELSE 'Maximum sending rate exceeded.' END)
                ELSE (CASE WHEN r < 0.02 THEN 'Invalid parameter: PhoneNumber Reason: +1555'
                      || rid || ' is not valid' ELSE 'Request ' || md5(g::text)
                      || ' failed: Internal Error' END) END)
           END,
           1,
           CASE WHEN channel = 'sms' THEN 1 + (g % 7 = 0)::int END,
           CASE WHEN channel = 'sms' THEN 0.00645 * (1 + (g % 7 = 0)::int) END,
           CASE WHEN channel = 'sms' AND r >= 0.06 AND g % 10 <> 0
                THEN 0.00581 * (1 + (g % 7 = 0)::int) END,
           created,
           CASE WHEN r >= 0.06
                  OR (r >= 0.03 AND r < 0.045 AND created <= :as_of - interval '2 hours')
                THEN created + make_interval(secs => 0.2 + (g % 50) / 10.0) END,
           CASE WHEN r >= 0.03 AND r < 0.035 THEN created + interval '10 minutes'
                WHEN r >= 0.035 AND r < 0.045 THEN created END
    FROM src
    """,
    "DROP TABLE src",
    "VACUUM ANALYZE",
]

AUDITS: dict[str, Callable[..., Any]] = {
    "sms_cost": sms_cost_audit,
    "loops": loop_detection,
    "failures": failure_summary,
    "health": health,
}


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new, migrated database; dropped afterwards."""
    name = f"notifyops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fill(engine: Engine, rows: int, recipients: int, spread_hours: float = SPREAD_HOURS) -> float:
    params = {
        "rows": rows,
        "recipients": recipients,
        "loop_rows": LOOP_ROWS,
        "as_of": AS_OF,
        "spread": spread_hours * 3600,
    }
    started = time.perf_counter()
    with engine.connect() as connection:
        for statement in FILL_SQL[:-1]:
            connection.execute(text(statement), params)
        connection.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(FILL_SQL[-1]))
    return time.perf_counter() - started


def time_audit(
    engine: Engine,
    audit: Callable[..., Any],
    settings: Settings,
    repeat: int,
    policy: RollupPolicy = ROLLUPS,
) -> tuple[list[float], dict[str, Any]]:
    """Seconds of each of `repeat` runs, and the last report's JSON."""
    timings, report = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        with transaction(engine) as session:
            result = audit(
                session=session, as_of=AS_OF, window=WINDOW, settings=settings, rollups=policy
            )
        timings.append(time.perf_counter() - started)
        report = result.to_json()
    return timings, report


def first_fold(engine: Engine) -> float:
    """The first fold of every row (grace 0: nothing else writes during the benchmark)."""
    started = time.perf_counter()
    with transaction(engine) as session:
        fold(session, now=utcnow(), grace=timedelta(0))
    return time.perf_counter() - started


def pandas_failure_summary(engine: Engine) -> tuple[float, int]:
    """The naive way: the whole table into a DataFrame, then filter and group in pandas."""
    started = time.perf_counter()
    with engine.connect() as connection:
        frame = pd.read_sql(text("SELECT * FROM delivery_logs"), connection)
    start = pd.Timestamp(AS_OF - WINDOW)
    recent = frame[(frame.created_at > start) & (frame.created_at <= pd.Timestamp(AS_OF))]
    recent = recent[recent.status != "skipped"]
    failed = recent[recent.status.isin(["failed", "failed_permanent"])]
    groups = failed.groupby(["error_class", "error_code", "error_message"]).size()
    recent.groupby("channel").size()
    return time.perf_counter() - started, len(groups)


def run(
    rows: int, recipients: int, repeat: int, admin_url: str, spread_hours: float = SPREAD_HOURS
) -> dict[str, Any]:
    """Fill a scratch database, fold once, then time every audit from the rollups and by a full
    scan (`repeat` times each), and pandas twice."""
    with scratch_database(admin_url) as url:
        engine = make_engine(url)
        settings = load_settings(database_url=url, sender="memory")
        fill_s = fill(engine, rows, recipients, spread_hours)
        results: dict[str, Any] = {
            "rows": rows,
            "spread_hours": spread_hours,
            "fill_s": fill_s,
            "first_fold_s": first_fold(engine),
            "equal": {},
        }
        for name, audit in AUDITS.items():
            results[name], rolled = time_audit(engine, audit, settings, repeat)
            results[f"{name}_full_scan"], full = time_audit(
                engine, audit, settings, repeat, FULL_SCAN
            )
            results["equal"][name] = rolled == full
        results["refold_s"] = first_fold(engine)  # nothing new: the cost of promoting open rows
        pandas_runs = [pandas_failure_summary(engine)[0] for _ in range(min(2, repeat))]
        results["pandas_failure_summary"] = pandas_runs
        engine.dispose()
    return results


def as_json(results: dict[str, Any]) -> dict[str, Any]:
    """The one JSON object `--json` prints: median warm times in ms, the first fold, the scans."""

    def ms(seconds: list[float]) -> float:
        return round(statistics.median(seconds) * 1000, 1)

    return {
        "rows": results["rows"],
        **{f"{name}_ms": ms(results[name]) for name in AUDITS},
        "first_fold_ms": round(results["first_fold_s"] * 1000, 1),
        "refold_nothing_new_ms": round(results["refold_s"] * 1000, 1),
        "full_scan_ms": {name: ms(results[f"{name}_full_scan"]) for name in AUDITS},
        "equal_to_full_scan": all(results["equal"].values()),
        "equal_by_audit": results["equal"],
        "fill_s": round(results["fill_s"], 1),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"{results['rows']:,} delivery rows over {results['spread_hours']:g} h, window 24 h "
        f"(fill {results['fill_s']:.1f} s, first fold {results['first_fold_s'] * 1000:.0f} ms)",
        "",
        "| audit | first (ms) | median (ms) | best (ms) | same as full scan |",
        "|---|---:|---:|---:|---|",
    ]
    names = [*AUDITS, *(f"{name}_full_scan" for name in AUDITS), "pandas_failure_summary"]
    for name in names:
        t = [s * 1000 for s in results[name]]
        same = results["equal"].get(name, "")
        lines.append(
            f"| {name} | {t[0]:.0f} | {statistics.median(t):.0f} | {min(t):.0f} | {same} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--spread-hours", type=float, default=SPREAD_HOURS)
    parser.add_argument("--url", default=ADMIN_URL, help="admin URL (creates a scratch database)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = run(args.rows, args.recipients, args.repeat, args.url, args.spread_hours)
    print(json.dumps(as_json(results)) if args.json else markdown(results))
    return results


if __name__ == "__main__":
    main()
