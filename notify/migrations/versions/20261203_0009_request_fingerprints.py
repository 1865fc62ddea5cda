"""request fingerprints: what a keyed request asked for, so its key cannot name another request

A notification's key is `<request key>#<position in the request's recipient list>`. The same key
with a different request (another recipient list, template, context or priority) was answered
position by position from the first request's rows: a changed list sent a second copy to a
recipient who had had one, and nothing to the new one; another template stored nothing and
answered "duplicate". Each notification now carries its request's fingerprint (a SHA-256 of the
normalised request, `notify.enqueue.SendRequest.fingerprint`), and a key whose rows carry another
fingerprint refuses the request. Rows stored before this migration have none and are answered as
before. Adding a nullable column changes the catalogue only on PostgreSQL. notify/db.py declares
the same.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("request_fingerprint")
