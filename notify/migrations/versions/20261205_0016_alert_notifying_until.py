"""An alert's notice being sent by a run: alerts.notifying_until

Two overlapping runs of one check (a slow webhook) both sent a new alert ("seen 1x", then
"seen 2x"): last_notified stays NULL from the insert until the first run records its notice, so
the second took it for a notice that reached nobody and sent it again. The run that decides to
send a notice now marks it, in the same transaction, until a short time ahead; another run
leaves it alone until then (or until the first records what reached whom).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notify.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# plain ALTER TABLE, not a batch (see 0013)


def upgrade() -> None:
    op.add_column(
        "alerts", sa.Column("notifying_until", notify.db.UTCDateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("alerts", "notifying_until")
