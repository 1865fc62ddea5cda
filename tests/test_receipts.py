"""Receipts applied to the delivery log (SQLite and PostgreSQL): each SES event type reaches its
status, forward-only under duplicates and reordering, malformed and unmatched receipts kept,
suppressions honoured by the next send, crash rows resolved, the reputation guardrail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from notify.db import DELIVERY_LOGS, RECEIPTS, SUPPRESSIONS, Status, transaction
from notify.enqueue import SendRequest, enqueue
from notify.outbox import redrive
from notify.receipts import (
    apply_stored,
    daily_sms_cost,
    email_sending_paused,
    receipt_counts,
    reputation,
    resume_email,
    store_receipts,
)
from notify.receipts.crash import ambiguous_said, resolve_crash_rows
from notify.receipts.parse import parse_sms_log
from notify.receipts.queue import store_and_apply
from notify.receipts.reputation import guard
from notify.receipts.smslogs import note_logs_read
from notify.rendering import TemplateCatalog
from notify.settings import Settings
from tests.factories import Rows
from tests.receipt_samples import envelope, ses_event, sms_line

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HORIZON = timedelta(minutes=15)
TO = "tech.1@example.com"
PHONE = "+15551234567"


def _rows(engine: Engine, *specs: dict[str, Any]) -> list[int]:
    rows = Rows()
    rid = rows.recipient("tech:1", phone=PHONE, email=TO)
    ids = []
    for spec in specs:
        spec = {"channel": "email", "created_at": NOW - timedelta(hours=1), **spec}
        channel = spec["channel"]
        spec.setdefault(
            "recipient_email" if channel == "email" else "recipient_phone",
            TO if channel == "email" else PHONE,
        )
        ids.append(rows.delivery(rid, **spec))
    rows.insert(engine)
    return ids


def _row(engine: Engine, row_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        found = connection.execute(select(DELIVERY_LOGS).where(DELIVERY_LOGS.c.id == row_id))
        return dict(found.mappings().one())


def _apply(engine: Engine, *records: dict[str, Any] | str, now: datetime = NOW) -> Any:
    bodies = [r if isinstance(r, str) else envelope(r) for r in records]
    return store_and_apply(engine=engine, bodies=bodies, now=now)


@pytest.mark.parametrize(
    ("kind", "extra", "status"),
    [
        ("Send", {}, "sent"),
        ("Delivery", {}, "delivered"),
        ("Bounce", {"bounce_type": "Permanent", "bounce_subtype": "NoEmail"}, "bounced"),
        ("Bounce", {"bounce_type": "Transient", "bounce_subtype": "MailboxFull"}, "sent"),
        ("Bounce", {"bounce_type": "Undetermined", "bounce_subtype": "Undetermined"}, "sent"),
        ("Complaint", {}, "complained"),
        ("Reject", {}, "undelivered"),
        ("DeliveryDelay", {}, "sent"),
        ("RenderingFailure", {}, "undelivered"),
    ],
)
def test_each_ses_event_type_reaches_its_status(
    engine: Engine, kind: str, extra: dict[str, Any], status: str
) -> None:
    [row_id] = _rows(engine, {"status": "sent", "provider_message_id": "m-1"})
    report = _apply(engine, ses_event(kind, "m-1", to=TO, **extra))
    row = _row(engine, row_id)
    assert row["status"] == status
    assert report.applied[kind] == 1
    assert row["receipt_event"].startswith(kind)
    if kind == "Delivery":
        assert row["delivered_at"] == datetime(2026, 11, 30, 10, 0, 5, tzinfo=UTC)
    if status in ("bounced", "undelivered"):
        assert row["error_code"].startswith(f"ses.{kind}")


def test_an_unknown_row_is_found_by_its_delivery_id_tag_and_becomes_sent(engine: Engine) -> None:
    [row_id] = _rows(engine, {"status": "unknown"})
    _apply(engine, ses_event("Send", "ses-abc", to=TO, delivery_id=row_id))
    row = _row(engine, row_id)
    assert (row["status"], row["provider_message_id"]) == ("sent", "ses-abc")
    assert row["sent_at"] == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_a_tag_naming_a_row_never_sent_or_sent_as_another_message_is_not_ours(
    engine: Engine,
) -> None:
    """Another installation on the same SES account tags its sends with its own row ids: its
    Delivery receipt made our never-sent `pending` row `delivered` (never to be sent), and would
    have overwritten a row sent as another message. Such a receipt stays unmatched."""
    never, other = _rows(
        engine,
        {"status": "pending", "attempts": 0},
        {"status": "sent", "provider_message_id": "ours-1"},
    )
    report = _apply(
        engine,
        ses_event("Delivery", "theirs-1", to=TO, delivery_id=never),
        ses_event("Bounce", "theirs-2", to=TO, delivery_id=other),
    )
    assert report.unmatched == 2 and sum(report.applied.values()) == 0
    assert _row(engine, never)["status"] == "pending"
    assert (_row(engine, other)["status"], _row(engine, other)["provider_message_id"]) == (
        "sent",
        "ours-1",
    )


def test_a_receipt_of_a_row_waiting_for_retry_stops_a_second_send(engine: Engine) -> None:
    """A timeout we classified as transient, but SES had accepted the message."""
    [row_id] = _rows(engine, {"status": "pending_retry"})
    _apply(engine, ses_event("Delivery", "ses-late", to=TO, delivery_id=row_id))
    assert _row(engine, row_id)["status"] == "delivered"


@pytest.mark.parametrize("order", ["delivery-first", "bounce-first"])
def test_duplicates_and_reordering_change_nothing_twice(engine: Engine, order: str) -> None:
    [row_id] = _rows(engine, {"status": "sent", "provider_message_id": "m-2"})
    delivery = envelope(ses_event("Delivery", "m-2", to=TO))
    bounce = envelope(ses_event("Bounce", "m-2", to=TO))
    first, second = (delivery, bounce) if order == "delivery-first" else (bounce, delivery)
    _apply(engine, first)
    again = _apply(engine, second, first, second)  # SQS redelivers: at-least-once
    assert _row(engine, row_id)["status"] == "bounced"
    assert again.duplicates == 2
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(RECEIPTS)) == 2
        assert connection.scalar(select(func.count()).select_from(SUPPRESSIONS)) == 1


def test_a_poison_message_is_kept_with_its_reason_and_the_batch_still_applies(
    engine: Engine,
) -> None:
    [row_id] = _rows(engine, {"status": "sent", "provider_message_id": "m-3"})
    poison = ["{not json", json.dumps({"Type": "Notification", "Message": "[1, 2]"})]
    report = _apply(engine, poison[0], ses_event("Delivery", "m-3", to=TO), poison[1])
    assert report.malformed == 2
    assert _row(engine, row_id)["status"] == "delivered"
    with engine.connect() as connection:
        reasons = connection.scalars(
            select(RECEIPTS.c.reason).where(RECEIPTS.c.state == "malformed")
        ).all()
    assert sorted(reasons) == ["Message is not a JSON object", sorted(reasons)[1]]
    assert "not JSON" in sorted(reasons)[1]


def _odd_bounce() -> dict[str, Any]:
    record = ses_event("Bounce", "m-odd", to=TO)
    record["bounce"]["bouncedRecipients"] = ["someone@example.com"]  # strings, not objects
    return record


def _nul_address() -> dict[str, Any]:
    return ses_event("Delivery", "m-nul", to="tech\x00@example.com")


def _huge_tag() -> dict[str, Any]:
    record = ses_event("Delivery", "m-tag", to=TO)
    record["mail"]["tags"] = {"delivery_id": ["99999999999"]}
    return record


@pytest.mark.parametrize(
    ("odd", "reason"),
    [
        (_odd_bounce, None),  # read: its address is not an object, so none is taken from it
        (lambda: ses_event("Delivery", "m" * 300, to=TO), "messageId is 300 characters"),
        (_nul_address, "NUL character"),
        (_huge_tag, None),  # read: a tag no row of ours can have is no tag
    ],
    ids=["bounce-recipients-as-strings", "long-message-id", "nul", "tag-out-of-range"],
)
def test_an_odd_receipt_never_holds_back_the_good_ones_read_with_it(
    engine: Engine, odd: Any, reason: str | None
) -> None:
    """Each of these failed the whole chunk (AttributeError on SQLite and PostgreSQL; value too
    long, integer out of range, NUL on PostgreSQL): every poll exited 2 and SQS sent the good
    receipts read with it to the dead-letter queue. Now the odd one is read as far as it can be,
    or kept as malformed with its reason, and the good one is applied."""
    [good] = _rows(engine, {"status": "sent", "provider_message_id": "m-good"})
    report = _apply(engine, odd(), ses_event("Delivery", "m-good", to=TO))
    assert _row(engine, good)["status"] == "delivered"
    with engine.connect() as connection:
        kept = connection.execute(select(RECEIPTS.c.state, RECEIPTS.c.reason)).all()
    assert len(kept) == 2, kept
    if reason is None:
        assert report.malformed == 0 and {state for state, _ in kept} <= {"applied", "unmatched"}
    else:
        assert report.malformed == 1
        assert any(state == "malformed" and reason in why for state, why in kept), kept


def test_a_receipt_the_database_refuses_is_kept_as_malformed_and_the_others_applied(
    engine: Engine,
) -> None:
    """The last net, for a receipt no check foresaw: the chunk is stored one receipt at a time
    and the one the database refuses alone is kept as malformed with the database's reason."""
    from notify.receipts.events import ReceiptEvent, Source
    from notify.receipts.parse import parse_sqs_body
    from notify.receipts.store import keep_receipts

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores what PostgreSQL refuses (any length, NUL)")
    [good] = _rows(engine, {"status": "sent", "provider_message_id": "m-good"})
    refused = ReceiptEvent(  # past the parser's checks: a message id longer than the column
        source=Source.ses, event_type="Delivery", dedupe_key="k-long", provider_message_id="m" * 300
    )
    accepted = parse_sqs_body(envelope(ses_event("Delivery", "m-good", to=TO)))
    report = keep_receipts(engine=engine, events=[refused, accepted], now=NOW)
    assert report.malformed == 1 and report.applied["Delivery"] == 1
    assert _row(engine, good)["status"] == "delivered"
    with engine.connect() as connection:
        reasons = connection.scalars(
            select(RECEIPTS.c.reason).where(RECEIPTS.c.state == "malformed")
        ).all()
    assert len(reasons) == 1 and reasons[0].startswith("refused by the database: StringDataRight")


