"""Crafted rows for audit tests: recipients, notifications and delivery logs, bulk-inserted.

Ids are assigned here, so a test can refer to them before inserting. One delivery row per
notification (the unique (notification_id, channel) never gets in the way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert, text

from notify.db import Base, DeliveryLog, Notification, Recipient

AS_OF = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
SMS_PRICE = Decimal("0.00645")


NEVER_ATTEMPTED = ("pending", "claimed", "skipped", "purged")


@dataclass
class Rows:
    recipients: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def recipient(
        self, external_id: str, *, phone: str | None = "+15551234567", email: str | None = None
    ) -> int:
        rid = len(self.recipients) + 1
        address = email if email is not None else f"{external_id.replace(':', '.')}@example.com"
        self.recipients.append(
            {
                "id": rid,
                "external_id": external_id,
                "name": external_id,
                "phone": phone,
                "email": address,
                "receive_sms": phone is not None,
            }
        )
        return rid

    def delivery(
        self,
        recipient_id: int,
        *,
        created_at: datetime,
        channel: str = "sms",
        status: str = "sent",
        title: str = "Repair assigned",
        template_name: str = "repair_assigned",
        sent_at: datetime | None = None,
        cost: Decimal | None = None,
        **columns: Any,
    ) -> int:
        """A notification and its one delivery row; sent/delivered rows default sent_at."""
        nid = len(self.notifications) + 1
        attribution: dict[str, Any] = {
            k: columns.pop(k)
            for k in ("flow_run_id", "deployment_name", "request_id")
            if k in columns
        }
        self.notifications.append(
            {
                "id": nid,
                "recipient_id": recipient_id,
                "template_name": template_name,
                "title": title,
                "message": title,
                "created_at": created_at,
                **attribution,
            }
        )
        if sent_at is None and status in ("sent", "delivered"):
            sent_at = created_at
        # a row in any status but these was handed to a provider at least once
        columns.setdefault("attempts", 0 if status in NEVER_ATTEMPTED else 1)
        if cost is None and channel == "sms":
            cost = SMS_PRICE
        self.deliveries.append(
            {
                "id": nid,
                "notification_id": nid,
                "channel": channel,
                "status": status,
                "created_at": created_at,
                "sent_at": sent_at,
                "cost": cost,
                "segments": 1 if channel == "sms" else None,
                **columns,
            }
        )
        return nid

    def many(self, count: int, recipient_id: int, **kwargs: Any) -> None:
        for _ in range(count):
            self.delivery(recipient_id, **kwargs)

    def insert(self, engine: Engine) -> None:
        with engine.begin() as connection:
            tables: tuple[tuple[type[Base], list[dict[str, Any]]], ...] = (
                (Recipient, self.recipients),
                (Notification, _uniform(self.notifications)),
                (DeliveryLog, _uniform(self.deliveries)),
            )
            for table, rows in tables:
                if rows:
                    connection.execute(insert(table), rows)
                    if connection.dialect.name == "postgresql":  # past the ids given here, so a
                        # row the code adds afterwards (a fallback, a digest) takes a free one
                        name = table.__tablename__
                        connection.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                f"(SELECT coalesce(max(id), 0) + 1 FROM {name}), false)"
                            )
                        )


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """executemany needs the same keys in every row."""
    keys = {key for row in rows for key in row}
    return [{key: row.get(key) for key in keys} for row in rows]
