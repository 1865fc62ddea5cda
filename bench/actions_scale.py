"""Runbook actions at scale: purge, redrive, the index check and the inbox on N delivery rows, on
SQLite and PostgreSQL.

    python -m bench.actions_scale [--rows 100000]

N notifications over 1,000 recipients, one delivery row each, half `pending` (stale) and half
`failed` (Throttling). Times a purge dry run and apply, a redrive dry run, apply and the same
redrive again after its rows failed again, `missing_indexes`, and one recipient's inbox history.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text

from notify.actions.audit_trail import Actor
from notify.actions.inbox import inbox
from notify.actions.indexes import missing_indexes
from notify.actions.purge import PurgeRequest, purge
from notify.actions.redrive import RedriveRequest, redrive
from notify.db import DeliveryLog, Notification, Recipient, make_engine, transaction
from notify.migrate import upgrade_database

ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
ACTOR = Actor(name="bench")


def fill(engine: Engine, rows: int) -> None:
    old = NOW - timedelta(days=2)
    people = [{"id": r, "external_id": f"technician:{r}", "name": ""} for r in range(1, 1001)]
    notes = [
        {"id": n, "recipient_id": 1 + n % 1000, "template_name": "daily_schedule", "title": "t",
         "message": "m", "created_at": old + timedelta(seconds=n), "read": n % 3 == 0}
        for n in range(1, rows + 1)
    ]  # fmt: skip
    logs = [
        {"id": n, "notification_id": n, "channel": "sms", "created_at": old + timedelta(seconds=n),
         "status": "pending" if n % 2 else "failed", "next_attempt_at": old,
         "error_code": None if n % 2 else "Throttling",
         "error_class": None if n % 2 else "transient"}
        for n in range(1, rows + 1)
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(Recipient), people)
        connection.execute(insert(Notification), notes)
        connection.execute(insert(DeliveryLog), logs)
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def timed(label: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = work()
    print(f"  {label:<34} {time.perf_counter() - start:8.3f} s")
    return result


def in_session(engine: Engine, call: Callable[..., Any], **kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        with transaction(engine) as session:
            return call(session=session, **kwargs)

    return run


def measure(engine: Engine, rows: int) -> None:
    timed(f"insert {rows:,} rows", lambda: fill(engine, rows))
    stale = PurgeRequest(older_than_hours=24)
    fails = RedriveRequest(statuses=["failed"], error_codes=["Throttling"])
    common = {"now": NOW, "actor": ACTOR}
    dry = timed("purge dry run", in_session(engine, purge, request=stale, apply=False, **common))
    done = timed("purge apply", in_session(engine, purge, request=stale, apply=True, **common))
    print(f"    matched {dry.matched:,}, purged {done.purged:,}")
    timed("redrive dry run", in_session(engine, redrive, request=fails, apply=False, **common))
    first = timed("redrive apply", in_session(engine, redrive, request=fails, apply=True, **common))
    with engine.begin() as connection:  # delivered again and failed again
        connection.execute(
            text("UPDATE delivery_logs SET status = 'failed' WHERE status = 'pending'")
        )
    again = timed(
        "the same redrive again", in_session(engine, redrive, request=fails, apply=True, **common)
    )
    print(
        f"    redriven {first.redriven:,}, then {again.redriven:,} "
        f"({again.already_redriven:,} already)"
    )
    timed("missing_indexes", lambda: missing_indexes(engine))
    box = in_session(engine, inbox, recipient="technician:42", limit=20)
    timed("inbox history (20 of one recipient)", box)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade_database(url)
        print("SQLite")
        measure(make_engine(url), rows)
    name = f"notifyops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
        upgrade_database(url)
        print("PostgreSQL")
        engine = make_engine(url)
        measure(engine, rows)
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