def test_a_receipt_for_an_unknown_id_is_kept_and_applied_once_the_row_appears(
    engine: Engine,
) -> None:
    report = _apply(engine, ses_event("Delivery", "m-later", to=TO))
    assert (report.unmatched, sum(report.applied.values())) == (1, 0)
    [row_id] = _rows(engine, {"status": "sent", "provider_message_id": "m-later"})
    with transaction(engine) as session:
        retried = apply_stored(session=session, now=NOW + timedelta(minutes=1))
    assert retried.applied["Delivery"] == 1
    assert _row(engine, row_id)["status"] == "delivered"


def test_a_poll_retries_recent_unmatched_receipts_and_old_ones_of_rows_in_doubt_only(
    engine: Engine,
) -> None:
    """Which unmatched receipts a poll tries again (three reads on their own indexes): those of
    the last hour, and older ones whose tagged row is in flight or unknown; not an old one for
    no row of ours, nor one whose tagged row has settled."""
    from notify.receipts.store import _receipts_to_apply

    in_doubt, settled = _rows(engine, {"status": "sending"}, {"status": "sent"})
    _apply(
        engine,
        ses_event("Delivery", "m-other", to="someone@elsewhere.example"),  # no row of ours
        ses_event("Delivery", "m-doubt", to=TO, delivery_id=in_doubt),
        ses_event("Delivery", "m-settled", to=TO, delivery_id=settled),
    )
    with engine.begin() as connection:  # as if none had matched a row when it came
        connection.execute(RECEIPTS.update().values(state="unmatched"))
        query = select(RECEIPTS.c.provider_message_id, RECEIPTS.c.id)
        tags = {message: rid for message, rid in connection.execute(query)}

    def retried(now: datetime) -> set[str]:
        with transaction(engine) as session:
            ids = {rid for rid, _, _ in _receipts_to_apply(session, now)}
        return {message for message, rid in tags.items() if rid in ids}

    assert retried(NOW + timedelta(minutes=30)) == {"m-other", "m-doubt", "m-settled"}
    assert retried(NOW + timedelta(hours=5)) == {"m-doubt"}


