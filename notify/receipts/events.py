"""What a provider receipt says, parsed: one `ReceiptEvent` per SES event or SMS log line.

`outcome` is the delivery status the receipt proves (None: it proves only that the provider
accepted the message, e.g. a DeliveryDelay or a transient bounce). Statuses move forward only, by
`RANK`: the final status of a row is the highest outcome of all its receipts, whatever their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from notify.db import Status


class Source(StrEnum):
    ses = "ses"
    sms = "sms"


class State(StrEnum):
    """What became of a stored receipt."""

    pending = "pending"  # stored, not yet applied
    applied = "applied"  # matched a delivery row
    unmatched = "unmatched"  # no row found (yet): retried for a while
    malformed = "malformed"  # not a receipt we can read
    # a tagged receipt matching no row that an operator looked into (`notifyops receipts
    # acknowledge`): kept, never retried, no longer data loss
    acknowledged = "acknowledged"


# A receipt never moves a row backwards; unknown / pending / failed rows it proves were accepted.
RANK: dict[str, int] = {
    Status.sent.value: 1,
    Status.undelivered.value: 2,
    Status.delivered.value: 3,
    Status.bounced.value: 4,
    Status.complained.value: 5,
}
RESOLVABLE = frozenset(
    {
        Status.pending.value,
        Status.pending_retry.value,
        Status.unknown.value,
        Status.failed.value,
        Status.failed_permanent.value,
        *RANK,
    }
)


def rank(status: str) -> int:
    return RANK.get(status, 0)


@dataclass(frozen=True)
class ReceiptEvent:
    source: Source
    event_type: str  # Send, Delivery, Bounce, ..., SmsSuccess, SmsFailure
    dedupe_key: str
    provider_message_id: str | None
    delivery_id: int | None = None
    addresses: tuple[str, ...] = ()
    occurred_at: datetime | None = None  # the event's own time
    sent_at: datetime | None = None  # when the provider accepted the message
    outcome: Status | None = None
    suppress: bool = False
    price: Decimal | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # subtype, diagnostic, response

    @property
    def label(self) -> str:
        """What `delivery_logs.receipt_event` records, e.g. `Bounce:Permanent:General`."""
        kind = self.detail.get("type")
        return ":".join(str(p) for p in (self.event_type, kind, self.detail.get("subtype")) if p)[
            :60
        ]

    def stored(self) -> dict[str, Any]:
        """The JSON kept in `receipts.detail`; `from_stored` reads it back."""
        return {
            "source": self.source.value,
            "event_type": self.event_type,
            "dedupe_key": self.dedupe_key,
            "provider_message_id": self.provider_message_id,
            "delivery_id": self.delivery_id,
            "addresses": list(self.addresses),
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "outcome": self.outcome.value if self.outcome else None,
            "suppress": self.suppress,
            "price": None if self.price is None else str(self.price),
            "detail": self.detail,
        }

    @classmethod
    def from_stored(cls, values: dict[str, Any]) -> ReceiptEvent:
        return cls(
            source=Source(values["source"]),
            event_type=values["event_type"],
            dedupe_key=values["dedupe_key"],
            provider_message_id=values.get("provider_message_id"),
            delivery_id=values.get("delivery_id"),
            addresses=tuple(values.get("addresses") or ()),
            occurred_at=_moment(values.get("occurred_at")),
            sent_at=_moment(values.get("sent_at")),
            outcome=Status(values["outcome"]) if values.get("outcome") else None,
            suppress=bool(values.get("suppress")),
            price=Decimal(values["price"]) if values.get("price") is not None else None,
            detail=dict(values.get("detail") or {}),
        )


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class MalformedReceipt(ValueError):
    """A message or log line that is not a receipt we can read (kept with this reason)."""
