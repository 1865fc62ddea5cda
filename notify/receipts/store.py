"""Store receipts once and apply them to the delivery log.

`store_receipts` keeps every new receipt (malformed ones too, with their reason) and drops the
ones already kept: a redelivered SQS message or a re-read log line changes nothing twice.
`apply_stored` matches stored receipts to delivery rows (provider message id first, then our
delivery-id tag), moves statuses forward only, writes the real SMS price (moving an SMS the audit
rollups already hold from its old price to it: notify/audits/rollups.py), suppresses addresses
after a permanent bounce, a complaint or an SMS opt-out, and advances the SES Send watermark.
Receipts with no row yet stay `unmatched` and are retried for UNMATCHED_RETRY, and for as long
as the row their delivery-id tag names is in flight or `unknown`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert, select, text, union, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from notify.audits.rollups import hold_folds, repriced
from notify.conditions import suppress_for_good
from notify.db import (
    DELIVERY_LOGS,
    RECEIPTS,
    UNMATCHED_TAGGED_WHERE,
    Channel,
    Status,
    among,
    database_unavailable,
    dialect_of,
    lookup_chunks,
    transaction,
)
from notify.marks import advance_mark
from notify.receipts.events import RESOLVABLE, ReceiptEvent, Source, State, rank
from notify.receipts.parse import malformed_key

UNMATCHED_RETRY = timedelta(hours=1)
IN_DOUBT = (Status.claimed.value, Status.sending.value, Status.unknown.value)
APPLY_LIMIT = 20_000  # stored receipts applied per call
MAX_CHANGES = 200  # changes listed in a report (all are counted)
SEND_WATERMARK = "ses-send-watermark"
CHANNEL_OF = {Source.ses: Channel.email.value, Source.sms: Channel.sms.value}
_ROW_COLUMNS = (
    "id",
    "channel",
    "status",
    "attempts",
    "provider_message_id",
    "recipient_email",
    "recipient_phone",
    "sent_at",
    "delivered_at",
    "actual_cost",
    "receipt_event",
    "receipt_at",
    "error_code",
    "error_message",
)
_WRITTEN = (
    "status",
    "provider_message_id",
    "sent_at",
    "delivered_at",
    "actual_cost",
    "receipt_event",
    "receipt_at",
    "error_code",
    "error_message",
)
# PostgreSQL: every changed row in one UPDATE, its values in one JSON parameter
_UPDATE_FROM_JSON = text(
    """
    UPDATE delivery_logs AS d SET
        status = v.status, provider_message_id = v.provider_message_id, sent_at = v.sent_at,
        delivered_at = v.delivered_at, actual_cost = v.actual_cost,
        receipt_event = v.receipt_event, receipt_at = v.receipt_at,
        error_code = v.error_code, error_message = v.error_message
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
        id integer, old text, status text, provider_message_id text, sent_at timestamptz,
        delivered_at timestamptz, actual_cost numeric, receipt_event text,
        receipt_at timestamptz, error_code text, error_message text)
    WHERE d.id = v.id AND d.status = v.old
    """
)


@dataclass(frozen=True)
class Change:
    delivery_log_id: int
    channel: str
    before: str
    after: str
    event: str


@dataclass
class ApplyReport:
    """Counts of one poll: new receipts per event type, what they did, and what they could not."""

    received: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    malformed: int = 0
    applied: Counter[str] = field(default_factory=Counter)
    # dedupe keys of new receipts kept unmatched, and of kept ones a later apply matched (a
    # crash row adopted their message id, or their row appeared)
    unmatched_keys: set[str] = field(default_factory=set)
    matched_later: set[str] = field(default_factory=set)
    suppressed: int = 0
    changed: int = 0
    changes: list[Change] = field(default_factory=list)

    @property
    def unmatched(self) -> int:
        """New receipts still unmatched: one matched later in the same poll is not counted."""
        return len(self.unmatched_keys - self.matched_later)

    def add(self, other: ApplyReport) -> None:
        self.received.update(other.received)
        self.applied.update(other.applied)
        self.duplicates += other.duplicates
        self.malformed += other.malformed
        self.unmatched_keys |= other.unmatched_keys
        self.matched_later |= other.matched_later
        self.suppressed += other.suppressed
        self.changed += other.changed
        self.changes.extend(other.changes[: MAX_CHANGES - len(self.changes)])


def store_receipts(
    *,
    session: Session,
    events: Sequence[ReceiptEvent],
    malformed: Sequence[tuple[str, str, str]] = (),
    now: datetime,
) -> ApplyReport:
    """Apply new receipts and keep them (state applied or unmatched); keep `malformed` ones
    (key, source, reason) as they are. Receipts already kept are counted as duplicates."""
    report = ApplyReport()
    keys = [e.dedupe_key for e in events] + [key for key, _, _ in malformed]
    known = _known_keys(session, keys)
    fresh: list[ReceiptEvent] = []
    for event in events:
        if event.dedupe_key in known:
            report.duplicates += 1
            continue
        known.add(event.dedupe_key)
        report.received[event.event_type] += 1
        fresh.append(event)
    outcomes = _apply_events(session, [(e, True) for e in fresh], now, report, new=True)
    rows = [_receipt_row(e, o, now) for e, o in zip(fresh, outcomes, strict=True)]
    for key, source, reason in malformed:
        if key in known:
            report.duplicates += 1
            continue
        known.add(key)
        report.malformed += 1
        rows.append(_malformed_row(key, source, reason, now))
    _insert_receipts(session, rows)
    return report


def keep_receipts(
    *,
    engine: Engine,
    events: Sequence[ReceiptEvent],
    malformed: Sequence[tuple[str, str, str]] = (),
    now: datetime,
) -> ApplyReport:
    """`store_receipts` in one transaction. Should the database refuse it (not for being away:
    that error is raised, and the receipts are read again), each receipt is stored on its own,
    and one the database refuses alone is kept as malformed with the database's reason: a
    receipt no check foresaw never holds back the others (SQS would send the whole chunk to the
    dead-letter queue after its retries; an SMS log page would be read again on every poll)."""
    try:
        with transaction(engine) as session:
            return store_receipts(session=session, events=events, malformed=malformed, now=now)
    except Exception as error:
        if database_unavailable(error) or not events:
            raise
    report = ApplyReport()
    if malformed:
        with transaction(engine) as session:
            report.add(store_receipts(session=session, events=[], malformed=malformed, now=now))
    for event in events:
        try:
            with transaction(engine) as session:
                report.add(store_receipts(session=session, events=[event], now=now))
        except Exception as error:
            if database_unavailable(error):
                raise
            cause = getattr(error, "orig", None) or error
            reason = f"refused by the database: {type(cause).__name__}: {cause}".splitlines()[0]
            kept = (malformed_key(event.dedupe_key), event.source.value, reason)
            with transaction(engine) as session:
                report.add(store_receipts(session=session, events=[], malformed=[kept], now=now))
    return report


_INSERT_FROM_JSON = text(
    """
    INSERT INTO receipts (dedupe_key, source, event_type, provider_message_id, delivery_id,
        delivery_log_id, address, occurred_at, state, reason, detail, price, received_at)
    SELECT dedupe_key, source, event_type, provider_message_id, delivery_id, delivery_log_id,
        address, occurred_at, state, reason, detail, price, received_at
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
        dedupe_key text, source text, event_type text, provider_message_id text,
        delivery_id integer, delivery_log_id integer, address text, occurred_at timestamptz,
        state text, reason text, detail json, price numeric, received_at timestamptz)
    """
)


def _insert_receipts(session: Session, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: one statement, the rows in one JSON parameter; elsewhere executemany."""
    if not rows:
        return
    if dialect_of(session) != "postgresql":
        session.execute(insert(RECEIPTS), rows)
        return
    data = [{name: _jsonable(value) for name, value in row.items()} for row in rows]
    session.execute(_INSERT_FROM_JSON, {"rows": json.dumps(data)})


