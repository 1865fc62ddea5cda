"""Which delivery rows an action is about: filters shared by purge and redrive, the counts per
filter value a dry run prints, a masked sample, and the rows an applied action changed.

Every condition is on `delivery_logs` itself (notification and recipient filters are IN
subqueries), so the row-locking select of an applied action locks delivery rows only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Select, func, insert, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notify.db import (
    DELIVERY_LOGS,
    NOTIFICATIONS,
    OPERATOR_ACTION_ROWS,
    Channel,
    Recipient,
)
from notify.errors import InputError
from notify.forms import empty_is_none
from notify.masking import mask_address
from notify.rendering import TemplateCatalog
from notify.settings import Priority

SAMPLE_ROWS = 10
TOP_VALUES = 20
DL, N, ROWS = DELIVERY_LOGS, NOTIFICATIONS, OPERATOR_ACTION_ROWS


class RowFilters(BaseModel):
    """Narrow an action to some delivery rows; every filter left empty matches all. A key it does
    not know is refused, naming it: a misspelt filter (`statu`) was dropped, and the action
    matched every row that filter should have left out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel | None = Field(None, description="Only email or sms")
    template: str | None = Field(None, max_length=100, description="Only this template name")
    priority: Priority | None = Field(None, description="Only low, normal, high or urgent")
    recipient: str | None = Field(
        None, max_length=128, description="Only this recipient (external id, e.g. technician:123)"
    )
    created_after: datetime | None = Field(
        None, description="Only rows created at or after this time (ISO 8601 with a zone)"
    )
    created_before: datetime | None = Field(
        None, description="Only rows created before this time (ISO 8601 with a zone)"
    )

    @field_validator("template", "recipient", "created_after", "created_before", mode="before")
    @classmethod
    def _empty_is_any(cls, value: Any) -> Any:
        """A form's field left empty sends "": no filter, as a field left out."""
        return empty_is_none(value)

    @field_validator("created_after", "created_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-30T08:00:00+00:00")
        return value

    @model_validator(mode="after")
    def _a_range_that_can_match(self) -> Self:
        after, before = self.created_after, self.created_before
        if after is not None and before is not None and after >= before:
            raise ValueError(
                f"created_after: {after.isoformat()} is not before created_before "
                f"{before.isoformat()}: no row can match"
            )
        return self


class RowSample(BaseModel):
    """One matching row as a dry run shows it (address masked)."""

    model_config = ConfigDict(frozen=True)

    id: int
    channel: str
    status: str
    template: str
    priority: str
    recipient: str
    address_masked: str | None
    created_at: datetime
    error_class: str | None
    error_code: str | None


def conditions(
    session: Session, filters: RowFilters, statuses: Sequence[str], catalog: TemplateCatalog
) -> list[ColumnElement[bool]]:
    """WHERE clauses on delivery_logs; InputError for a recipient nobody has or a template
    nothing has (see check_template). Rows a quiet-hours digest carries are never selected: they
    follow their digest row, which actions do select."""
    check_template(session, filters.template, catalog)
    where: list[ColumnElement[bool]] = [
        DL.c.status.in_(list(statuses)),
        DL.c.carried_by_id.is_(None),
    ]
    if filters.channel:
        where.append(DL.c.channel == filters.channel.value)
    if filters.created_after:
        where.append(DL.c.created_at >= filters.created_after)
    if filters.created_before:
        where.append(DL.c.created_at < filters.created_before)
    on_notification = _notification_conditions(session, filters)
    if on_notification:
        where.append(DL.c.notification_id.in_(select(N.c.id).where(*on_notification)))
    return where


