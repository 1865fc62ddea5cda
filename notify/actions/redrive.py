"""Redrive (runbook sections 1 and 5): failed rows back in the queue, filtered, recorded under a
redrive id so the same redrive run again changes nothing.

Guards: `unknown` rows (a worker died mid-send; the provider may have them) only with
`allow_unknown`, and the result carries a warning that they may be sent twice; `failed_permanent`
rows only for named error codes (a permanent failure is redriven because its cause was fixed).

The redrive id defaults to a digest of the filters other than the time range (status, error
class and code, channel, template, priority, recipient, ids): a row is redriven at most once per
id, so re-running a redrive (a retried flow run, the same command twice) after its rows failed
again does nothing; pass a new `redrive_id` to redrive them again on purpose.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.actions.audit_trail import Actor, record_action
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
from notify.db import Channel, OperatorAction, Status
from notify.errors import ErrorClass, known_spelling
from notify.forms import empty_is_none
from notify.outbox import REDRIVABLE
from notify.outbox import redrive as requeue
from notify.rendering import TemplateCatalog

RedriveStatus = Literal["failed", "failed_permanent", "unknown", "pending_retry"]
UNKNOWN_WARNING = (
    "unknown rows may already have reached the provider: redriving them can send a message "
    "twice; check the SES events / SNS delivery-status logs first"
)
FALLBACK_WARNING = (
    "{n} of these SMS already have their email fallback (sent or on its way): redriving them "
    "sends the message by SMS as well"
)
# a fallback email in one of these did not and will not go
FALLBACK_GONE = (Status.failed, Status.failed_permanent, Status.skipped, Status.purged)
TOP_GROUPS = 20
# a delivery_logs id as both databases can compare it: a larger one (a pasted 20-digit number)
# made the run fail with SQLite's OverflowError, naming no field
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]


def _failed_only() -> list[RedriveStatus]:
    return ["failed"]


class RedriveRequest(RowFilters):
    """Which failed rows to put back in the queue."""

    statuses: list[RedriveStatus] = Field(
        default_factory=_failed_only,
        min_length=1,
        description="Statuses to redrive: failed, pending_retry, failed_permanent (needs "
        "error_codes), unknown (needs allow_unknown)",
    )
    allow_unknown: bool = Field(
        False,
        description="Allow `unknown` rows, which the provider may already have (may send twice)",
    )
    error_codes: list[str] = Field(
        default_factory=list,
        description="Only these error codes, e.g. Throttling (a known code in any case: "
        "throttling matches too; others as stored)",
    )
    error_classes: list[str] = Field(
        default_factory=list, description="Only these error classes: transient, quota, config, ..."
    )
    ids: list[RowId] = Field(default_factory=list, description="Only these delivery_logs ids")
    redrive_id: str | None = Field(
        None,
        max_length=100,
        description="Names this redrive (default: from its filters); the same id never redrives "
        "a row twice",
    )

    @field_validator("redrive_id", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("statuses")
    @classmethod
    def _unique(cls, value: list[RedriveStatus]) -> list[RedriveStatus]:
        return list(dict.fromkeys(value))

    @field_validator("error_codes")
    @classmethod
    def _spelled_as_known(cls, value: list[str]) -> list[str]:
        """Known codes in the taxonomy's spelling, so `optedout` and `OptedOut` are one redrive
        (one redrive id) and match the stored rows; an unknown code matches as typed."""
        return list(dict.fromkeys(known_spelling(code) for code in value))

    @field_validator("error_classes")
    @classmethod
    def _known_classes(cls, value: list[str]) -> list[str]:
        """Stored rows hold only the taxonomy's classes: any other spelling matched nothing and
        the dry run said 0 rows, as if none had failed."""
        known = [kind.value for kind in ErrorClass]
        classes = [name.strip().lower() for name in value]
        for name, given in zip(classes, value, strict=True):
            if name not in known:
                raise ValueError(f"{given!r} is not an error class ({', '.join(known)})")
        return list(dict.fromkeys(classes))

    @model_validator(mode="after")
    def _guards(self) -> RedriveRequest:
        """A message names the fields as a form does (`allow_unknown`, in backticks); the
        command line names its options instead (notifyops.params.describe)."""
        if "unknown" in self.statuses and not self.allow_unknown:
            raise ValueError("statuses: unknown needs `allow_unknown`: " + UNKNOWN_WARNING)
        if "failed_permanent" in self.statuses and not self.error_codes:
            raise ValueError(
                "statuses: failed_permanent needs the error code(s) whose cause was fixed "
                "(`error_codes`)"
            )
        return self

    def key(self) -> str:
        """The redrive id: the one given, else a digest of the filters (time range left out)."""
        if self.redrive_id:
            return self.redrive_id
        shape = self.model_dump(
            mode="json", exclude={"created_after", "created_before", "redrive_id"}
        )
        shape = {k: sorted(v) if isinstance(v, list) else v for k, v in shape.items()}
        digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()
        return f"rd-{digest[:12]}"


class ErrorGroup(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str
    error_class: str | None
    error_code: str | None
    rows: int


class RedriveResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    redrive_id: str
    action_id: int
    applied: bool
    actor: str
    matched: int  # rows the filters match that this redrive id has not redriven yet
    already_redriven: int  # rows the filters match that this redrive id redrove before
    redriven: int
    by_error: list[ErrorGroup]
    sample: list[RowSample]
    warnings: list[str]


def redrive(
    *,
    session: Session,
    request: RedriveRequest,
    now: datetime,
    actor: Actor,
    apply: bool,
    catalog: TemplateCatalog,
) -> RedriveResult:
    """Count (and with `apply`, requeue) the rows the request matches, once per redrive id
    (`catalog`: the templates a template filter may name, besides those of stored rows)."""
    key = request.key()
    base = _where(session, request, catalog)
    fresh = [*base, ~_redriven_under(key)]
    matched = count_rows(session, fresh)
    already = count_rows(session, base) - matched
    groups = by_error(session, fresh)
    sample = sample_rows(session, fresh)
    warnings = _warnings(session, request, fresh)  # of the rows before they are redriven
    filters = request.model_dump(mode="json", exclude_none=True)
    record = record_action(
        session=session,
        actor=actor,
        action="redrive",
        now=now,
        applied=apply,
        filters=filters,
        key=key,
    )
    redriven = _apply(session, record.id, fresh, request, now, key) if apply else 0
    record.counts = {"matched": matched, "already_redriven": already, "redriven": redriven}
    return RedriveResult(
        redrive_id=key,
        action_id=record.id,
        applied=apply,
        actor=actor.describe(),
        matched=matched,
        already_redriven=already,
        redriven=redriven,
        by_error=groups,
        sample=sample,
        warnings=warnings,
    )


def _warnings(
    session: Session, request: RedriveRequest, where: Sequence[ColumnElement[bool]]
) -> list[str]:
    """What the operator should know before applying: `unknown` rows may have gone, and SMS
    whose email fallback went (or will) would reach the recipient twice, by both channels."""
    found = [UNKNOWN_WARNING] if "unknown" in request.statuses else []
    fallback = DL.alias("fallback")
    replaced = exists(
        select(fallback.c.id).where(
            fallback.c.replaces_id == DL.c.id,
            fallback.c.status.not_in([status.value for status in FALLBACK_GONE]),
        )
    )
    covered = count_rows(session, [*where, DL.c.channel == Channel.sms.value, replaced])
    if covered:
        found.append(FALLBACK_WARNING.format(n=covered))
    return found


def _where(
    session: Session, request: RedriveRequest, catalog: TemplateCatalog
) -> list[ColumnElement[bool]]:
    statuses = [s for s in request.statuses if s in REDRIVABLE]
    where = conditions(session, request, statuses, catalog)
    if request.error_codes:
        # known codes in the taxonomy's spelling (as providers and the deliverer store them);
        # others as typed: one spelling, one redrive id, so no row is redriven once per spelling
        where.append(DL.c.error_code.in_(sorted(set(request.error_codes))))
    if request.error_classes:
        where.append(DL.c.error_class.in_(request.error_classes))
    if request.ids:
        where.append(DL.c.id.in_(request.ids))
    return where


def _redriven_under(key: str) -> ColumnElement[bool]:
    """The row was redriven by an applied redrive with this id."""
    return exists(
        select(ROWS.c.delivery_log_id)
        .join(OperatorAction, OperatorAction.id == ROWS.c.action_id)
        .where(
            ROWS.c.delivery_log_id == DL.c.id,
            and_(OperatorAction.key == key, OperatorAction.action == "redrive"),
        )
    )


def by_error(session: Session, where: Sequence[ColumnElement[bool]]) -> list[ErrorGroup]:
    count = func.count()
    columns = (DL.c.status, DL.c.error_class, DL.c.error_code)
    query = (
        select(*columns, count)
        .where(*where)
        .group_by(*columns)
        .order_by(count.desc(), *columns)
        .limit(TOP_GROUPS)
    )
    names = ("status", "error_class", "error_code", "rows")
    return [ErrorGroup(**dict(zip(names, row, strict=True))) for row in session.execute(query)]


def _apply(
    session: Session,
    action_id: int,
    where: Sequence[ColumnElement[bool]],
    request: RedriveRequest,
    now: datetime,
    key: str,
) -> int:
    take_rows(session, action_id, where)
    note = f"redrive {key}, operator action {action_id}"
    return sum(
        requeue(session=session, status=status, now=now, where=[taken_by(action_id)], note=note)
        for status in request.statuses
    )
