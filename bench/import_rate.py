"""Recipient import rate: parse + validate + bulk upsert of N rows, on SQLite and PostgreSQL.

    python -m bench.import_rate [--rows 10000]

Writes a realistic roster (2% bad rows), then times `parse_roster_file` (validation with
phonenumbers, email-validator, zoneinfo) and `upsert_recipients` separately, first as inserts and
again as updates of the same external_ids.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from notify.db import make_engine, transaction
from notify.migrate import upgrade_database
from notify.recipients import upsert_recipients
from notify.roster import ALL_COLUMNS, parse_roster_file

ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
ZONES = ("America/Chicago", "America/New_York", "America/Denver", "America/Los_Angeles")


def write_roster(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(ALL_COLUMNS)
        for n in range(rows):
            bad = n % 50 == 49
            phone = "555-0100" if bad else f"+1206{n % 10_000_000:07d}"
            out.writerow(
                [
                    f"technician:{n}",
                    f"Tech {n}",
                    f"tech{n}@example.com",
                    phone,
                    ZONES[n % 4],
                    "true",
                    "true" if n % 3 else "false",
                    "22:00" if n % 5 == 0 else "",
                    "07:00" if n % 5 == 0 else "",
                ]
            )


def measure(url: str, roster: Path) -> dict[str, float]:
    upgrade_database(url)
    engine = make_engine(url)
    started = time.perf_counter()
    parsed = parse_roster_file(roster)
    parse_s = time.perf_counter() - started
    result = {
        "rows": parsed.total,
        "valid": len(parsed.rows),
        "rejected": len(parsed.errors),
        "validate_per_s": round(parsed.total / parse_s),
    }
    for phase in ("insert", "update"):
        started = time.perf_counter()
        with transaction(engine) as session:
            upsert_recipients(session=session, rows=parsed.rows)
        result[f"{phase}_per_s"] = round(len(parsed.rows) / (time.perf_counter() - started))
    total = parse_s + len(parsed.rows) / result["insert_per_s"]
    result["end_to_end_per_s"] = round(parsed.total / total)
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        roster = Path(tmp) / "roster.csv"
        write_roster(roster, args.rows)
        results = {"sqlite": measure(f"sqlite:///{tmp}/bench.db", roster)}
        name = f"bench_import_{uuid.uuid4().hex[:8]}"
        admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            results["postgres"] = measure(ADMIN.rsplit("/", 1)[0] + f"/{name}", roster)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
