"""An index of the unmatched receipts that name one of our rows: ix_receipts_unmatched_tagged

Each receipts poll retries, however old, the unmatched receipts whose tagged row is still in
flight or `unknown`. Found through the (state, received_at) index, that read every unmatched
receipt, the untagged ones other senders on the configuration set leave included: ~200 ms per
poll with a million of them, growing with the table. The partial index holds only the tagged
ones.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "state = 'unmatched' AND delivery_id IS NOT NULL"  # notify.db.UNMATCHED_TAGGED_WHERE


def upgrade() -> None:
    op.create_index(
        "ix_receipts_unmatched_tagged",
        "receipts",
        ["delivery_id"],
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_receipts_unmatched_tagged", table_name="receipts")
