"""Decide unknown rows (runbook section 5, "Unknown rows"): record, without sending, what the
provider's logs showed about a row a deliverer may or may not have handed over.

- `sent`: the provider had it. The row becomes `sent` (never re-sent; the audits count it as
  sent, at the time it was first seen `unknown`, else its creation: not as a send hours late)
  and later receipts still apply to it.
- `not_sent`: it never went out. The row becomes `failed` (error code `NotSent`), which the
  failure audits count and nothing sends by itself: a message in doubt for hours may be stale,
  so sending it is a second, explicit step (`notifyops redrive --status failed --id N`).

Only `unknown` rows are decided; ids naming other rows are refused, each named with its status.
Like a redrive, a decision is recorded under an id (default: a digest of its outcome and filters,
the time range left out): a row is decided at most once per id, so the same decision run again
(a retried flow run, the command twice) changes nothing, even if the row became `unknown` again
after a redrive. A quiet-hours digest row's carried rows take its new status at the next
delivery run (notify.digest.follow_digests).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.actions.audit_trail import Actor, record_action
from notify.actions.redrive import ErrorGroup, RowId, by_error
from notify.actions.selection import (
    DL,
    ROWS,
    RowFilters,
    RowSample,
    conditions,
    count_rows,
    sample_rows,
    take_rows,
    taken_by,
)
from notify.db import OperatorAction, Status
from notify.errors import NOT_SENT, InputError
from notify.forms import empty_is_none
from notify.outbox import normalised_error
from notify.rendering import TemplateCatalog

ACTION = "decide-unknown"
Outcome = Literal["sent", "not_sent"]
OUTCOME_STATUS: dict[str, Status] = {"sent": Status.sent, "not_sent": Status.failed}
NOT_SENT_MESSAGE = "decided by an operator: the provider never had it (not sent)"
DECISION_MAX_CHARS = 300
REASON_MAX_CHARS = 200


class DecideRequest(RowFilters):
    """Which `unknown` rows to decide, and what the provider's logs showed."""

    outcome: Outcome = Field(
        ...,
        description="What the provider's logs showed: sent (it had the message: the row "
        "becomes sent) or not_sent (it never went out: the row becomes failed, NotSent; "
        "redrive it to send it)",
    )
    reason: str = Field(
        ...,
        min_length=1,
        max_length=REASON_MAX_CHARS,
        description="Why: what you checked (kept in the audit trail)",
    )
    ids: list[RowId] = Field(default_factory=list, description="Only these delivery_logs ids")
    decision_id: str | None = Field(
        None,
        max_length=100,
        description="Names this decision (default: from its outcome and filters); the same id "
        "never decides a row twice",
    )

    @field_validator("decision_id", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("reason", mode="before")
    @classmethod
    def _a_reason_said(cls, value: Any) -> Any:
        """Spaces around a reason are dropped; one of spaces only is none, and refused."""
        return value.strip() if isinstance(value, str) else value

    @field_validator("outcome", mode="before")
    @classmethod
    def _spelled_either_way(cls, value: Any) -> Any:
        """`not-sent` as the command line spells it, `not_sent` as the form does."""
        return value.strip().lower().replace("-", "_") if isinstance(value, str) else value

    @field_validator("ids")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        return list(dict.fromkeys(value))

    def key(self) -> str:
        """The decision id: the one given, else a digest of the outcome and filters (the time
        range and the reason left out)."""
        if self.decision_id:
            return self.decision_id
        shape = self.model_dump(
            mode="json", exclude={"created_after", "created_before", "decision_id", "reason"}
        )
        shape = {k: sorted(v) if isinstance(v, list) else v for k, v in shape.items()}
        digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()
        return f"du-{digest[:12]}"


class DecideResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    decision_id: str
    action_id: int
    applied: bool
    actor: str
    outcome: Outcome
    status: str  # what the decided rows become: sent or failed
    reason: str
    matched: int  # unknown rows the filters match that this decision id has not decided yet
    already_decided: int  # rows this decision id decided before
    decided: int
    by_error: list[ErrorGroup]
    sample: list[RowSample]


def decide_unknown(
    *,
    session: Session,
    request: DecideRequest,
    now: datetime,
    actor: Actor,
    apply: bool,
    catalog: TemplateCatalog,
) -> DecideResult:
    """Count (and with `apply`, decide) the `unknown` rows the request matches, once per
    decision id; InputError naming each given id that is not an `unknown` row."""
    key = request.key()
    decided_here = _decided_under(key)
    if request.ids:
        _refuse_others(session, request.ids, decided_here)
    where = conditions(session, request, [Status.unknown.value], catalog)
    if request.ids:
        where.append(DL.c.id.in_(request.ids))
    fresh = [*where, ~decided_here]
    matched = count_rows(session, fresh)
    already = _count_already(session, request, decided_here, catalog)
    groups = by_error(session, fresh)
    sample = sample_rows(session, fresh)
    filters = request.model_dump(mode="json", exclude_none=True, exclude={"reason"})
    record = record_action(
        session=session,
        actor=actor,
        action=ACTION,
        now=now,
        applied=apply,
        filters=filters,
        key=key,
        note=request.reason,
    )
    decided = _apply(session, record.id, fresh, request, now, actor) if apply else 0
    record.counts = {"matched": matched, "already_decided": already, "decided": decided}
    return DecideResult(
        decision_id=key,
        action_id=record.id,
        applied=apply,
        actor=actor.describe(),
        outcome=request.outcome,
        status=OUTCOME_STATUS[request.outcome].value,
        reason=request.reason,
        matched=matched,
        already_decided=already,
        decided=decided,
        by_error=groups,
        sample=sample,
    )


def decided_by_an_operator() -> ColumnElement[bool]:
    """The row's fate is an operator's decision (any applied decide-unknown): no provider
    receipt is waited for (a row decided sent has no provider message id to match one)."""
    return exists(
        select(ROWS.c.delivery_log_id)
        .join(OperatorAction, OperatorAction.id == ROWS.c.action_id)
        .where(ROWS.c.delivery_log_id == DL.c.id, OperatorAction.action == ACTION)
    )


def _decided_under(key: str) -> ColumnElement[bool]:
    """The row was decided by an applied decision with this id."""
    return exists(
        select(ROWS.c.delivery_log_id)
        .join(OperatorAction, OperatorAction.id == ROWS.c.action_id)
        .where(
            ROWS.c.delivery_log_id == DL.c.id,
            and_(OperatorAction.key == key, OperatorAction.action == ACTION),
        )
    )


def _refuse_others(session: Session, ids: Sequence[int], decided_here: ColumnElement[bool]) -> None:
    """An id that is no `unknown` row (and that this decision did not decide before) is a
    mistake worth stopping for: a row already settled, or a typo."""
    query = select(DL.c.id, DL.c.status, DL.c.carried_by_id, decided_here).where(DL.c.id.in_(ids))
    found = {row.id: row for row in session.execute(query)}
    problems = []
    for row_id in ids:
        row = found.get(row_id)
        if row is None:
            problems.append(f"{row_id} (no such row)")
        elif row[3]:  # decided by this decision already: the same decision again
            continue
        elif row.status != Status.unknown.value:
            problems.append(f"{row_id} ({row.status})")
        elif row.carried_by_id is not None:  # never unknown itself; named for completeness
            problems.append(f"{row_id} (carried by digest {row.carried_by_id}: decide that row)")
    if problems:
        raise InputError(
            f"ids: only `unknown` rows can be decided; not unknown: {', '.join(problems)}"
        )


def _count_already(
    session: Session,
    request: DecideRequest,
    decided_here: ColumnElement[bool],
    catalog: TemplateCatalog,
) -> int:
    """Rows the filters name, whatever their status now, that this decision id decided."""
    where = conditions(session, request, [status.value for status in Status], catalog)
    if request.ids:
        where.append(DL.c.id.in_(request.ids))
    return count_rows(session, [*where, decided_here])


def _apply(
    session: Session,
    action_id: int,
    where: Sequence[ColumnElement[bool]],
    request: DecideRequest,
    now: datetime,
    actor: Actor,
) -> int:
    take_rows(session, action_id, where)
    note = f" | decided {request.outcome} by {actor.name} (operator action {action_id})"
    values: dict[str, Any] = {
        "status": OUTCOME_STATUS[request.outcome].value,
        "lease_owner": None,
        "lease_expires_at": None,
        "decision": func.substr(DL.c.decision + note, 1, DECISION_MAX_CHARS),
    }
    if request.outcome == "sent":
        # when it was first seen unknown (its attempt came before), else when it was created:
        # the attempt's time is not kept, and the decision's would count as a send hours late
        # in health's latency (a P2 over 60 s on average)
        values["sent_at"] = func.coalesce(DL.c.sent_at, DL.c.unknown_since, DL.c.created_at)
    else:
        values.update(
            error_code=NOT_SENT.code,
            error_class=NOT_SENT.error_class.value,
            error_message=NOT_SENT_MESSAGE,
            error_norm=normalised_error(NOT_SENT_MESSAGE),
            next_attempt_at=None,
        )
    statement = (
        update(DL)
        .where(taken_by(action_id), DL.c.status == Status.unknown.value)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    result = session.execute(statement)
    return max(getattr(result, "rowcount", 0) or 0, 0)
