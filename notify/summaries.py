"""Typed results that cross the flow boundary (small, JSON-friendly, shown by the CLI)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EnqueueSummary(BaseModel):
    request_id: str
    notifications: int
    notification_ids: list[int]
    duplicate: bool
    unknown_recipients: list[str] = Field(default_factory=list)
    rows: dict[str, int] = Field(default_factory=dict, description='"channel:status" -> count')


class DeliverySummary(BaseModel):
    batches: int = 0
    claimed: int = 0
    outcomes: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="channel -> status -> count"
    )
    released: int = 0
    lost_lease: int = 0
    rescued_to_pending: int = 0
    rescued_unknown: int = 0
    stopped: str | None = None
    remaining_due: int = 0
    failures: list[dict[str, str]] = Field(
        default_factory=list, description="up to 20 failed sends, addresses masked"
    )

    def count(self, status: str) -> int:
        return sum(by_status.get(status, 0) for by_status in self.outcomes.values())


class DispatchSummary(BaseModel):
    enqueue: EnqueueSummary
    delivery: DeliverySummary | None = None
