"""Who made a suppression: suppressions.source (operator, loop, provider)

An SMS muted by an operator for the whole number falls back to email; one a provider reported
(a receipt's bounce, complaint or opt-out, an opt-out the deliverer found) or a loop mute (which
names a title) does not. That was told from the suppression's reason (a provider's reason holds
" receipt ", a deliverer's opt-out starts with its own words), so an operator's mute whose reason
happened to hold " receipt " made no fallback. The column says it: the rows stored before are
read once here, by those marks and by the end an operator's mute has always had ("(muted by
NAME for ID)"), frozen as they were written, then never again.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the reasons as written before this migration (notify/receipts, notify/opt_outs)
RECEIPT_MARK = "% receipt %"
DELIVERER_MARK = "OptedOut (SNS said so before sending) delivery #%"
OPERATOR_MARK = "%(muted by % for %)"  # notify/actions/suppressions: every mute's reason ends so


def upgrade() -> None:
    # plain ALTER TABLE, not a batch (a batch copies the table on SQLite)
    op.add_column(
        "suppressions",
        sa.Column("source", sa.String(20), nullable=False, server_default="operator"),
    )
    op.execute(
        "UPDATE suppressions SET source = 'provider' WHERE title IS NULL AND until IS NULL "
        f"AND (reason LIKE '{RECEIPT_MARK}' OR reason LIKE '{DELIVERER_MARK}') "
        f"AND reason NOT LIKE '{OPERATOR_MARK}'"
    )
    op.execute(
        "UPDATE suppressions SET source = 'loop' WHERE title IS NOT NULL "
        "AND reason LIKE 'auto-muted loop:%'"
    )


def downgrade() -> None:
    op.drop_column("suppressions", "source")