def test_a_row_still_sending_is_not_touched_until_its_outcome_is_recorded(engine: Engine) -> None:
    [row_id] = _rows(engine, {"status": "sending", "provider_message_id": None})
    _apply(engine, ses_event("Delivery", "m-s", to=TO, delivery_id=row_id))
    assert _row(engine, row_id)["status"] == "sending"


def test_a_permanent_bounce_blocks_the_next_send_to_that_address(
    engine: Engine, settings: Settings
) -> None:
    rows = Rows()
    rows.recipient("tech:1", phone=None, email=TO)
    rows.insert(engine)
    first = _send_test_message(engine, settings)
    assert first.rows["email"] == {"pending": 1}
    with engine.begin() as connection:  # the deliverer sent it
        connection.execute(DELIVERY_LOGS.update().values(status="sent", provider_message_id="m-b"))
    _apply(engine, ses_event("Bounce", "m-b", to=TO))
    assert _send_test_message(engine, settings).rows["email"] == {"skipped": 1}
    with engine.connect() as connection:
        reason = connection.scalar(select(SUPPRESSIONS.c.reason))
    assert reason.startswith("Bounce:Permanent:General receipt ses:Bounce:m-b:")


def _send_test_message(engine: Engine, settings: Settings) -> Any:
    request = SendRequest(template="test_message", to=("tech:1",), context={"sent_at": "now"})
    with transaction(engine) as session:
        return enqueue(
            session=session, request=request, catalog=TemplateCatalog(), settings=settings, now=NOW
        )


