"""Purge (runbook section 4, "Purge Old Tasks (Emergency Only)"): stale queued rows become
`purged`, a final status; nothing is deleted and nothing else is touched.

Only `pending` and `pending_retry` rows created before the cut-off are purged (a claimed or
sending row is in a deliverer's hands). A dry run counts per filter value and shows a sample;
an applied purge records every row it purged, with the status it had, under its action id.
Running the same purge again finds nothing left to purge.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CursorResult, func, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.actions.audit_trail import Actor, record_action
from notify.actions.selection import (
    DL,
    RowFilters,
    RowSample,
    conditions,
    counts_by_value,
    sample_rows,
    take_rows,
    taken_by,
)
from notify.db import DUE_STATUSES, Status
from notify.rendering import TemplateCatalog

DIMENSIONS = ("channel", "status", "template", "priority", "recipient")
DECISION_MAX_CHARS = 300


class PurgeRequest(RowFilters):
    """Which stale queued rows to purge."""

    older_than_hours: float = Field(
        ...,
        gt=0,
        le=24 * 366,
        description="Purge queued rows created more than this many hours ago",
    )


class PurgeResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    action_id: int
    applied: bool
    actor: str
    cutoff: datetime
    matched: int
    purged: int
    counts: dict[str, dict[str, int]]
    sample: list[RowSample]


def purge(
    *,
    session: Session,
    request: PurgeRequest,
    now: datetime,
    actor: Actor,
    apply: bool,
    catalog: TemplateCatalog,
) -> PurgeResult:
    """Count (and with `apply`, purge) the stale queued rows the request matches (`catalog`:
    the templates a template filter may name, besides those of stored rows)."""
    cutoff = now - timedelta(hours=request.older_than_hours)
    where = [*conditions(session, request, DUE_STATUSES, catalog), DL.c.created_at < cutoff]
    counts = counts_by_value(session, where, DIMENSIONS)
    matched = sum(counts["status"].values())
    sample = sample_rows(session, where)
    filters = {**request.model_dump(mode="json", exclude_none=True), "cutoff": cutoff.isoformat()}
    record = record_action(
        session=session, actor=actor, action="purge", now=now, applied=apply, filters=filters
    )
    purged = _apply(session, record.id, where) if apply else 0
    record.counts = {"matched": matched, "purged": purged, **counts}
    return PurgeResult(
        action_id=record.id,
        applied=apply,
        actor=actor.describe(),
        cutoff=cutoff,
        matched=matched,
        purged=purged,
        counts=counts,
        sample=sample,
    )


def _apply(session: Session, action_id: int, where: Sequence[ColumnElement[bool]]) -> int:
    take_rows(session, action_id, where)
    note = f" | purged by operator action {action_id}"
    statement = (
        update(DL)
        .where(taken_by(action_id), DL.c.status.in_(DUE_STATUSES))
        .values(
            status=Status.purged.value,
            lease_owner=None,
            lease_expires_at=None,
            decision=func.substr(DL.c.decision + note, 1, DECISION_MAX_CHARS),
        )
    )
    result = session.execute(statement)
    return max(result.rowcount or 0, 0) if isinstance(result, CursorResult) else 0
