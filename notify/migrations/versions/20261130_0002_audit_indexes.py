"""audit indexes: delivery_logs (channel, sent_at)

The SMS cost audit (paid SMS by sent_at: per hour, last hour, today) and the latency check
(rows sent in the window) select by sent_at; without this index they scan the whole table.
notify/db.py declares the same index on DeliveryLog.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 00:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_logs_channel_sent", ["channel", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_logs_channel_sent")
