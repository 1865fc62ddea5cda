"""SMS cost by created hour: audit_created_hours.micros, and the rollups rebuilt

The SMS cost audit's daily-cap figure ("today": SMS created today and not skipped, failed or
purged, at the price known, as the send policy counts it) was read live from every SMS row of
the day: about 140 ms of the audit over a million rows. The rollup by created hour now also
sums the SMS rows' cost (`micros`), folded and moved by a late receipt price like the SMS
hours (notify/audits/rollups.py), so whole hours come from it. The rollups folded before this
migration have no cost, so every rollup table is emptied and the next audit's fold rebuilds
them (20-40 s for a million rows, once). The downgrade drops the column and empties them again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 17:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
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
    with op.batch_alter_table("audit_created_hours") as batch:
        batch.add_column(sa.Column("micros", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    _forget_rollups()
    with op.batch_alter_table("audit_created_hours") as batch:
        batch.drop_column("micros")
