"""Typed results that cross the flow boundary (small, JSON-friendly, shown by the CLI and the UI).

A dispatch answers with the enqueue's own `EnqueueResult` and one `DeliverySummary` folded from
the deliverer's `BatchReport`s: nothing is flattened to strings and parsed again. JSON shape
(`notifyops send --json`, documented in the README): counts are nested channel -> status -> rows.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from notify.delivery import BatchReport, FailureSample
from notify.digest import Gathered
from notify.enqueue import EnqueueResult, nest_counts
from notify.outbox import Leftovers, RescueCounts
from notify.request_report import RequestReport


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
    paused: str | None = Field(None, description="why a channel's rows were left pending")
    remaining_due: int = 0
    waiting_later: int = Field(
        0,
        description="rows waiting for a later time: a retry's backoff, a stopped channel's rows "
        "given back, quiet hours",
    )
    next_due_at: datetime | None = Field(None, description="when the first of those comes due")
    left_held: int = Field(
        0, description="rows still claimed/sending by this run's failed batches (back at lease end)"
    )
    unknown_total: int = Field(0, description="rows `unknown` in the whole log after this run")
    failures: list[FailureSample] = Field(
        default_factory=list, description="up to 20 failed sends, addresses masked"
    )
    digests: int = Field(0, description="quiet-hours digest rows this run made")
    carried: int = Field(0, description="rows held by quiet hours that those digests carry")
    held_quiet: int = Field(
        0,
        description="due SMS held back to the end of their recipient's quiet hours, before the "
        "first claim and while the batches ran",
    )

    @classmethod
    def of(
        cls,
        report: BatchReport,
        *,
        batches: int,
        rescued: RescueCounts,
        left: Leftovers,
        gathered: Gathered | None = None,
        held_first: int = 0,
    ) -> DeliverySummary:
        """`held_first`: the due SMS quiet hours held before the first claim (the run's
        recheck); the batches count those they held while running."""
        gathered = gathered or Gathered()
        return cls(
            batches=batches,
            claimed=report.claimed,
            outcomes=nest_counts(report.outcomes),
            released=report.released,
            lost_lease=report.lost_lease,
            rescued_to_pending=rescued.returned_to_pending,
            rescued_unknown=rescued.marked_unknown,
            stopped=report.stopped,
            paused=report.paused,
            remaining_due=left.due,
            waiting_later=left.later,
            next_due_at=left.next_due_at,
            left_held=left.held,
            unknown_total=left.unknown,
            failures=list(report.failures),
            digests=gathered.digests + report.digests,
            carried=gathered.carried + report.carried,
            held_quiet=held_first + report.held_quiet,
        )

    def count(self, status: str) -> int:
        return sum(by_status.get(status, 0) for by_status in self.outcomes.values())


class DispatchSummary(BaseModel):
    enqueue: EnqueueResult
    delivery: DeliverySummary | None = Field(
        None, description="what this run's delivery did: every due row, any request's"
    )
    request: RequestReport | None = Field(
        None,
        description="this request's own rows after the run, by channel, status and decision "
        "(quiet-hours deferrals with their next attempt)",
    )
    not_stored: int = Field(
        0,
        description="recipients of the request not stored: the run was interrupted between "
        "two parts (the same request again with its key stores them)",
    )
