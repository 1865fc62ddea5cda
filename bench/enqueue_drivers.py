"""The insert step of enqueue alone, four ways, on one scratch Postgres database.

    python -m bench.enqueue_drivers [--notifications 10000] [--repeat 3] [--json]

The same rows every time (the benchmark request: one notification and two delivery rows per
recipient, ids reserved from the sequence first), stored by:
- `psycopg2_copy_text`: psycopg2 `copy_expert`, COPY text format, every field encoded by the
  generic `copy_line` (notify/enqueue_store.py encodes a request's shared columns once, so its
  client side is cheaper than this);
- `psycopg3_copy_text`: the same text through psycopg 3 `cursor.copy().write()`;
- `psycopg3_copy_binary`: psycopg 3 binary COPY, `write_row` per row with declared types;
- `executemany`: SQLAlchemy Core executemany INSERT (RETURNING ids for notifications), the path
  enqueue used before.
psycopg 3 is not a project dependency: its rows are skipped unless `import psycopg` works (e.g.
`pip install --target /tmp/psy3 "psycopg[binary]"` and PYTHONPATH=.:/tmp/psy3). Messages per
second count delivery rows (two per notification); best of `--repeat`; a loaded machine.

What it showed (2 shared cores, 10,000 notifications): binary COPY 70k msg/s, text COPY 38-40k,
executemany 17k. Timing the COPY calls alone with the data prepared beforehand, text took 0.255 s
and binary (with its `write_row` calls) 0.233 s: the server's work is nearly the same, the gap is
the client's encoding, which enqueue avoids by encoding a request's shared columns once. Hence
psycopg2 text COPY (no new dependency, on the session's own connection and transaction).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import ADMIN_URL, log, prepare_database, reset_outbox, scratch_database
from notify.bulk_insert import copy_line, insert_many, insert_returning_ids
from notify.db import DELIVERY_LOGS, NOTIFICATIONS
from notify.enqueue_store import LOG_COPY_COLUMNS, NOTIFICATION_COPY_COLUMNS

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MESSAGE = {
    "title": "Repair R-1 assigned",
    "message": "Repair R-1 has been assigned to you: unit 1234.\n\nOpen the job...\n",
    "html": "<html><body><p>Repair <strong>R-1</strong> has been assigned.</p></body></html>",
    "sms_text": "Repair R-1 assigned to you: unit 1234. Address and time window are in the portal.",
    "priority": "urgent",
    "template_name": "repair_assigned",
    "category": "repairs",
}
CONTEXT = json.dumps({"repair_id": "R-1", "unit_number": "1234"})


def note_row(nid: int, rid: int, n: int) -> tuple[Any, ...]:
    return (nid, rid, f"bench#{n}", *MESSAGE.values(), CONTEXT, "bench", None, None, False, NOW)


def log_rows(nid: int, n: int) -> list[tuple[Any, ...]]:
    email = (nid, f"tech{n}@example.com", None, "email", "pending", "email: send", 0, None)
    sms = (nid, None, f"+1206{n:07d}", "sms", "pending", "sms: send", 0, 1)
    return [(*email, None, NOW, NOW), (*sms, Decimal("0.006450"), NOW, NOW)]


def _reserve(cursor: Any, n: int) -> list[int]:
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence('notifications', 'id')) FROM generate_series(1, %s)",
        (n,),
    )
    return sorted(row[0] for row in cursor.fetchall())


def _copy_sql(table: str, columns: tuple[str, ...], binary: bool = False) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN" + (
        " (FORMAT binary)" if binary else ""
    )


def _text_data(ids: list[int], rids: list[int]) -> tuple[str, str]:
    notes = "".join(
        copy_line(note_row(i, r, n)) for n, (i, r) in enumerate(zip(ids, rids, strict=True))
    )
    logs = "".join(copy_line(row) for n, i in enumerate(ids) for row in log_rows(i, n))
    return notes, logs


def psycopg2_copy_text(url: str, rids: list[int]) -> None:
    import io

    import psycopg2

    connection = psycopg2.connect(_dsn(url))
    with connection, connection.cursor() as cursor:
        notes, logs = _text_data(_reserve(cursor, len(rids)), rids)
        cursor.copy_expert(
            _copy_sql("notifications", NOTIFICATION_COPY_COLUMNS), io.StringIO(notes)
        )
        cursor.copy_expert(_copy_sql("delivery_logs", LOG_COPY_COLUMNS), io.StringIO(logs))
    connection.close()


def psycopg3_copy_text(url: str, rids: list[int]) -> None:
    import psycopg

    with psycopg.connect(_dsn(url)) as connection, connection.cursor() as cursor:
        notes, logs = _text_data(_reserve(cursor, len(rids)), rids)
        with cursor.copy(_copy_sql("notifications", NOTIFICATION_COPY_COLUMNS)) as copy:
            copy.write(notes)
        with cursor.copy(_copy_sql("delivery_logs", LOG_COPY_COLUMNS)) as copy:
            copy.write(logs)


NOTE_TYPES = ["int4", "int4", "varchar", "varchar", "text", "text", "text", "varchar", "varchar"]
NOTE_TYPES += ["varchar", "json", "varchar", "varchar", "varchar", "bool", "timestamptz"]
LOG_TYPES = ["int4", "varchar", "varchar", "varchar", "varchar", "varchar", "int4", "int4"]
LOG_TYPES += ["numeric", "timestamptz", "timestamptz"]


def psycopg3_copy_binary(url: str, rids: list[int]) -> None:
    import psycopg

    with psycopg.connect(_dsn(url)) as connection, connection.cursor() as cursor:
        ids = _reserve(cursor, len(rids))
        sql = _copy_sql("notifications", NOTIFICATION_COPY_COLUMNS, binary=True)
        with cursor.copy(sql) as copy:
            copy.set_types(NOTE_TYPES)
            for n, (i, r) in enumerate(zip(ids, rids, strict=True)):
                copy.write_row(note_row(i, r, n))
        with cursor.copy(_copy_sql("delivery_logs", LOG_COPY_COLUMNS, binary=True)) as copy:
            copy.set_types(LOG_TYPES)
            for n, i in enumerate(ids):
                for row in log_rows(i, n):
                    copy.write_row(row)


def executemany(url: str, rids: list[int]) -> None:
    engine = create_engine(url, executemany_mode="values_plus_batch")
    columns = NOTIFICATION_COPY_COLUMNS[1:]
    with engine.begin() as connection:
        notes = [dict(zip(columns, note_row(0, r, n)[1:], strict=True)) for n, r in enumerate(rids)]
        for note in notes:
            note["context"] = json.loads(note["context"])
        ids = insert_returning_ids(connection, NOTIFICATIONS, notes)
        logs = [
            dict(zip(LOG_COPY_COLUMNS, row, strict=True))
            for n, i in enumerate(ids)
            for row in log_rows(i, n)
        ]
        insert_many(connection, DELIVERY_LOGS, logs)
    engine.dispose()


PATHS: dict[str, Callable[[str, list[int]], None]] = {
    "psycopg2_copy_text": psycopg2_copy_text,
    "psycopg3_copy_text": psycopg3_copy_text,
    "psycopg3_copy_binary": psycopg3_copy_binary,
    "executemany": executemany,
}


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _have_psycopg3() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


def run(notifications: int, repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {"notifications": notifications, "messages": 2 * notifications}
    with scratch_database(ADMIN_URL, prefix="notifyops_bench_drivers") as url:
        prepare_database(url, notifications)
        engine = create_engine(url)
        with engine.connect() as connection:
            rids = list(connection.execute(text("SELECT id FROM recipients ORDER BY id")).scalars())
        engine.dispose()
        for name, path in PATHS.items():
            if name.startswith("psycopg3") and not _have_psycopg3():
                results[name] = None
                continue
            best = float("inf")
            for _ in range(repeat):
                reset_outbox(url)
                started = time.perf_counter()
                path(url, rids)
                best = min(best, time.perf_counter() - started)
            results[name] = {
                "seconds": round(best, 3),
                "msg_per_s": round(2 * notifications / best),
            }
            log(f"{name}: {2 * notifications / best:,.0f} msg/s ({best:.2f} s)")
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="enqueue's insert step, four ways")
    parser.add_argument("--notifications", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.notifications, args.repeat)
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
