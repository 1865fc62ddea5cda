"""long request keys: `notifications.request_id` holds a request's idempotency key whole

A keyed request's rows carry its idempotency key as their request id. The key may be up to 150
characters (the dispatch flow's parameter, `notifyops send --idempotency-key`), the column held
64: on PostgreSQL a longer key failed the whole request with "value too long" instead of storing
it (SQLite does not enforce the length). The column becomes 200 characters, as wide as
`notifications.idempotency_key` (`<key>#<position>`). On PostgreSQL widening a varchar changes
the catalogue only; on SQLite the table is copied. notify/db.py declares the same.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column(
            "request_id", existing_type=sa.String(length=64), type_=sa.String(length=200)
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column(
            "request_id", existing_type=sa.String(length=200), type_=sa.String(length=64)
        )
