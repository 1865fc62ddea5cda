"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 23:56:30.585853
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import notify.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.String(length=2), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("first_seen", notify.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", notify.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_notified", notify.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("resolved_at", notify.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("key", name=op.f("uq_alerts_key")),
    )
    op.create_table(
        "recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("receive_email", sa.Boolean(), nullable=False),
        sa.Column("receive_sms", sa.Boolean(), nullable=False),
        sa.Column("quiet_hours_start", sa.String(length=5), nullable=True),
        sa.Column("quiet_hours_end", sa.String(length=5), nullable=True),
        sa.Column("created_at", notify.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", notify.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipients")),
        sa.UniqueConstraint("external_id", name=op.f("uq_recipients_external_id")),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=True),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("until", notify.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", notify.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_suppressions_address_channel", ["address", "channel"], unique=False
        )

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("template_name", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("sms_text", sa.Text(), nullable=True),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("deployment_name", sa.String(length=200), nullable=True),
        sa.Column("read", sa.Boolean(), nullable=False),
        sa.Column("created_at", notify.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipients.id"],
            name=op.f("fk_notifications_recipient_id_recipients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notifications_idempotency_key")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notifications_recipient_title",
            ["recipient_id", "title", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_notifications_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            "ix_notifications_history",
            ["recipient_id", "read", sa.text("created_at DESC")],
            unique=False,
        )

    op.create_table(
        "delivery_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("recipient_email", sa.String(length=320), nullable=True),
        sa.Column("recipient_phone", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("decision", sa.String(length=300), nullable=False),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error_class", sa.String(length=20), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("segments", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Numeric(precision=12, scale=6), nullable=True),
        sa.Column("created_at", notify.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", notify.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", notify.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", notify.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", notify.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_delivery_logs_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_logs")),
        sa.UniqueConstraint(
            "notification_id", "channel", name="uq_delivery_logs_notification_channel"
        ),
    )
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_logs_channel_created", ["channel", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_delivery_logs_due",
            ["next_attempt_at", "id"],
            unique=False,
            postgresql_where=sa.text("status IN ('pending', 'pending_retry')"),
            sqlite_where=sa.text("status IN ('pending', 'pending_retry')"),
        )
        batch_op.create_index(
            "ix_delivery_logs_status_lease", ["status", "lease_expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_logs_status_lease")
        batch_op.drop_index(
            "ix_delivery_logs_due",
            postgresql_where=sa.text("status IN ('pending', 'pending_retry')"),
            sqlite_where=sa.text("status IN ('pending', 'pending_retry')"),
        )
        batch_op.drop_index("ix_delivery_logs_channel_created")

    op.drop_table("delivery_logs")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_history")
        batch_op.drop_index(batch_op.f("ix_notifications_request_id"))
        batch_op.drop_index("ix_notifications_recipient_title")

    op.drop_table("notifications")
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index("ix_suppressions_address_channel")

    op.drop_table("suppressions")
    op.drop_table("recipients")
    op.drop_table("alerts")