def test_transient_bounce_and_delay_are_recorded_not_failures(engine: Engine) -> None:
    [row_id] = _rows(engine, {"status": "sent", "provider_message_id": "m-t"})
    _apply(engine, ses_event("Bounce", "m-t", to=TO, bounce_type="Transient"))
    _apply(engine, ses_event("DeliveryDelay", "m-t", to=TO, at="2026-11-30T10:09:00.000Z"))
    row = _row(engine, row_id)
    assert (row["status"], row["receipt_event"]) == (
        "sent",
        "DeliveryDelay:TransientCommunicationFailure",
    )
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(SUPPRESSIONS)) == 0


def _sms(engine: Engine, *lines: str, now: datetime = NOW) -> Any:
    events = [parse_sms_log(line, logged_at=now - timedelta(minutes=5)) for line in lines]
    with transaction(engine) as session:
        report = store_receipts(session=session, events=events, now=now)
        report.add(apply_stored(session=session, now=now))
    return report


def test_sms_success_is_delivered_with_the_real_price_and_failure_opt_out_suppresses(
    engine: Engine,
) -> None:
    ok, opted = _rows(
        engine,
        {"channel": "sms", "status": "sent", "provider_message_id": "s-1", "cost": Decimal("0.01")},
        {"channel": "sms", "status": "sent", "provider_message_id": "s-2"},
    )
    _sms(
        engine,
        sms_line("s-1", phone=PHONE, price=0.00581),
        sms_line("s-2", phone=PHONE, ok=False, price=0.0, response="Phone number is opted out"),
    )
    delivered, failed = _row(engine, ok), _row(engine, opted)
    assert (delivered["status"], delivered["actual_cost"]) == ("delivered", Decimal("0.00581"))
    assert delivered["cost"] == Decimal("0.01")  # the estimate is kept
    assert (failed["status"], failed["error_message"]) == (
        "undelivered",
        "SmsFailure: Phone number is opted out",
    )
    with engine.connect() as connection:
        assert connection.execute(select(SUPPRESSIONS.c.address, SUPPRESSIONS.c.channel)).all() == [
            (PHONE, "sms")
        ]


def _watermark(engine: Engine, sent: datetime) -> None:
    stamp = sent.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    _apply(engine, ses_event("Send", f"other-{stamp}", to="x@example.com", sent=stamp), now=sent)


def _settle(engine: Engine, now: datetime) -> Any:
    with transaction(engine) as session:
        return resolve_crash_rows(session=session, now=now, horizon=HORIZON)


def test_an_unknown_email_goes_back_to_pending_once_only_after_later_send_receipts_arrive(
    engine: Engine,
) -> None:
    [row_id] = _rows(engine, {"status": "unknown", "send_events": True})
    _settle(engine, NOW)  # first seen unknown at NOW
    _watermark(engine, NOW + timedelta(minutes=5))  # the pipeline lags: not enough
    assert _settle(engine, NOW + timedelta(hours=2)).requeued_email == 0
    assert _row(engine, row_id)["status"] == "unknown"  # a stalled pipeline is not "not sent"
    _watermark(engine, NOW + timedelta(minutes=20))
    assert _settle(engine, NOW + timedelta(hours=2)).requeued_email == 1
    row = _row(engine, row_id)
    assert (row["status"], row["requeued_at"]) == ("pending", NOW + timedelta(hours=2))
    with engine.begin() as connection:  # it crashes again mid-send
        connection.execute(DELIVERY_LOGS.update().values(status="unknown"))
    _settle(engine, NOW + timedelta(hours=3))
    _watermark(engine, NOW + timedelta(hours=4))
    assert _settle(engine, NOW + timedelta(hours=5)).requeued_email == 0  # once only


