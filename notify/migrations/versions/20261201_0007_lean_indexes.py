"""lean indexes: three delivery_logs indexes leave out the rows they never serve

A delivery row is written three or four times (stored, claimed, sending, its outcome), and as each
write changes `status` none is a HOT update: every write adds an entry to every index whose
condition the new row meets. These indexes become partial:

- `ix_delivery_logs_channel_sent` (channel, sent_at) WHERE sent_at IS NOT NULL: the audits and the
  latency check select a sent_at window, which implies it;
- `ix_delivery_logs_provider_message_id` WHERE provider_message_id IS NOT NULL: receipts look a
  row up by its provider id, which implies it;
- `ix_delivery_logs_status_lease` (status, lease_expires_at) WHERE status NOT IN ('sent',
  'delivered'), on PostgreSQL only (SQLite would use it only for a query that repeats the
  condition word for word): the lease rescue, the stuck and unknown counts and the redrive select
  other statuses.

Stored, claimed and sending rows then add nothing to the first two, and a row that is sent or
delivered adds nothing to the third. notify/db.py declares the same.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name -> (columns, condition, whether SQLite takes the condition too)
INDEXES: dict[str, tuple[list[str], str, bool]] = {
    "ix_delivery_logs_channel_sent": (["channel", "sent_at"], "sent_at IS NOT NULL", True),
    "ix_delivery_logs_provider_message_id": (
        ["provider_message_id"],
        "provider_message_id IS NOT NULL",
        True,
    ),
    "ix_delivery_logs_status_lease": (
        ["status", "lease_expires_at"],
        "status NOT IN ('sent', 'delivered')",
        False,
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        for name, (columns, where, on_sqlite) in INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(
                name,
                columns,
                postgresql_where=sa.text(where),
                sqlite_where=sa.text(where) if on_sqlite else None,
            )


def downgrade() -> None:
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        for name, (columns, _, _) in INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, columns)
