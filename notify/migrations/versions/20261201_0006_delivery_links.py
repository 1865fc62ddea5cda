"""delivery links: a fallback row names the row it replaces, a digest carries deferred rows

`delivery_logs.replaces_id`: set on a fallback row (SMS that failed permanently or was suppressed,
re-sent as email) to the id of the row it replaces; unique (one fallback per replaced row). The
unique (notification_id, channel) becomes a unique index on (notification_id, channel,
coalesce(replaces_id, 0)): a notification keeps one row per channel, and a fallback email can sit
beside the email row enqueue skipped (email off in preferences).

`delivery_logs.carried_by_id`: set on a row deferred by quiet hours to the id of the digest row
that carried it; such a row is no longer due and its status follows the digest's.
`ix_delivery_logs_quiet`: the rows quiet hours hold back, not yet sent (a partial index: what
notify.digest gathers at the window's end). notify/db.py
declares the same.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 00:20:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUIET_WHERE = "status = 'pending' AND decision LIKE '%: deferred to % (quiet hours %'"


UNIQUE_ROW = "uq_delivery_logs_notification_channel"


def _partial_index(
    batch_op: Any, name: str, columns: list[str], where: str, unique: bool = False
) -> None:
    """An index of the rows matching `where`, on PostgreSQL and SQLite alike."""
    batch_op.create_index(
        name,
        columns,
        unique=unique,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replaces_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("carried_by_id", sa.Integer(), nullable=True))
        # partial: only rows with a link are indexed (the others pay nothing on each write)
        _partial_index(
            batch_op,
            "ix_delivery_logs_replaces",
            ["replaces_id"],
            "replaces_id IS NOT NULL",
            unique=True,
        )
        _partial_index(
            batch_op, "ix_delivery_logs_carried_by", ["carried_by_id"], "carried_by_id IS NOT NULL"
        )
        _partial_index(batch_op, "ix_delivery_logs_quiet", ["next_attempt_at", "id"], QUIET_WHERE)
        # One row per notification and channel, and at most one fallback row per replaced row:
        # the unique (notification_id, channel) becomes a unique index that tells them apart.
        batch_op.drop_constraint(UNIQUE_ROW, type_="unique")
    op.create_index(
        UNIQUE_ROW,
        "delivery_logs",
        ["notification_id", "channel", sa.text("coalesce(replaces_id, 0)")],
        unique=True,
    )


def downgrade() -> None:
    # 0005 keeps one row per notification and channel: a fallback email beside its
    # notification's own email row (skipped, email off in preferences) has no place there
    doubled = op.get_bind().execute(
        sa.text(
            "SELECT count(*) FROM (SELECT notification_id FROM delivery_logs "
            "GROUP BY notification_id, channel HAVING count(*) > 1) AS doubled"
        )
    )
    notifications = doubled.scalar_one()
    if notifications:
        raise RuntimeError(
            f"cannot downgrade below 0006: {notifications} notifications have two rows on one "
            "channel (an email fallback, replaces_id, beside the notification's own email row), "
            "which 0005's unique (notification_id, channel) does not allow; nothing was changed"
        )
    op.drop_index(UNIQUE_ROW, table_name="delivery_logs")
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.create_unique_constraint(UNIQUE_ROW, ["notification_id", "channel"])
        batch_op.drop_index("ix_delivery_logs_quiet")
        batch_op.drop_index("ix_delivery_logs_carried_by")
        batch_op.drop_index("ix_delivery_logs_replaces")
        batch_op.drop_column("carried_by_id")
        batch_op.drop_column("replaces_id")