def _known_keys(session: Session, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    column = RECEIPTS.c.dedupe_key
    dialect = dialect_of(session)
    for chunk in lookup_chunks(keys, dialect=dialect):
        found.update(session.scalars(select(column).where(among(column, chunk, dialect=dialect))))
    return found


Outcome = tuple[str, str, int | None]  # state, reason, delivery_logs.id


def _receipt_row(event: ReceiptEvent, outcome: Outcome, now: datetime) -> dict[str, Any]:
    state, reason, row_id = outcome
    return {
        "dedupe_key": event.dedupe_key,
        "source": event.source.value,
        "event_type": event.event_type,
        "provider_message_id": event.provider_message_id,
        "delivery_id": event.delivery_id,
        "delivery_log_id": row_id,
        "address": event.addresses[0][:320] if event.addresses else None,
        "occurred_at": event.sent_at if event.source is Source.sms else event.occurred_at,
        "state": state,
        "reason": reason,
        "detail": event.stored(),
        "price": event.price,
        "received_at": now,
    }


def _malformed_row(key: str, source: str, reason: str, now: datetime) -> dict[str, Any]:
    return {
        "dedupe_key": key,
        "source": source,
        "event_type": "Malformed",
        "provider_message_id": None,
        "delivery_id": None,
        "delivery_log_id": None,
        "address": None,
        "occurred_at": None,
        "state": State.malformed.value,
        "reason": reason.replace("\x00", "")[:300],  # PostgreSQL text holds no NUL
        "detail": {},
        "price": None,
        "received_at": now,
    }


def apply_stored(*, session: Session, now: datetime) -> ApplyReport:
    """Apply kept receipts again: `pending` ones (a crash row adopted their message id) and
    recent `unmatched` ones (their row may exist now)."""
    receipts = _receipts_to_apply(session, now)
    report = ApplyReport()
    events = [(e, first) for _, e, first in receipts]
    outcomes = _apply_events(session, events, now, report, new=False)
    states = [
        {"b_id": receipt_id, "b_state": state, "b_reason": reason, "b_row": row_id}
        for (receipt_id, _, _), (state, reason, row_id) in zip(receipts, outcomes, strict=True)
    ]
    if states:
        _write_receipt_states(session, states)
    return report


def _apply_events(
    session: Session,
    events: Sequence[tuple[ReceiptEvent, bool]],
    now: datetime,
    report: ApplyReport,
    *,
    new: bool,
) -> list[Outcome]:
    """Match and apply; `first` marks receipts applied for the first time (suppressing, moving
    the Send watermark). `new`: receipts just received (one left unmatched is counted), else
    kept ones applied again (one matched now is noted, no longer unmatched)."""
    if not events:
        return []
    # a price changes what the rollups hold for a folded row: no fold until this commits
    priced = any(event.price is not None for event, _ in events)
    through_id = hold_folds(session) if priced else 0
    rows = _matching_rows(session, [event for event, _ in events])
    outcomes: list[Outcome] = []
    touched: dict[int, dict[str, Any]] = {}
    for event, _ in events:
        row = _row_for(event, rows)
        state, reason = _apply_one(event, row, touched, now)
        outcomes.append((state, reason, row["id"] if row else None))
        if state == State.applied.value:
            report.applied[event.event_type] += 1
            if not new:
                report.matched_later.add(event.dedupe_key)
        elif new:
            report.unmatched_keys.add(event.dedupe_key)
    _write_rows(session, touched, report, through_id)
    firsts = [event for event, first in events if first]
    report.suppressed += _suppress(session, firsts, rows, now)
    _advance_watermark(session, firsts, now)
    return outcomes


def _receipts_to_apply(session: Session, now: datetime) -> list[tuple[int, ReceiptEvent, bool]]:
    """Pending receipts, and unmatched ones to try again: those of the last UNMATCHED_RETRY,
    and, however old, those whose tagged row is still in flight or `unknown` (a dead deliverer's
    row waits for its rescue, then for this receipt: dropped after an hour, the row was put back
    in the queue and sent twice)."""
    in_doubt = (
        select(DELIVERY_LOGS.c.id)
        .where(
            DELIVERY_LOGS.c.id == RECEIPTS.c.delivery_id,
            DELIVERY_LOGS.c.status.in_(IN_DOUBT),
        )
        .exists()
    )
    unmatched = RECEIPTS.c.state == State.unmatched.value
    # three reads, each on its own index, rather than one OR that read every unmatched receipt
    wanted = union(
        select(RECEIPTS.c.id).where(RECEIPTS.c.state == State.pending.value),
        select(RECEIPTS.c.id).where(unmatched, RECEIPTS.c.received_at >= now - UNMATCHED_RETRY),
        select(RECEIPTS.c.id).where(
            text(UNMATCHED_TAGGED_WHERE),
            in_doubt,  # word for word: SQLite's partial index too
        ),
    ).subquery()
    query = (
        select(RECEIPTS.c.id, RECEIPTS.c.detail, RECEIPTS.c.state)
        .where(RECEIPTS.c.id.in_(select(wanted.c.id)))
        .order_by(RECEIPTS.c.id)
        .limit(APPLY_LIMIT)
    )
    return [
        (rid, ReceiptEvent.from_stored(detail), state == State.pending.value)
        for rid, detail, state in session.execute(query)
    ]


Rows = dict[tuple[str, Any], dict[str, Any]]  # ("pmid", id) / ("id", delivery id) -> row


def _matching_rows(session: Session, events: Sequence[ReceiptEvent]) -> Rows:
    rows: Rows = {}
    columns = [DELIVERY_LOGS.c[name] for name in _ROW_COLUMNS]
    dialect = dialect_of(session)
    message_ids = sorted({e.provider_message_id for e in events if e.provider_message_id})
    by_message_id = DELIVERY_LOGS.c.provider_message_id
    for chunk in lookup_chunks(message_ids, dialect=dialect):
        query = select(*columns).where(among(by_message_id, chunk, dialect=dialect))
        for found in session.execute(query.with_for_update()).mappings():
            rows[("pmid", found["provider_message_id"])] = _remember(rows, dict(found))
    tagged = sorted({e.delivery_id for e in events if e.delivery_id is not None})
    for chunk in lookup_chunks(tagged, dialect=dialect):
        query = select(*columns).where(among(DELIVERY_LOGS.c.id, chunk, dialect=dialect))
        for found in session.execute(query.with_for_update()).mappings():
            _remember(rows, dict(found))
    return rows


def _remember(rows: Rows, found: dict[str, Any]) -> dict[str, Any]:
    """One dict per delivery row, whichever way it was found."""
    row = rows.setdefault(("id", found["id"]), found)
    row.setdefault("_before", dict(found))
    return row


def _row_for(event: ReceiptEvent, rows: Rows) -> dict[str, Any] | None:
    """The row a receipt is about: by provider message id, else by our delivery id tag, when
    that row was handed to a provider and holds no other message id. A tag naming a row never
    sent, or one sent as another message, is another sender's (another installation on the same
    SES account counts ids from 1 too): it made a never-sent row `delivered`, never to be sent."""
    channel = CHANNEL_OF[event.source]
    row = rows.get(("pmid", event.provider_message_id)) if event.provider_message_id else None
    if row is not None and row["channel"] == channel:
        return row
    row = rows.get(("id", event.delivery_id)) if event.delivery_id is not None else None
    if row is None or row["channel"] != channel or not row["attempts"]:
        return None
    own = row["provider_message_id"]
    return row if own is None or own == event.provider_message_id else None


def _apply_one(
    event: ReceiptEvent,
    row: dict[str, Any] | None,
    touched: dict[int, dict[str, Any]],
    now: datetime,
) -> tuple[str, str]:
    if row is None:
        return State.unmatched.value, "no delivery row with this message id or delivery id"
    if row["status"] not in RESOLVABLE:  # claimed / sending (in flight), skipped
        return State.unmatched.value, f"delivery row {row['id']} is {row['status']}: retried later"
    target = event.outcome or Status.sent
    if rank(target.value) > rank(row["status"]):
        row["status"] = target.value
        if target in (Status.bounced, Status.complained, Status.undelivered):
            row["error_code"] = f"{event.source.value}.{event.label}"[:100]
            row["error_message"] = _why(event)
    row["provider_message_id"] = row["provider_message_id"] or event.provider_message_id
    row["sent_at"] = row["sent_at"] or event.sent_at or event.occurred_at or now
    if event.outcome is Status.delivered and row["delivered_at"] is None:
        row["delivered_at"] = event.occurred_at or now
    if event.price is not None:
        row["actual_cost"] = event.price
    at = event.occurred_at or now
    if row["receipt_at"] is None or at >= row["receipt_at"]:
        row["receipt_event"], row["receipt_at"] = event.label, at
    touched[row["id"]] = row
    return State.applied.value, ""


def _why(event: ReceiptEvent) -> str:
    detail = event.detail
    text = detail.get("diagnostic") or detail.get("response") or detail.get("reason") or ""
    return f"{event.label}: {text}".strip(": ")[:1000]


def _write_rows(
    session: Session, touched: dict[int, dict[str, Any]], report: ApplyReport, through_id: int
) -> None:
    """Write the touched rows; the folded SMS among them whose price changed move in the hourly
    rollups from the old price to the new in the same transaction (notify/audits/rollups.py)."""
    if not touched:
        return
    repricing = [
        row["id"]
        for row in touched.values()
        if row["channel"] == Channel.sms.value
        and row["actual_cost"] != row["_before"]["actual_cost"]
    ]
    with repriced(session, repricing, through_id):
        _write_changes(session, touched, report)


def _write_changes(
    session: Session, touched: dict[int, dict[str, Any]], report: ApplyReport
) -> None:
    for row in touched.values():
        before = row["_before"]
        if before["status"] != row["status"]:
            report.changed += 1
            if len(report.changes) < MAX_CHANGES:
                change = Change(
                    row["id"],
                    row["channel"],
                    before["status"],
                    row["status"],
                    row["receipt_event"] or "",
                )
                report.changes.append(change)
    if dialect_of(session) == "postgresql":
        _write_rows_values(session, list(touched.values()))
        return
    statement = (
        update(DELIVERY_LOGS)
        .where(
            DELIVERY_LOGS.c.id == bindparam("b_id"), DELIVERY_LOGS.c.status == bindparam("b_old")
        )
        .values({name: bindparam(f"b_{name}") for name in _WRITTEN})
    )
    params = [
        {
            "b_id": row["id"],
            "b_old": row["_before"]["status"],
            **{f"b_{name}": row[name] for name in _WRITTEN},
        }
        for row in touched.values()
    ]
    session.connection().execute(statement, params)


def _write_rows_values(session: Session, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: one UPDATE ... FROM jsonb_to_recordset instead of a statement per row."""
    data = [
        {"id": r["id"], "old": r["_before"]["status"], **{n: _jsonable(r[n]) for n in _WRITTEN}}
        for r in rows
    ]
    session.execute(_UPDATE_FROM_JSON, {"rows": json.dumps(data)})


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _write_receipt_states(session: Session, outcomes: list[dict[str, Any]]) -> None:
    statement = (
        update(RECEIPTS)
        .where(RECEIPTS.c.id == bindparam("b_id"))
        .values(
            state=bindparam("b_state"),
            reason=bindparam("b_reason"),
            delivery_log_id=bindparam("b_row"),
        )
    )
    session.connection().execute(statement, outcomes)


def _suppress(session: Session, events: Sequence[ReceiptEvent], rows: Rows, now: datetime) -> int:
    wanted: dict[tuple[str, str], str] = {}
    for event in events:
        if not event.suppress:
            continue
        channel = CHANNEL_OF[event.source]
        row = _row_for(event, rows)
        addresses = set(event.addresses)
        if row is not None:
            addresses.add(row["recipient_email"] if channel == "email" else row["recipient_phone"])
        reason = f"{event.label} receipt {event.dedupe_key}"[:300]
        for address in addresses - {None, ""}:
            wanted.setdefault((address, channel), reason)
    return suppress_for_good(session, wanted, now)


def _advance_watermark(session: Session, events: Sequence[ReceiptEvent], now: datetime) -> None:
    """The newest SES Send seen: later sends' receipts have arrived up to here."""
    sends = [e.sent_at for e in events if e.event_type == "Send" and e.sent_at is not None]
    if sends:
        advance_mark(session, SEND_WATERMARK, min(max(sends), now), now=now)
