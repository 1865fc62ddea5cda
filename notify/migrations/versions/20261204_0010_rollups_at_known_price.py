"""SMS rollups at the price known: forget the hourly rollups so the next folds rebuild them

audit_sms_hours / audit_sms_totals now sum each SMS at the receipt's price where one arrived
(delivery_logs.actual_cost), else the estimate (cost), and the receipts move a folded SMS from
the old price to the new when its price arrives (notify/audits/rollups.py). The rollups folded
before this migration hold estimates, so every rollup table is emptied (what
`notify.audits.rollups.reset_rollups` does after a retention purge) and the next audit's fold
rebuilds them from delivery_logs: that first audit reads every row once (20-40 s for a
million rows on PostgreSQL: the first fold of bench.audits). The downgrade empties them again,
for the older code's estimate. No schema change.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 16:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLUP_TABLES = (
    "audit_created_hours",
    "audit_sms_hours",
    "audit_sms_totals",
    "audit_latency_hours",
    "audit_loop_rows",
    "audit_open_rows",
    "audit_rollup_state",
)


def _forget_rollups() -> None:
    for table in ROLLUP_TABLES:
        op.execute(f"DELETE FROM {table}")


def upgrade() -> None:
    _forget_rollups()


def downgrade() -> None:
    _forget_rollups()
