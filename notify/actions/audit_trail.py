"""The audit trail of operator actions: who ran what, when, with which filters, and what changed.

Who: the OS user or `--actor` for the CLI; the flow run id and deployment for flows (a form's
`operator` field names the person when they give it).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from notify.db import OperatorAction

NOTE_MAX_CHARS = 300
ACTIONS = (  # what `operator_actions.action` holds
    "purge",
    "redrive",
    "mute",
    "unmute",
    "decide-unknown",
    "acknowledge-receipts",
)


@dataclass(frozen=True)
class Actor:
    """Who runs an action."""

    name: str
    flow_run_id: str | None = None
    deployment_name: str | None = None

    @classmethod
    def from_cli(cls, given: str | None = None) -> Actor:
        """`--actor` when given, else the OS user."""
        return cls(name=(given or _os_user())[:200])

    @classmethod
    def from_flow(
        cls, *, flow_run_id: str | None, deployment_name: str | None, operator: str | None
    ) -> Actor:
        where = f"deployment:{deployment_name}" if deployment_name else "flow-run"
        name = f"{operator} via {where}" if operator else where
        return cls(name=name[:200], flow_run_id=flow_run_id, deployment_name=deployment_name)

    def describe(self) -> str:
        run = f" (flow run {self.flow_run_id})" if self.flow_run_id else ""
        return f"{self.name}{run}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return os.environ.get("USER") or f"uid:{os.getuid()}"


class ActionRecord(BaseModel):
    """One `operator_actions` row, as reports and `notifyops actions` show it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    action: str
    key: str | None
    applied: bool
    actor: str
    flow_run_id: str | None
    deployment_name: str | None
    filters: dict[str, Any]
    counts: dict[str, Any]
    note: str
    created_at: datetime


def record_action(
    *,
    session: Session,
    actor: Actor,
    action: str,
    now: datetime,
    applied: bool,
    filters: Mapping[str, Any],
    counts: Mapping[str, Any] | None = None,
    key: str | None = None,
    note: str = "",
) -> OperatorAction:
    """Add the action's row (flushed: its id is known); counts can be filled in afterwards."""
    row = OperatorAction(
        action=action,
        key=key,
        applied=applied,
        actor=actor.name,
        flow_run_id=actor.flow_run_id,
        deployment_name=actor.deployment_name,
        filters=dict(filters),
        counts=dict(counts or {}),
        note=note[:NOTE_MAX_CHARS],
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def recent_actions(
    *, session: Session, limit: int = 50, action: str | None = None
) -> list[ActionRecord]:
    """The newest actions first."""
    query = select(OperatorAction).order_by(OperatorAction.id.desc()).limit(limit)
    if action:
        query = query.where(OperatorAction.action == action)
    return [ActionRecord.model_validate(row) for row in session.scalars(query)]
