"""Acknowledge receipts with no row (runbook, Receipts, "Data loss"): a receipt carrying our
delivery id tag that matches no delivery row is health's P1 `data-loss` until someone has looked
into it. Once the cause is known (another installation sending on the same account and
configuration set, a database restored from a backup older than the send), the operator
acknowledges it: the receipt is kept, its state becomes `acknowledged` (never retried, no longer
counted by health) and its reason says who and why. A new receipt of the kind pages again.

By receipt id, by delivery id tag, or by when it was received; a dry run lists what it would
acknowledge. Ids naming another kind of receipt are refused, each named with why. Acknowledging
is idempotent: an acknowledged receipt is counted as such and left alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.actions.audit_trail import Actor, record_action
from notify.audits.health import orphan_receipts
from notify.db import DeliveryLog, Receipt
from notify.errors import InputError
from notify.forms import empty_is_none
from notify.receipts.events import State

ACTION = "acknowledge-receipts"
REASON_MAX_CHARS = 200
RECEIPT_REASON_MAX_CHARS = 300
SAMPLE = 20
RECORDED_IDS = 1_000  # receipt ids kept in the audit trail's counts, at most
DbId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class AcknowledgeRequest(BaseModel):
    """Which receipts with no row to acknowledge, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str = Field(
        ...,
        min_length=1,
        max_length=REASON_MAX_CHARS,
        description="Why: what the investigation found (kept with each receipt)",
    )
    ids: list[DbId] = Field(default_factory=list, description="Only these receipts (receipts.id)")
    delivery_ids: list[DbId] = Field(
        default_factory=list, description="Only receipts carrying these delivery id tags"
    )
    received_after: datetime | None = Field(
        None, description="Only receipts received at or after this time (ISO 8601 with a zone)"
    )
    received_before: datetime | None = Field(
        None, description="Only receipts received before this time (ISO 8601 with a zone)"
    )

    @field_validator("reason", mode="before")
    @classmethod
    def _a_reason_said(cls, value: Any) -> Any:
        """Spaces around a reason are dropped; one of spaces only is none, and refused."""
        return value.strip() if isinstance(value, str) else value

    @field_validator("received_after", "received_before", mode="before")
    @classmethod
    def _empty_is_any(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("received_after", "received_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-30T08:00:00+00:00")
        return value

    @field_validator("ids", "delivery_ids")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _a_range_that_can_match(self) -> Self:
        after, before = self.received_after, self.received_before
        if after is not None and before is not None and after >= before:
            raise ValueError(
                f"received_after: {after.isoformat()} is not before received_before "
                f"{before.isoformat()}: no receipt can match"
            )
        return self


class ReceiptSample(BaseModel):
    """One receipt as a dry run shows it (no address: the row it named is gone)."""

    model_config = ConfigDict(frozen=True)

    id: int
    source: str
    event_type: str
    delivery_id: int | None
    provider_message_id: str | None
    occurred_at: datetime | None
    received_at: datetime


class AcknowledgeResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    action_id: int
    applied: bool
    actor: str
    reason: str
    matched: int  # receipts with no row the filters match, still unmatched
    already_acknowledged: int  # of the ids or delivery ids given
    acknowledged: int
    sample: list[ReceiptSample]


def acknowledge_receipts(
    *, session: Session, request: AcknowledgeRequest, now: datetime, actor: Actor, apply: bool
) -> AcknowledgeResult:
    """Count (and with `apply`, acknowledge) the receipts with no row the request matches;
    InputError naming each given receipt id that is not one."""
    if request.ids:
        _refuse_others(session, request.ids)
    narrowed = _filters(request)
    where = [*orphan_receipts(), *narrowed]
    ids = list(session.scalars(select(Receipt.id).where(*where).order_by(Receipt.id)))
    already = 0
    if request.ids or request.delivery_ids:
        done = select(func.count()).where(Receipt.state == State.acknowledged.value, *narrowed)
        already = int(session.scalar(done) or 0)
    sample = _sample(session, ids[:SAMPLE])
    filters = request.model_dump(mode="json", exclude_none=True, exclude={"reason"})
    record = record_action(
        session=session,
        actor=actor,
        action=ACTION,
        now=now,
        applied=apply,
        filters=filters,
        note=request.reason,
    )
    acknowledged = _apply(session, ids, record.id, request.reason, actor, now) if apply else 0
    record.counts = {
        "matched": len(ids),
        "already_acknowledged": already,
        "acknowledged": acknowledged,
        "receipt_ids": ids[:RECORDED_IDS],
    }
    return AcknowledgeResult(
        action_id=record.id,
        applied=apply,
        actor=actor.describe(),
        reason=request.reason,
        matched=len(ids),
        already_acknowledged=already,
        acknowledged=acknowledged,
        sample=sample,
    )


def _filters(request: AcknowledgeRequest) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if request.ids:
        where.append(Receipt.id.in_(request.ids))
    if request.delivery_ids:
        where.append(Receipt.delivery_id.in_(request.delivery_ids))
    if request.received_after:
        where.append(Receipt.received_at >= request.received_after)
    if request.received_before:
        where.append(Receipt.received_at < request.received_before)
    return where


def _refuse_others(session: Session, ids: list[int]) -> None:
    """Only a tagged receipt with no row is data loss to acknowledge; any other given id is a
    mistake (a typo, a receipt that applied, another sender's untagged one, one whose row
    exists and which the poll still retries), named with why."""
    row_exists = select(DeliveryLog.id).where(DeliveryLog.id == Receipt.delivery_id).exists()
    query = select(Receipt.id, Receipt.state, Receipt.delivery_id, row_exists).where(
        Receipt.id.in_(ids)
    )
    found = {rid: (state, tag, exists) for rid, state, tag, exists in session.execute(query)}
    problems = []
    for rid in ids:
        if rid not in found:
            problems.append(f"{rid} (no such receipt)")
            continue
        state, tag, exists = found[rid]
        if state == State.acknowledged.value:
            continue
        if state != State.unmatched.value:
            problems.append(f"{rid} ({state})")
        elif tag is None:
            problems.append(f"{rid} (no delivery id tag: another sender's)")
        elif exists:
            problems.append(f"{rid} (delivery row {tag} exists: the receipts poll retries it)")
    if problems:
        raise InputError(
            "ids: only receipts with our delivery id tag that match no delivery row can be "
            f"acknowledged; not such: {', '.join(problems)}"
        )


def _sample(session: Session, ids: list[int]) -> list[ReceiptSample]:
    if not ids:
        return []
    query = select(Receipt).where(Receipt.id.in_(ids)).order_by(Receipt.id)
    return [
        ReceiptSample(
            id=r.id,
            source=r.source,
            event_type=r.event_type,
            delivery_id=r.delivery_id,
            provider_message_id=r.provider_message_id,
            occurred_at=r.occurred_at,
            received_at=r.received_at,
        )
        for r in session.scalars(query)
    ]


def _apply(
    session: Session, ids: list[int], action_id: int, reason: str, actor: Actor, now: datetime
) -> int:
    """Each receipt's state and reason, in chunks (a restored backup can leave thousands)."""
    said = (
        f"acknowledged by {actor.name} at {now:%Y-%m-%d %H:%M} UTC "
        f"(operator action {action_id}): {reason}"
    )
    done = 0
    for start in range(0, len(ids), 1_000):
        chunk = ids[start : start + 1_000]
        statement = (
            update(Receipt)
            .where(and_(Receipt.id.in_(chunk), Receipt.state == State.unmatched.value))
            .values(state=State.acknowledged.value, reason=said[:RECEIPT_REASON_MAX_CHARS])
            .execution_options(synchronize_session=False)
        )
        done += max(getattr(session.execute(statement), "rowcount", 0) or 0, 0)
    return done