@pytest.mark.parametrize("send_events", [None, False])
def test_an_unknown_email_sent_without_event_publishing_is_never_put_back(
    engine: Engine, send_events: bool | None
) -> None:
    """An attempt without the configuration set gets no Send receipt whether SES took it or
    not: later sends' receipts said nothing about it, yet it went back to pending and was sent
    again (71 double sends in a review: read timeouts after SES accepted, killed workers). It
    stays `unknown` for the operator."""
    [row_id] = _rows(engine, {"status": "unknown", "send_events": send_events})
    _settle(engine, NOW)
    _watermark(engine, NOW + timedelta(minutes=20))
    assert _settle(engine, NOW + timedelta(hours=2)).requeued_email == 0
    assert _row(engine, row_id)["status"] == "unknown"


def test_a_send_receipt_of_a_row_still_in_flight_resolves_it_once_rescued_however_late(
    engine: Engine,
) -> None:
    """A deliverer died mid-send; SES took the email and its Send receipt (tagged with the row)
    arrived while the row was still `sending`, kept "unmatched: retried later". Retried for an
    hour only, it was dropped before the rescue made the row `unknown`; the next poll put the
    row back in the queue (later sends' receipts had arrived) and it was sent twice, and health
    paged P1 data-loss for the receipt of a row that exists."""
    from notify.audits.health import _lost
    from notify.receipts.poll import settle
    from notify.settings import load_settings

    [row_id] = _rows(engine, {"status": "sending", "send_events": True})
    took = NOW.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    _apply(engine, ses_event("Send", "ses-1", to=TO, delivery_id=row_id, sent=took, at=took))
    assert _row(engine, row_id)["status"] == "sending", "kept: its row is in flight"
    later = NOW + timedelta(hours=3)
    with engine.begin() as connection:  # the rescue, hours later: the row is in doubt
        connection.execute(DELIVERY_LOGS.update().values(status="unknown"))
    _settle(engine, later - timedelta(minutes=30))  # first seen unknown
    _watermark(engine, later)  # later sends' Send receipts: "not sent", had it no receipt
    with transaction(engine) as session:
        assert _lost(session, later)["unmatched_receipts"] == 0, "its row exists: no data loss"
    settings = load_settings(database_url="sqlite:///unused.db", sender="memory")
    crash, retried, _ = settle(engine=engine, settings=settings, now=later)
    row = _row(engine, row_id)
    assert (row["status"], row["provider_message_id"]) == ("sent", "ses-1")
    assert crash.requeued_email == 0 and retried.applied["Send"] == 1


def test_a_redriven_unknown_email_in_doubt_again_is_judged_by_its_new_attempt(
    engine: Engine,
) -> None:
    """An operator redrives an `unknown` email (--allow-unknown) and its new attempt ends in
    doubt too: the Send receipts of other, later sends say nothing about this attempt until
    they are later than it. It kept the time its first attempt was seen unknown, so the next
    poll put it back in the queue at once, its new Send receipt perhaps still on the way."""
    [row_id] = _rows(engine, {"status": "unknown", "send_events": True})
    _settle(engine, NOW)  # its first attempt is seen unknown at NOW
    with transaction(engine) as session:
        assert redrive(session=session, status="unknown", now=NOW + timedelta(hours=1)) == 1
    with engine.begin() as connection:  # the redriven attempt times out at NOW + 1 h
        connection.execute(DELIVERY_LOGS.update().values(status="unknown"))
    _watermark(engine, NOW + timedelta(hours=1, minutes=5))
    assert _settle(engine, NOW + timedelta(hours=1, minutes=10)).requeued_email == 0
    assert _row(engine, row_id)["status"] == "unknown"
    _watermark(engine, NOW + timedelta(hours=1, minutes=30))  # later sends' receipts: not sent
    assert _settle(engine, NOW + timedelta(hours=2)).requeued_email == 1


def test_an_unknown_sms_is_matched_only_when_exactly_one_log_line_fits(engine: Engine) -> None:
    single, double = _rows(
        engine,
        {"channel": "sms", "status": "unknown", "recipient_phone": "+15550000001"},
        {"channel": "sms", "status": "unknown", "recipient_phone": "+15550000002"},
    )
    _settle(engine, NOW)
    published = NOW - timedelta(minutes=30)
    _sms(
        engine,
        sms_line("p-1", phone="+15550000001", published=published),
        sms_line("p-2", phone="+15550000002", published=published),
        sms_line("p-3", phone="+15550000002", published=published + timedelta(seconds=2)),
        sms_line("p-4", phone="+15550000001", published=NOW - timedelta(days=2)),  # too early
    )
    report = _settle(engine, NOW + timedelta(minutes=1))
    assert (report.matched_sms, report.ambiguous_sms) == (1, 1)
    with transaction(engine) as session:
        apply_stored(session=session, now=NOW + timedelta(minutes=1))
    assert _row(engine, single)["status"] == "delivered"
    assert _row(engine, single)["provider_message_id"] == "p-1"
    assert _row(engine, double)["status"] == "unknown"


