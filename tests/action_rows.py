"""Crafted delivery rows for the runbook action tests (ids fixed, so tests name them)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from notify.db import DeliveryLog, OperatorAction, OperatorActionRow, transaction
from tests.factories import AS_OF, Rows

NOW = AS_OF
OLD = NOW - timedelta(hours=30)
FRESH = NOW - timedelta(hours=1)


def insert(rows: Rows, engine: Engine, priorities: dict[int, str] | None = None) -> None:
    for note in rows.notifications:
        note["priority"] = (priorities or {}).get(note["id"], "normal")
    rows.insert(engine)


def queue(engine: Engine) -> None:
    """ids 1-3: old pending sms (daily_schedule, technician:1, 1 and 2 high priority);
    4-5: old pending_retry email (technician:2); 6: fresh pending sms; 7: old claimed email;
    8: old failed email."""
    rows = Rows()
    one = rows.recipient("technician:1")
    two = rows.recipient("technician:2", phone=None)
    for _ in range(3):
        rows.delivery(
            one,
            created_at=OLD,
            status="pending",
            template_name="daily_schedule",
            next_attempt_at=OLD,
        )
    for _ in range(2):
        rows.delivery(
            two,
            created_at=OLD,
            status="pending_retry",
            channel="email",
            next_attempt_at=OLD,
            error_code="Throttling",
            error_class="transient",
        )
    rows.delivery(one, created_at=FRESH, status="pending", next_attempt_at=FRESH)
    rows.delivery(one, created_at=OLD, status="claimed", channel="email", lease_owner="w")
    rows.delivery(one, created_at=OLD, status="failed", channel="email")
    insert(rows, engine, {1: "high", 2: "high"})


def failures(engine: Engine) -> None:
    """ids 1-3: failed sms Throttling (transient); 4-5: failed email MessageRejected
    (permanent, failed_permanent); 6: unknown email; 7: failed email InternalFailure, fresh;
    8: sent sms."""
    rows = Rows()
    one = rows.recipient("technician:1")
    two = rows.recipient("technician:2")
    for _ in range(3):
        rows.delivery(
            one,
            created_at=OLD,
            status="failed",
            error_code="Throttling",
            error_class="transient",
            attempts=5,
        )
    for _ in range(2):
        rows.delivery(
            two,
            created_at=OLD,
            status="failed_permanent",
            channel="email",
            error_code="MessageRejected",
            error_class="permanent",
            attempts=1,
        )
    rows.delivery(two, created_at=OLD, status="unknown", channel="email", attempts=1)
    rows.delivery(
        two,
        created_at=FRESH,
        status="failed",
        channel="email",
        error_code="InternalFailure",
        error_class="transient",
        attempts=5,
    )
    rows.delivery(one, created_at=OLD, status="sent", attempts=1)
    insert(rows, engine)


def status_of(engine: Engine) -> dict[int, str]:
    with transaction(engine) as session:
        return dict(session.execute(select(DeliveryLog.id, DeliveryLog.status)).tuples().all())


def decision_of(engine: Engine, row_id: int) -> str:
    with transaction(engine) as session:
        return str(session.scalar(select(DeliveryLog.decision).where(DeliveryLog.id == row_id)))


def actions(engine: Engine) -> list[OperatorAction]:
    with transaction(engine) as session:
        return list(session.scalars(select(OperatorAction).order_by(OperatorAction.id)))


def action_rows(engine: Engine, action_id: int) -> dict[int, str]:
    r = OperatorActionRow
    with transaction(engine) as session:
        query = select(r.delivery_log_id, r.from_status).where(r.action_id == action_id)
        return dict(session.execute(query).tuples().all())


def set_status(engine: Engine, ids: list[int], status: str, **values: Any) -> None:
    with transaction(engine) as session:
        session.execute(
            DeliveryLog.__table__.update()
            .where(DeliveryLog.id.in_(ids))
            .values(status=status, **values)
        )