def _notification_conditions(session: Session, filters: RowFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if filters.template:
        where.append(N.c.template_name == filters.template)
    if filters.priority:
        where.append(N.c.priority == filters.priority.value)
    if filters.recipient:
        where.append(N.c.recipient_id == recipient_id(session, filters.recipient))
    return where


def check_template(session: Session, name: str | None, catalog: TemplateCatalog) -> None:
    """InputError for a template filter no row can match: a name the catalogue does not have
    and no stored notification carries (a typo). A template removed from the catalogue since
    its rows were stored is still accepted, so those rows can be acted on."""
    if name is None or name in catalog.names():
        return
    stored = session.execute(select(N.c.id).where(N.c.template_name == name).limit(1)).first()
    if stored is None:
        raise InputError(
            f"template {name!r} is not known: not in the catalogue and no stored notification "
            "has it (see `notifyops templates list`)"
        )


def recipient_id(session: Session, external_id: str) -> int:
    found = session.scalar(select(Recipient.id).where(Recipient.external_id == external_id))
    if found is None:
        raise InputError(
            f"recipient {external_id!r} is not known (see `notifyops recipients list`)"
        )
    return int(found)


_DIMENSIONS: dict[str, Any] = {
    "channel": DL.c.channel,
    "status": DL.c.status,
    "template": N.c.template_name,
    "priority": N.c.priority,
    "recipient": Recipient.external_id,
}


def _joined(*columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(DL)
        .join(N, N.c.id == DL.c.notification_id)
        .join(Recipient, Recipient.id == N.c.recipient_id)
    )


def counts_by_value(
    session: Session, where: Sequence[ColumnElement[bool]], dimensions: Sequence[str]
) -> dict[str, dict[str, int]]:
    """{dimension: {value: rows}}, the largest first (at most TOP_VALUES values each)."""
    return {name: _top(session, _DIMENSIONS[name], where) for name in dimensions}


def _top(session: Session, column: Any, where: Sequence[ColumnElement[bool]]) -> dict[str, int]:
    count = func.count()
    query = (
        _joined(column, count)
        .where(*where)
        .group_by(column)
        .order_by(count.desc(), column)
        .limit(TOP_VALUES)
    )
    return {str(value): int(n) for value, n in session.execute(query)}


def count_rows(session: Session, where: Sequence[ColumnElement[bool]]) -> int:
    return int(session.scalar(select(func.count()).select_from(DL).where(*where)) or 0)


def sample_rows(session: Session, where: Sequence[ColumnElement[bool]]) -> list[RowSample]:
    query = (
        _joined(DL, N.c.template_name, N.c.priority, Recipient.external_id)
        .add_columns(Recipient.email, Recipient.phone)
        .where(*where)
        .order_by(DL.c.id)
        .limit(SAMPLE_ROWS)
    )
    return [_sample(row) for row in session.execute(query)]


def _sample(row: Any) -> RowSample:
    sms = row.channel == Channel.sms.value  # the row's address, else the recipient's
    address = (row.recipient_phone or row.phone) if sms else (row.recipient_email or row.email)
    return RowSample(
        id=row.id,
        channel=row.channel,
        status=row.status,
        template=row.template_name,
        priority=row.priority,
        recipient=row.external_id,
        address_masked=mask_address(address),
        created_at=row.created_at,
        error_class=row.error_class,
        error_code=row.error_code,
    )


def take_rows(session: Session, action_id: int, where: Sequence[ColumnElement[bool]]) -> int:
    """Record the matching rows (and their status) under `action_id`, locking them on
    PostgreSQL until the action's transaction ends; returns how many."""
    chosen = select(literal(action_id), DL.c.id, DL.c.status).where(*where).with_for_update()
    statement = insert(ROWS).from_select(["action_id", "delivery_log_id", "from_status"], chosen)
    session.execute(statement)
    return count_taken(session, action_id)


def count_taken(session: Session, action_id: int) -> int:
    query = select(func.count()).select_from(ROWS).where(ROWS.c.action_id == action_id)
    return int(session.scalar(query) or 0)


def taken_by(action_id: int) -> ColumnElement[bool]:
    """delivery_logs rows recorded under this action."""
    return DL.c.id.in_(select(ROWS.c.delivery_log_id).where(ROWS.c.action_id == action_id))
