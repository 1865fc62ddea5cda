"""An enqueue process for the kill test.

    python -m tests.workers.enqueue_worker DATABASE_URL RECIPIENTS CHUNK KEY [PART]

Sends `repair_assigned` to tech:0 .. tech:RECIPIENTS-1 as one request with idempotency key KEY,
CHUNK recipients at a time, in one transaction; with PART, in parts of PART recipients, each in
its own transaction (as the dispatch flow stores a large request), printing `part N` after part N
committed. Prints `ready` before it starts and `done` after it committed, so a test can kill it
in between.
"""

from __future__ import annotations

import sys

from notify.db import make_engine, transaction, utcnow
from notify.enqueue import SendRequest, enqueue, request_parts
from notify.rendering import TemplateCatalog
from notify.settings import Priority, load_settings


def main(url: str, recipients: int, chunk: int, key: str, part: int) -> None:
    settings = load_settings(database_url=url, sender="memory")
    engine, catalog = make_engine(url), TemplateCatalog()
    request = SendRequest(
        template="repair_assigned",
        to=tuple(f"tech:{n}" for n in range(recipients)),
        context={"repair_id": "R-9", "unit_number": "1"},
        priority=Priority.urgent,
        idempotency_key=key,
    )
    print("ready", flush=True)
    parts = request_parts(request, part) if part else [None]
    for n, positions in enumerate(parts):
        with transaction(engine) as session:
            enqueue(
                session=session,
                request=request,
                catalog=catalog,
                settings=settings,
                now=utcnow(),
                chunk=chunk,
                part=positions,
            )
        if part:
            print(f"part {n}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    part = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], part)
