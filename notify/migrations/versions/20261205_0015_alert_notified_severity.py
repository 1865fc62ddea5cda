"""The highest severity whose notice reached someone: alerts.notified_severity

An alert's resolution was routed by its current severity only, and only when `last_notified`
was set: an incident paged at P1 that dropped to P3 and then cleared said [RESOLVED] to the log
alone (the pager never heard it ended), and one whose last repeat failed (last_notified reset to
NULL so it is retried) ended with no word at all. The resolution now goes to the routes of the
highest severity that reached someone too, and is due whenever any notice did. Rows stored
before this migration that reached someone (last_notified set) take their current severity.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# plain ALTER TABLE, not a batch (see 0013)


def upgrade() -> None:
    op.add_column("alerts", sa.Column("notified_severity", sa.String(2), nullable=True))
    op.execute("UPDATE alerts SET notified_severity = severity WHERE last_notified IS NOT NULL")


def downgrade() -> None:
    op.drop_column("alerts", "notified_severity")
