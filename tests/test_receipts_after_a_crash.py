"""A deliverer killed mid-batch, then receipts: no `unknown` email row is left and nothing was
sent twice. The provider's own log (written before it answers, with the message id and our
delivery-id tag, as SES's events carry them) is played back as SES Send events through the
receipts pipeline; rows it never accepted go back to the queue once later Send events show the
pipeline is not simply late, and are delivered once."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from notify.db import DeliveryLog, transaction, utcnow
from notify.outbox import rescue_expired
from notify.receipts.crash import resolve_crash_rows
from notify.receipts.queue import store_and_apply
from tests.conftest import empty_tables, engine_for
from tests.receipt_samples import envelope, ses_event
from tests.test_reliability import (
    fill,
    logged_so_far,
    provider_log,
    start_worker,
    status_counts,
)

pytestmark = pytest.mark.postgres
RECIPIENTS = 400
HORIZON = timedelta(seconds=1)  # NOTIFY_RECEIPTS_UNKNOWN_HORIZON_MINUTES, shrunk for a test
LEASE_S = 5  # the shortest lease the settings accept


@pytest.fixture
def pg(postgres_url: str) -> Engine:
    engine = engine_for(postgres_url)
    empty_tables(engine)
    return engine


def accepted(log: Path) -> list[tuple[str, str, int, str]]:
    """(channel, address, delivery id, message id) for each message the provider accepted."""
    if not log.exists():
        return []
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def send_events(log: Path, at: datetime) -> list[str]:
    """SES Send events for every email the provider accepted, tagged as our sends are."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return [
        envelope(ses_event("Send", message, to=to, delivery_id=row, sent=stamp, at=stamp))
        for channel, to, row, message in accepted(log)
        if channel == "email"
    ]


def unknown_ids(engine: Engine) -> set[int]:
    with transaction(engine) as session:
        query = select(DeliveryLog.id).where(DeliveryLog.status == "unknown")
        return set(session.scalars(query))


def test_kill_then_receipts_leaves_no_unknown_email_and_sends_nothing_twice(
    pg: Engine, postgres_url: str, tmp_path: Path
) -> None:
    fill(pg, postgres_url, RECIPIENTS, sms=False)
    killed = tmp_path / "killed.jsonl"
    worker = start_worker(postgres_url, "doomed", killed, 0.02, 1000, 8, 40, LEASE_S)
    deadline = time.monotonic() + 60
    while logged_so_far(killed) < 120 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    time.sleep(LEASE_S + 0.5)  # the dead deliverer's lease expires
    crash = utcnow()
    with transaction(pg) as session:
        rescue_expired(session=session, now=crash)
    in_doubt = unknown_ids(pg)
    reached = {row for _, _, row, _ in accepted(killed)}
    assert in_doubt, "the kill left rows in flight"

    with transaction(pg) as session:  # the receipts poll notes when it first saw them unknown
        resolve_crash_rows(session=session, now=crash, horizon=HORIZON)
    store_and_apply(engine=pg, bodies=send_events(killed, crash), now=crash)
    assert unknown_ids(pg) == in_doubt - reached, "a Send receipt resolves its crash row"

    after_crash = tmp_path / "after.jsonl"
    assert start_worker(postgres_url, "next", after_crash, 0.0, 1000, 8, 40).wait(timeout=300) == 0
    with transaction(pg) as session:  # no later Send receipts yet: a late pipeline, not "unsent"
        assert resolve_crash_rows(session=session, now=crash, horizon=HORIZON).requeued_email == 0
    time.sleep(2 * HORIZON.total_seconds())
    later = utcnow()  # Send receipts of the later sends arrive
    store_and_apply(engine=pg, bodies=send_events(after_crash, later), now=later)
    with transaction(pg) as session:
        settled = resolve_crash_rows(session=session, now=later, horizon=HORIZON)
    assert settled.requeued_email == len(in_doubt - reached)
    final = tmp_path / "final.jsonl"
    assert start_worker(postgres_url, "final", final, 0.0, 1000, 8, 40).wait(timeout=300) == 0

    received = provider_log(killed, after_crash, final)
    assert [key for key, n in received.items() if n > 1] == [], "nothing sent twice"
    assert sum(received.values()) == RECIPIENTS, "every message reached the provider once"
    assert status_counts(pg) == {"sent": RECIPIENTS, "skipped": RECIPIENTS}, "no unknown left"