def test_one_log_line_that_fits_two_unknown_sms_rows_resolves_neither(engine: Engine) -> None:
    """Two sends to the same number both crashed; SNS logged one of them. The line fits both
    rows, so it is ambiguous: neither row gets its message id (before, both did: one became
    `delivered`, the other stayed `unknown` carrying the other message's id), now or later."""
    first, second = _rows(
        engine,
        {"channel": "sms", "status": "unknown"},
        {"channel": "sms", "status": "unknown", "created_at": NOW - timedelta(minutes=50)},
    )
    _settle(engine, NOW)
    _sms(engine, sms_line("p-1", phone=PHONE, published=NOW - timedelta(minutes=10)))
    for later in (timedelta(minutes=1), timedelta(minutes=2), timedelta(hours=73)):
        report = _settle(engine, NOW + later)
        assert (report.matched_sms, report.ambiguous_sms, report.undelivered_sms) == (0, 2, 0)
        assert report.ambiguous_rows == tuple(sorted((first, second))), "named, to decide"
        low, high = sorted((first, second))
        assert ambiguous_said(report.ambiguous_rows) == f"2 ambiguous (rows {low}, {high})"
        with transaction(engine) as session:
            apply_stored(session=session, now=NOW + later)
        for row_id in (first, second):
            row = _row(engine, row_id)
            assert (row["status"], row["provider_message_id"]) == ("unknown", None)
    with engine.connect() as connection:
        states = connection.execute(select(RECEIPTS.c.state, RECEIPTS.c.delivery_log_id)).all()
    assert states == [("unmatched", None)]


def test_redriving_one_of_two_ambiguous_sms_rows_gives_the_line_to_the_other(
    engine: Engine,
) -> None:
    """What docs/RUNBOOK.md tells the operator: ambiguous rows to one number are decided
    together, since the line goes to the only `unknown` row it still fits."""
    first, second = _rows(
        engine, {"channel": "sms", "status": "unknown"}, {"channel": "sms", "status": "unknown"}
    )
    _settle(engine, NOW)
    _sms(engine, sms_line("p-1", phone=PHONE, published=NOW - timedelta(minutes=10)))
    assert _settle(engine, NOW + timedelta(minutes=1)).ambiguous_sms == 2
    with transaction(engine) as session:
        redrive(session=session, status="unknown", ids=[first], now=NOW + timedelta(minutes=2))
    report = _settle(engine, NOW + timedelta(minutes=3))
    assert (report.matched_sms, report.ambiguous_sms) == (1, 0)
    with transaction(engine) as session:
        apply_stored(session=session, now=NOW + timedelta(minutes=3))
    rows = [_row(engine, i) for i in (first, second)]
    assert [(r["status"], r["provider_message_id"]) for r in rows] == [
        ("pending", None),
        ("delivered", "p-1"),
    ]


def test_a_line_that_fits_one_unknown_sms_row_and_another_row_with_two_lines_is_ambiguous(
    engine: Engine,
) -> None:
    """Row `late` has one candidate line, but that line also fits row `early`: no match either
    way; the line fitting only `early` is not enough to resolve it (two lines fit `early`)."""
    early, late = _rows(
        engine,
        {"channel": "sms", "status": "unknown"},
        {"channel": "sms", "status": "unknown", "created_at": NOW - timedelta(minutes=20)},
    )
    _settle(engine, NOW)
    _sms(
        engine,
        sms_line("p-early", phone=PHONE, published=NOW - timedelta(minutes=40)),
        sms_line("p-both", phone=PHONE, published=NOW - timedelta(minutes=10)),
    )
    report = _settle(engine, NOW + timedelta(minutes=1))
    assert (report.matched_sms, report.ambiguous_sms) == (0, 2)
    assert [_row(engine, i)["provider_message_id"] for i in (early, late)] == [None, None]


