"""Receipts applied per second: a batch of parsed SES events and SMS log lines stored and
applied to the delivery log (match, forward-only status, suppressions, price), on PostgreSQL
(and SQLite for comparison).

    python -m bench.receipts [--events 20000] [--chunk 1000] [--json]

Delivery rows exist (sent, with provider message ids); events are parsed before the clock
starts (parsing is timed on its own). Each chunk is one transaction, as one SQS chunk or one
CloudWatch Logs page is in a poll. A second pass applies the same events again (all duplicates).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text

from notify.db import DELIVERY_LOGS, Notification, Recipient, make_engine, transaction
from notify.migrate import upgrade_database
from notify.receipts import store_receipts
from notify.receipts.events import ReceiptEvent
from notify.receipts.parse import parse_sms_log, parse_sqs_body
from tests.receipt_samples import envelope, ses_event, sms_line

ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
# event mix per 20 messages: mostly deliveries, some bounces, complaints, delays, SMS
MIX = ["Delivery"] * 12 + ["Bounce", "Complaint", "DeliveryDelay", "Send"] + ["sms"] * 4


def seed(engine: Engine, count: int) -> None:
    created = NOW - timedelta(hours=1)
    with engine.begin() as connection:
        connection.execute(
            insert(Recipient),
            [
                {
                    "id": 1,
                    "external_id": "bench:1",
                    "name": "b",
                    "created_at": created,
                    "updated_at": created,
                }
            ],
        )
        connection.execute(
            insert(Notification),
            [
                {
                    "id": n,
                    "recipient_id": 1,
                    "template_name": "t",
                    "title": "t",
                    "message": "m",
                    "created_at": created,
                }
                for n in range(1, count + 1)
            ],
        )
        connection.execute(insert(DELIVERY_LOGS), [_row(n, created) for n in range(1, count + 1)])


def _row(n: int, created: datetime) -> dict[str, Any]:
    sms = MIX[n % len(MIX)] == "sms"
    return {
        "id": n,
        "notification_id": n,
        "channel": "sms" if sms else "email",
        "recipient_email": None if sms else f"user{n}@example.com",
        "recipient_phone": f"+1206{n:07d}" if sms else None,
        "status": "sent",
        "provider_message_id": f"pm-{n}",
        "sent_at": created,
        "created_at": created,
        "cost": Decimal("0.00645") if sms else None,
        "decision": "",
        "attempts": 1,
    }


def raw_events(count: int) -> list[tuple[str, str]]:
    out = []
    for n in range(1, count + 1):
        kind = MIX[n % len(MIX)]
        if kind == "sms":
            out.append(("sms", sms_line(f"pm-{n}", phone=f"+1206{n:07d}", price=0.00581)))
        else:
            record = ses_event(kind, f"pm-{n}", to=f"user{n}@example.com", delivery_id=n)
            out.append(("ses", envelope(record)))
    return out


def parse_all(raw: list[tuple[str, str]]) -> list[ReceiptEvent]:
    logged = NOW - timedelta(minutes=5)
    return [
        parse_sms_log(body, logged_at=logged) if source == "sms" else parse_sqs_body(body)
        for source, body in raw
    ]


def apply_all(engine: Engine, events: list[ReceiptEvent], chunk: int) -> dict[str, Any]:
    changed = duplicates = 0
    started = time.perf_counter()
    for start in range(0, len(events), chunk):
        with transaction(engine) as session:
            report = store_receipts(session=session, events=events[start : start + chunk], now=NOW)
        changed += report.changed
        duplicates += report.duplicates
    seconds = time.perf_counter() - started
    return {
        "events_per_s": round(len(events) / seconds),
        "seconds": round(seconds, 3),
        "changed": changed,
        "duplicates": duplicates,
    }


def measure(url: str, count: int, chunk: int, events: list[ReceiptEvent]) -> dict[str, Any]:
    upgrade_database(url)
    engine = make_engine(url)
    seed(engine, count)
    result = {
        "first_pass": apply_all(engine, events, chunk),
        "duplicate_pass": apply_all(engine, events, chunk),
    }
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print JSON (the default output)")
    args = parser.parse_args()
    raw = raw_events(args.events)
    started = time.perf_counter()
    events = parse_all(raw)
    parse_per_s = round(len(raw) / (time.perf_counter() - started))
    results: dict[str, Any] = {
        "events": args.events,
        "chunk": args.chunk,
        "parse_per_s": parse_per_s,
    }
    name = f"bench_receipts_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        results["postgres"] = measure(
            ADMIN.rsplit("/", 1)[0] + f"/{name}", args.events, args.chunk, events
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{tmp}/bench.db", args.events, args.chunk, events)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
