"""operator actions: the audit trail of purges, redrives, mutes and unmutes

`operator_actions` records who ran an action (the OS user or --actor; the flow run and deployment),
when, with which filters and counts, applied or a dry run; `operator_action_rows` the delivery rows
an applied action changed and the status each had. The new delivery status `purged` needs no
schema change (`delivery_logs.status` is a string). notify/db.py declares the same tables.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-30 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notify.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("deployment_name", sa.String(length=200), nullable=True),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(length=300), nullable=False),
        sa.Column("created_at", notify.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
    )
    with op.batch_alter_table("operator_actions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_operator_actions_action_created", ["action", "created_at"], unique=False
        )
        batch_op.create_index("ix_operator_actions_key", ["key"], unique=False)

    op.create_table(
        "operator_action_rows",
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("delivery_log_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["operator_actions.id"],
            name=op.f("fk_operator_action_rows_action_id_operator_actions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_log_id"],
            ["delivery_logs.id"],
            name=op.f("fk_operator_action_rows_delivery_log_id_delivery_logs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "action_id", "delivery_log_id", name=op.f("pk_operator_action_rows")
        ),
    )
    with op.batch_alter_table("operator_action_rows", schema=None) as batch_op:
        batch_op.create_index("ix_operator_action_rows_delivery", ["delivery_log_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("operator_action_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_operator_action_rows_delivery")
    op.drop_table("operator_action_rows")
    with op.batch_alter_table("operator_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_operator_actions_key")
        batch_op.drop_index("ix_operator_actions_action_created")
    op.drop_table("operator_actions")