def test_unknown_sms_rows_each_fitting_their_own_line_are_both_matched(engine: Engine) -> None:
    """Same number, windows apart: one line each, one-to-one, both resolved."""
    earlier = {"created_at": NOW - timedelta(hours=3), "unknown_since": NOW - timedelta(hours=2)}
    first, second = _rows(
        engine,
        {"channel": "sms", "status": "unknown", **earlier},
        {"channel": "sms", "status": "unknown"},
    )
    _settle(engine, NOW)  # the second is seen unknown
    _sms(
        engine,
        sms_line("p-first", phone=PHONE, published=NOW - timedelta(hours=2, minutes=30)),
        sms_line("p-second", phone=PHONE, published=NOW - timedelta(minutes=30)),
    )
    report = _settle(engine, NOW + timedelta(minutes=1))
    assert (report.matched_sms, report.ambiguous_sms) == (2, 0)
    with transaction(engine) as session:
        apply_stored(session=session, now=NOW + timedelta(minutes=1))
    rows = [_row(engine, i) for i in (first, second)]
    assert [(r["status"], r["provider_message_id"]) for r in rows] == [
        ("delivered", "p-first"),
        ("delivered", "p-second"),
    ]


def _logs_read(engine: Engine, *moments: datetime) -> None:
    """Polls that read the SMS delivery logs at these moments (the first one begins the reading)."""
    for moment in moments:
        with transaction(engine) as session:
            note_logs_read(session, now=moment, read_before=moment != moments[0])


def test_sms_without_a_receipt_after_72_hours_is_undelivered(engine: Engine) -> None:
    _logs_read(engine, NOW - timedelta(days=5), NOW)
    old, recent, answered = _rows(
        engine,
        {"channel": "sms", "status": "sent", "sent_at": NOW - timedelta(hours=73)},
        {"channel": "sms", "status": "sent", "sent_at": NOW - timedelta(hours=71)},
        {
            "channel": "sms",
            "status": "sent",
            "sent_at": NOW - timedelta(hours=80),
            "receipt_at": NOW - timedelta(hours=79),
        },
    )
    assert _settle(engine, NOW).undelivered_sms == 1
    statuses = [_row(engine, i)["status"] for i in (old, recent, answered)]
    assert statuses == ["undelivered", "sent", "sent"]


def test_sms_sent_before_the_delivery_logs_were_first_read_stays_sent(engine: Engine) -> None:
    """A database from before receipts (or logging set up only now): its SMS of days ago can have
    no receipt. Before, the first poll made every one of them `undelivered` (a redrive of those
    sends each again: a second SMS to the technician)."""
    *before, after = _rows(
        engine,
        {"channel": "sms", "status": "sent", "sent_at": NOW - timedelta(days=6)},
        {
            "channel": "sms",
            "status": "unknown",
            "created_at": NOW - timedelta(days=5),
            "unknown_since": NOW - timedelta(days=5),
        },
        {"channel": "sms", "status": "sent", "sent_at": NOW + timedelta(hours=1)},  # sent after
    )
    assert _settle(engine, NOW).undelivered_sms == 0  # the logs never read: nothing expires
    _logs_read(engine, NOW)  # the first poll after set-up
    assert _settle(engine, NOW).undelivered_sms == 0
    later = NOW + timedelta(hours=74)
    _logs_read(engine, later)
    assert _settle(engine, later).undelivered_sms == 1
    statuses = [_row(engine, i)["status"] for i in (*before, after)]
    assert statuses == ["sent", "unknown", "undelivered"]


def test_sms_are_not_expired_while_the_delivery_logs_go_unread(engine: Engine) -> None:
    """72 h count to the latest read of the logs: a poll that could not read them (no account
    id) has not seen the lines that may answer an SMS."""
    _logs_read(engine, NOW - timedelta(days=5), NOW - timedelta(hours=70))
    (row,) = _rows(
        engine, {"channel": "sms", "status": "sent", "sent_at": NOW - timedelta(hours=73)}
    )
    assert _settle(engine, NOW).undelivered_sms == 0
    _logs_read(engine, NOW)
    assert _settle(engine, NOW).undelivered_sms == 1
    assert _row(engine, row)["status"] == "undelivered"


def test_logs_an_earlier_version_read_count_from_its_first_sms_receipt(engine: Engine) -> None:
    first = NOW - timedelta(days=4)
    _sms(engine, sms_line("s-9", phone=PHONE), now=first)  # stored by an earlier version's poll
    with transaction(engine) as session:
        assert note_logs_read(session, now=NOW, read_before=True) == (first, True)
        assert note_logs_read(session, now=NOW + timedelta(minutes=1), read_before=True) == (
            first,
            False,
        )


