"""Whether an attempt went out with SES event publishing: delivery_logs.send_events

The receipts poll put an `unknown` email back in the queue when later sends' SES Send receipts
had arrived and none for it: a send with the configuration set (NOTIFY_SES_CONFIGURATION_SET)
gets a Send receipt once SES takes it, so its absence says SES never took it. An attempt made
without the configuration set gets no receipt either way, and was put back too: re-sent, where
SES may have taken it (a read timeout after accepting, a deliverer killed mid-send). The claim
now records whether the attempt publishes events; only such rows go back. Rows stored before
this migration are NULL: never put back automatically (an operator decides, as for SMS).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# plain ALTER TABLE, not a batch: on SQLite a batch copies the table, and the copy lost the
# indexes SQLite cannot reflect (the unique expression index on notification and channel)


def upgrade() -> None:
    op.add_column("delivery_logs", sa.Column("send_events", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("delivery_logs", "send_events")
