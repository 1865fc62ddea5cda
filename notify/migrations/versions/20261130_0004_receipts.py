"""provider receipts: receipts, receipt_marks, delivery_logs receipt columns

delivery_logs gains actual_cost (the SMS price from the delivery log; `cost` keeps the estimate),
receipt_event / receipt_at (the latest receipt applied), unknown_since / requeued_at (resolving
crash rows), and an index on provider_message_id (receipts join on it). notify/db.py declares
the same.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-30 20:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notify.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> notify.db.UTCDateTime:
    return notify.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("event_type", sa.String(length=30), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("delivery_log_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("occurred_at", _when(), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=6), nullable=True),
        sa.Column("received_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_receipts_dedupe_key")),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index("ix_receipts_state_received", ["state", "received_at"])
        batch_op.create_index("ix_receipts_delivery_log", ["delivery_log_id"])
    op.create_table(
        "receipt_marks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", _when(), nullable=True),
        sa.Column("note", sa.String(length=300), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_receipt_marks")),
    )
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actual_cost", sa.Numeric(12, 6), nullable=True))
        batch_op.add_column(sa.Column("receipt_event", sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column("receipt_at", _when(), nullable=True))
        batch_op.add_column(sa.Column("unknown_since", _when(), nullable=True))
        batch_op.add_column(sa.Column("requeued_at", _when(), nullable=True))
        batch_op.create_index("ix_delivery_logs_provider_message_id", ["provider_message_id"])


def downgrade() -> None:
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_logs_provider_message_id")
        for column in (
            "requeued_at",
            "unknown_since",
            "receipt_at",
            "receipt_event",
            "actual_cost",
        ):
            batch_op.drop_column(column)
    op.drop_table("receipt_marks")
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_delivery_log")
        batch_op.drop_index("ix_receipts_state_received")
    op.drop_table("receipts")