def _sent_emails(engine: Engine, total: int, bounced: int, complained: int) -> None:
    specs = [{"status": "bounced"}] * bounced + [{"status": "complained"}] * complained
    specs += [{"status": "delivered"}] * (total - bounced - complained)
    _rows(engine, *({**s, "sent_at": NOW - timedelta(days=1)} for s in specs))


@pytest.mark.parametrize(
    ("bounced", "complained", "severity"),
    [(4, 0, None), (5, 0, "P2"), (0, 1, "P2"), (10, 0, "P1"), (0, 5, "P1")],
)
def test_reputation_rates_reach_p2_and_p1_at_the_ses_review_thresholds(
    engine: Engine, bounced: int, complained: int, severity: str | None
) -> None:
    _sent_emails(engine, 1000 if complained else 100, bounced, complained)
    with transaction(engine) as session:
        finding = reputation(session=session, now=NOW, window=timedelta(days=7), min_sends=50)
    assert finding.severity == severity


def test_p1_pauses_email_until_an_operator_resumes_it(engine: Engine) -> None:
    _sent_emails(engine, 100, 12, 0)
    with transaction(engine) as session:
        finding = reputation(session=session, now=NOW, window=timedelta(days=7), min_sends=50)
        guard(session=session, finding=finding, now=NOW)
    with transaction(engine) as session:
        paused = email_sending_paused(session)
    assert paused is not None and "bounce rate 12.00%" in paused
    with transaction(engine) as session:
        assert resume_email(session=session, now=NOW + timedelta(hours=1)) == paused
    with transaction(engine) as session:
        assert email_sending_paused(session) is None
        after = reputation(
            session=session, now=NOW + timedelta(hours=2), window=timedelta(days=7), min_sends=50
        )
    assert (after.sent, after.severity) == (0, None)  # the window restarts at the resume


def test_daily_sms_cost_reports_estimate_vs_actual_to_the_cent(engine: Engine) -> None:
    day = datetime(2026, 11, 29, 9, tzinfo=UTC)
    specs = [
        {
            "channel": "sms",
            "sent_at": day,
            "cost": Decimal("0.05"),
            "actual_cost": Decimal("0.031"),
        },
        {
            "channel": "sms",
            "sent_at": day,
            "cost": Decimal("0.05"),
            "actual_cost": Decimal("0.031"),
        },
        {"channel": "sms", "sent_at": day, "cost": Decimal("0.05")},
    ]
    _rows(engine, *specs)
    [report] = [
        d
        for d in daily_sms_cost(
            session=session_for(engine), since=day - timedelta(days=1), until=NOW
        )
    ]
    assert (report.messages, report.priced) == (3, 2)
    assert (report.estimated_usd, report.actual_usd) == (Decimal("0.15"), Decimal("0.06"))
    assert (report.effective_usd, report.difference_usd) == (Decimal("0.11"), Decimal("-0.04"))


def session_for(engine: Engine) -> Any:
    from sqlalchemy.orm import Session

    return Session(engine)


def test_receipt_counts_for_health_and_failure_summary(engine: Engine) -> None:
    sent_at = NOW - timedelta(hours=1)
    _rows(
        engine,
        *({"status": s, "sent_at": sent_at} for s in ("delivered", "delivered", "bounced", "sent")),
        {"status": "unknown"},
    )
    _apply(engine, "garbage")
    with transaction(engine) as session:
        counts = receipt_counts(session=session, since=NOW - timedelta(days=1), until=NOW + HORIZON)
    email = counts.channels[0]
    assert (email.delivered, email.bounced, email.no_receipt_yet, email.unknown) == (2, 1, 1, 1)
    assert (counts.malformed_receipts, counts.unmatched_receipts) == (1, 0)


def test_a_complaint_after_delivery_wins_and_suppresses(engine: Engine) -> None:
    [row_id] = _rows(engine, {"status": "sent", "provider_message_id": "m-c"})
    _apply(engine, ses_event("Complaint", "m-c", to=TO), ses_event("Delivery", "m-c", to=TO))
    assert _row(engine, row_id)["status"] == Status.complained.value


@pytest.mark.parametrize("price", [1e20, -1.0, "NaN"])
def test_an_sms_price_no_column_can_hold_is_left_unknown(price: Any) -> None:
    """A price past receipts.price's 12 digits failed the page's transaction on PostgreSQL
    (numeric overflow), and that page was read again on every poll; our estimate stands in."""
    line = json.loads(sms_line("sms-1", phone=PHONE))
    line["delivery"]["priceInUSD"] = price
    event = parse_sms_log(json.dumps(line))
    assert event.price is None and event.outcome == Status.delivered
