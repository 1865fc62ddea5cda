"""Bulk enqueue (COPY on Postgres, executemany on SQLite): the same rows and decisions as deciding
row by row, personal templates stored exactly, and a request stored whole or not at all."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from notify.conditions import start_conditions
from notify.db import (
    NOTIFICATIONS,
    DeliveryLog,
    Notification,
    Recipient,
    Suppression,
    transaction,
)
from notify.enqueue import EnqueueResult, SendRequest, enqueue, recipient_context, request_parts
from notify.errors import InputError
from notify.policies import Action, RecipientPrefs, SendConditions, decide_channels
from notify.pricing import estimate_sms_cost
from notify.recipients import recipients_by_external_id, upsert_recipients
from notify.rendering import TemplateCatalog
from notify.roster import RecipientRow
from notify.settings import Priority, Settings

# 03:00 UTC: 21:00 in Chicago, 22:00 in New York, 03:00 in London, 12:00 in Tokyo
NIGHT = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
CONTEXT = {"repair_id": "R-7", "unit_number": "12"}
CATALOG = TemplateCatalog()


def person(n: int, **changes: Any) -> RecipientRow:
    values: dict[str, Any] = {
        "external_id": f"p:{n}",
        "name": f"Person {n}",
        "email": f"p{n}@example.com",
        "phone": f"+1206555{n:04d}",
        "timezone": "America/Chicago",
        "receive_email": True,
        "receive_sms": True,
        "quiet_hours_start": None,
        "quiet_hours_end": None,
    }
    return RecipientRow(**(values | changes))


def mixed_roster() -> list[RecipientRow]:
    """Quiet hours (wrapping midnight, not yet, other zones), opt-outs, missing addresses,
    suppressed addresses, UK numbers priced differently, and plain recipients."""
    kinds: list[dict[str, Any]] = [
        {},
        {"quiet_hours_start": "20:00", "quiet_hours_end": "07:00"},
        {"timezone": "America/New_York", "quiet_hours_start": "21:30", "quiet_hours_end": "06:00"},
        {"timezone": "Europe/London", "quiet_hours_start": "22:00", "quiet_hours_end": "06:30"},
        {"timezone": "Asia/Tokyo", "quiet_hours_start": "22:00", "quiet_hours_end": "06:00"},
        {"quiet_hours_start": "22:00", "quiet_hours_end": "23:00"},
        {"receive_sms": False},
        {"receive_email": False},
        {"email": None},
        {"phone": None},
        {"receive_email": False, "receive_sms": False},
        {"phone": "+447700900{n:03d}"},
        {"phone": "+447700900{n:03d}", "quiet_hours_start": "01:00", "quiet_hours_end": "05:00"},
    ]
    rows = []
    for n in range(40):
        kind = {k: v.format(n=n) if isinstance(v, str) else v for k, v in kinds[n % 13].items()}
        rows.append(person(n, **kind))
    return rows


def seed(engine: Engine, rows: list[RecipientRow]) -> None:
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=rows)
        session.add_all(
            [
                Suppression(address="p3@example.com", channel="email", reason="bounced"),
                Suppression(address="+12065550014", channel="sms", reason="stop"),
                Suppression(
                    address="+12065550015", channel="sms", title="Repair R-7 assigned", reason="x"
                ),
                Suppression(address="+12065550016", channel="sms", title="Other", reason="x"),
                Suppression(
                    address="p17@example.com",
                    channel="email",
                    reason="expired",
                    until=datetime(2026, 11, 1, tzinfo=UTC),
                ),
            ]
        )


def reference_rows(
    session: Session, request: SendRequest, settings: Settings, now: datetime
) -> list[tuple[Any, ...]]:
    """What deciding row by row (the pre-bulk enqueue) stores for `request`, in order."""
    names = list(request.to)
    found = recipients_by_external_id(session=session, external_ids=names)
    recipients = [found[name] for name in names]
    message = CATALOG.render(request.template, recipient_context(request.context, recipients[0]))
    priority = request.priority or message.priority
    conditions = start_conditions(session=session, now=now)
    conditions.load_chunk(session=session, recipients=recipients, titles={message.subject}, now=now)
    rows = []
    for r in recipients:
        segments, cost = (None, Decimal("0"))
        if r.phone:
            segments, cost = estimate_sms_cost(
                message.sms, r.phone, prices=settings.sms_prices, default=settings.sms_price_usd
            )
        cond = SendConditions(
            priority=priority,
            title=message.subject,
            now=now,
            sms_min_priority=settings.sms_min_priority,
            sms_spent_today_usd=conditions.sms_spent_today,
            sms_daily_cap_usd=settings.sms_daily_cap_usd,
            sms_estimated_cost_usd=cost,
            loop_threshold=settings.loop_threshold,
            recent_sent=conditions.recent_for(r.id, message.subject),
            suppressed=conditions.suppressed_for(r, message.subject, now),
        )
        decisions = decide_channels(_prefs(r), cond)
        conditions.record(r.id, message.subject, decisions, cost)
        for d in decisions:
            sms, live = d.channel == "sms", d.action != Action.skip
            rows.append(
                (
                    r.external_id,
                    d.channel.value,
                    None if sms else r.email,
                    r.phone if sms else None,
                    "pending" if live else "skipped",
                    d.reason,
                    segments if sms else None,
                    cost if sms and live else None,
                    (d.not_before or now) if live else None,
                )
            )
    return rows


def _prefs(r: Recipient) -> RecipientPrefs:
    def hhmm(value: str | None) -> Any:
        return datetime.strptime(value, "%H:%M").time() if value else None

    return RecipientPrefs(
        r.external_id,
        r.email,
        r.phone,
        r.timezone,
        r.receive_email,
        r.receive_sms,
        hhmm(r.quiet_hours_start),
        hhmm(r.quiet_hours_end),
    )


def stored_rows(session: Session, request_id: str) -> list[tuple[Any, ...]]:
    query = (
        select(
            Recipient.external_id,
            DeliveryLog.channel,
            DeliveryLog.recipient_email,
            DeliveryLog.recipient_phone,
            DeliveryLog.status,
            DeliveryLog.decision,
            DeliveryLog.segments,
            DeliveryLog.cost,
            DeliveryLog.next_attempt_at,
        )
        .join(Notification, Notification.id == DeliveryLog.notification_id)
        .join(Recipient, Recipient.id == Notification.recipient_id)
        .where(Notification.request_id == request_id)
        .order_by(Notification.id, DeliveryLog.channel)
    )
    return [
        (*row[:7], None if row[7] is None else Decimal(row[7]), row[8])
        for row in session.execute(query)
    ]


@pytest.mark.parametrize("priority", [Priority.normal, Priority.high, Priority.urgent])
def test_a_mixed_roster_gets_the_rows_and_decisions_of_deciding_row_by_row(
    engine: Engine, settings: Settings, priority: Priority
) -> None:
    """Quiet hours, opt-outs, SMS priority, suppressions, loop guard and a daily cap crossed
    midway (across chunks, with per-country prices): bulk enqueue stores what row-by-row did."""
    roster = mixed_roster()
    seed(engine, roster)
    priced = settings.model_copy(
        update={
            "sms_daily_cap_usd": Decimal("0.16"),
            "sms_prices": {"US": Decimal("0.00645"), "GB": Decimal("0.0395")},
            "loop_threshold": 2,
        }
    )
    looped = [f"p:{n}" for n in (0, 1, 13)]
    for _ in range(2):  # earlier sends of the same title: the loop guard trips for these three
        send(engine, priced, looped, Priority.urgent)
    to = [row.external_id for row in reversed(roster)]
    request = SendRequest("repair_assigned", tuple(to), CONTEXT, priority, "mixed-1")
    with transaction(engine) as session:
        expected = reference_rows(session, request, priced, NIGHT)
    with transaction(engine) as session:
        result = enqueue(
            session=session, request=request, catalog=CATALOG, settings=priced, now=NIGHT, chunk=7
        )
    with transaction(engine) as session:
        stored = stored_rows(session, "mixed-1")
    assert sorted(stored, key=_by_recipient) == sorted(expected, key=_by_recipient)
    assert [row[0] for row in stored[::2]] == to, "notifications keep the request's order"
    assert sum(n for by in result.rows.values() for n in by.values()) == len(expected)
    statuses = {(row[1], row[4]) for row in expected}
    assert statuses == {(c, s) for c, by in result.rows.items() for s in by}


def _by_recipient(row: tuple[Any, ...]) -> tuple[str, str]:
    return row[0], row[1]


def send(engine: Engine, settings: Settings, to: list[str], priority: Priority) -> Any:
    request = SendRequest("repair_assigned", tuple(to), CONTEXT, priority)
    with transaction(engine) as session:
        return enqueue(
            session=session, request=request, catalog=CATALOG, settings=settings, now=NIGHT
        )


def personal_catalog(tmp_path: Path) -> TemplateCatalog:
    """`hello`: names the recipient everywhere; fails to render for a recipient named `boom`."""
    folder = tmp_path / "hello"
    folder.mkdir()
    boom = "{% if recipient.name == 'boom' %}{{ 1 // 0 }}{% endif %}"
    (folder / "subject.txt.j2").write_text("Hello {{ recipient.name }} {{ note }}")
    (folder / "body.txt.j2").write_text(boom + "Dear {{ recipient.name }},\n\t{{ note }}\n")
    (folder / "body.html.j2").write_text("<p>{{ note }}</p>")  # the same for everyone
    (folder / "sms.txt.j2").write_text("{{ recipient.external_id }} {{ note }}")
    meta = {"description": "d", "priority": "high", "category": "c", "sample_context": {}}
    (folder / "meta.json").write_text(json.dumps(meta))
    return TemplateCatalog(extra_dir=tmp_path)


def test_personal_templates_are_rendered_per_recipient_and_stored_verbatim(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    catalog = personal_catalog(tmp_path)
    names = ["tab\there", "back\\slash \\N", 'quote "q", comma', "line\nbreak\r\n", "ünï €"]
    seed(engine, [person(n, name=name) for n, name in enumerate(names)])
    context = {"note": "a\\b\tc\nd", "nested": {"x": [1, "\t"]}}
    to = tuple(f"p:{n}" for n in range(len(names)))
    request = SendRequest("hello", to, context, Priority.urgent, "personal-1")
    with transaction(engine) as session:
        enqueue(session=session, request=request, catalog=catalog, settings=settings, now=NIGHT)
    with transaction(engine) as session:
        stored = session.execute(
            select(Notification, Recipient)
            .join(Recipient, Recipient.id == Notification.recipient_id)
            .order_by(Notification.id)
        ).all()
        emails = session.scalars(
            select(DeliveryLog.recipient_email).where(DeliveryLog.channel == "email")
        ).all()
    assert len(stored) == len(names)
    assert sorted(emails) == sorted(f"p{n}@example.com" for n in range(5))
    for note, recipient in stored:
        expected = catalog.render("hello", recipient_context(context, recipient))
        assert (note.title, note.message, note.html, note.sms_text) == (
            expected.subject,
            expected.text,
            expected.html,
            expected.sms,
        )
        assert note.context == context and note.priority == "urgent" and note.read is False
        assert note.created_at == NIGHT and note.idempotency_key.startswith("personal-1#")


def count_stored(engine: Engine) -> tuple[int, int]:
    with transaction(engine) as session:
        notes = session.scalar(select(func.count()).select_from(Notification))
        logs = session.scalar(select(func.count()).select_from(DeliveryLog))
    return int(notes or 0), int(logs or 0)


def test_a_request_failing_half_way_stores_nothing_and_its_retry_stores_it_once(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """Chunks of 3; the 8th recipient cannot be rendered, after two chunks went in by COPY or
    INSERT. The transaction rolls back; once fixed, the same key stores the request exactly once."""
    catalog = personal_catalog(tmp_path)
    rows = [person(n, name="boom" if n == 7 else f"P{n}") for n in range(10)]
    seed(engine, rows)
    request = SendRequest("hello", tuple(r.external_id for r in rows), {"note": "n"}, None, "k-9")

    def attempt() -> Any:
        with transaction(engine) as session:
            return enqueue(
                session=session,
                request=request,
                catalog=catalog,
                settings=settings,
                now=NIGHT,
                chunk=3,
            )

    with pytest.raises(InputError, match="cannot render"):
        attempt()
    assert count_stored(engine) == (0, 0)
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=[person(7, name="fixed")])
    first = attempt()
    again = attempt()
    assert not first.duplicate and again.duplicate
    assert again.notification_ids == first.notification_ids and len(first.notification_ids) == 10
    assert count_stored(engine) == (10, 20)
    with transaction(engine) as session:
        keys = session.scalars(select(Notification.idempotency_key).order_by(Notification.id))
        assert list(keys) == [f"k-9#{n}" for n in range(10)]


def test_the_same_key_stored_concurrently_is_refused_not_stored_twice(
    engine: Engine, settings: Settings
) -> None:
    """Two runs of one request that both passed the duplicate check: the second fails on the
    unique idempotency key of its first row instead of storing a second copy."""
    seed(engine, [person(n) for n in range(3)])
    request = SendRequest("repair_assigned", ("p:0", "p:1", "p:2"), CONTEXT, None, "twice")
    with transaction(engine) as session:
        enqueue(session=session, request=request, catalog=CATALOG, settings=settings, now=NIGHT)
    racing = SendRequest("repair_assigned", request.to, CONTEXT, None, "twice")
    with pytest.raises(IntegrityError), transaction(engine) as session:
        enqueue_skipping_check(session, racing, settings)
    assert count_stored(engine) == (3, 6)


def enqueue_skipping_check(session: Session, request: SendRequest, settings: Settings) -> None:
    """What a racing retry does after its duplicate check: store under the same key."""
    from notify.enqueue_plan import Planner, recipient_rows
    from notify.enqueue_store import RequestColumns, store_for

    columns = RequestColumns(request.context, "twice", None, None, "twice", NIGHT)
    store = store_for(session.connection(), columns)
    planner = Planner(settings, NIGHT, start_conditions(session=session, now=NIGHT), None)
    rows = recipient_rows(session=session, external_ids=list(request.to))
    message = CATALOG.render(request.template, recipient_context(request.context, rows[0]))
    planned = planner.plan(session, rows, lambda _: message)
    reserved = store.reserve(session.connection(), len(planned))
    store.write(session.connection(), store.encode(planned, reserved, range(len(planned))))


def test_a_store_failing_under_a_later_chunk_leaves_nothing(
    engine: Engine, settings: Settings
) -> None:
    """The 5th notification's key is taken by another request: its chunk's COPY (or INSERT)
    fails after earlier chunks went in, while the next chunk is being decided."""
    seed(engine, [person(n) for n in range(9)])
    taken = SendRequest("repair_assigned", ("p:0",), CONTEXT, None, "other")
    with transaction(engine) as session:
        enqueue(session=session, request=taken, catalog=CATALOG, settings=settings, now=NIGHT)
        session.execute(NOTIFICATIONS.update().values(idempotency_key="dup#4"))
    request = SendRequest(
        "repair_assigned", tuple(f"p:{n}" for n in range(9)), CONTEXT, None, "dup"
    )
    with pytest.raises(IntegrityError), transaction(engine) as session:
        enqueue(
            session=session, request=request, catalog=CATALOG, settings=settings, now=NIGHT, chunk=2
        )
    assert count_stored(engine) == (1, 2)


def test_a_decision_failing_while_a_chunk_is_written_leaves_nothing(
    engine: Engine, settings: Settings
) -> None:
    """With prices per country a phone number must parse; the 6th does not, and fails while the
    chunk before it is being written."""
    seed(engine, [person(n, phone="not-a-phone" if n == 5 else None) for n in range(8)])
    priced = settings.model_copy(update={"sms_prices": {"US": Decimal("0.00645")}})
    request = SendRequest("repair_assigned", tuple(f"p:{n}" for n in range(8)), CONTEXT)
    with pytest.raises(InputError, match=r"not E\.164"), transaction(engine) as session:
        enqueue(
            session=session, request=request, catalog=CATALOG, settings=priced, now=NIGHT, chunk=2
        )
    assert count_stored(engine) == (0, 0)


ROOT = Path(__file__).resolve().parents[1]
KILLED_RECIPIENTS = 3_000


def test_an_enqueue_process_killed_half_way_stores_nothing_and_its_retry_stores_once(
    db_url: str, engine: Engine, settings: Settings
) -> None:
    """SIGKILL while the request is being stored (on Postgres: once ids for several chunks were
    reserved, i.e. chunks were being copied in; on SQLite: shortly after it started). Nothing of
    it is visible, and the same request again stores every notification once."""
    seed(engine, [person(n, external_id=f"tech:{n}") for n in range(KILLED_RECIPIENTS)])
    command = [sys.executable, "-m", "tests.workers.enqueue_worker", db_url]
    command += [str(KILLED_RECIPIENTS), "100", "killed"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = _sequence_value(engine)
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    started = time.monotonic()
    while worker.poll() is None and time.monotonic() - started < 60:
        if engine.dialect.name == "postgresql":
            if _sequence_value(engine) - start >= 500:
                break
        elif time.monotonic() - started >= 0.3:
            break
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    stored = count_stored(engine)
    assert stored in ((0, 0), (KILLED_RECIPIENTS, 2 * KILLED_RECIPIENTS)), "all or nothing"
    if engine.dialect.name == "postgresql":
        assert stored == (0, 0), "killed while storing: nothing committed"
    to = tuple(f"tech:{n}" for n in range(KILLED_RECIPIENTS))
    context = {"repair_id": "R-9", "unit_number": "1"}
    retry = SendRequest("repair_assigned", to, context, Priority.urgent, "killed")
    with transaction(engine) as session:
        result = enqueue(
            session=session, request=retry, catalog=CATALOG, settings=settings, now=NIGHT
        )
    assert len(result.notification_ids) == KILLED_RECIPIENTS
    assert count_stored(engine) == (KILLED_RECIPIENTS, 2 * KILLED_RECIPIENTS)


def test_a_request_stored_in_parts_killed_half_way_keeps_whole_parts_and_resumes_once(
    db_url: str, engine: Engine, settings: Settings
) -> None:
    """SIGKILL right after the second of five parts committed, while the third is being stored:
    whole parts stay (the third is all or nothing), and the same request run again in parts
    stores the rest, each recipient once."""
    seed(engine, [person(n, external_id=f"tech:{n}") for n in range(KILLED_RECIPIENTS)])
    size = KILLED_RECIPIENTS // 5
    command = [sys.executable, "-m", "tests.workers.enqueue_worker", db_url]
    command += [str(KILLED_RECIPIENTS), "100", "parts-killed", str(size)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    assert worker.stdout.readline().strip() == "part 0"
    assert worker.stdout.readline().strip() == "part 1"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    notes, logs = count_stored(engine)
    assert notes % size == 0 and 2 * size <= notes < KILLED_RECIPIENTS, notes
    assert logs == 2 * notes
    to = tuple(f"tech:{n}" for n in range(KILLED_RECIPIENTS))
    context = {"repair_id": "R-9", "unit_number": "1"}
    retry = SendRequest("repair_assigned", to, context, Priority.urgent, "parts-killed")
    merged = EnqueueResult.merged(store_parts(engine, retry, settings, size))
    assert len(merged.notification_ids) == KILLED_RECIPIENTS
    assert count_stored(engine) == (KILLED_RECIPIENTS, 2 * KILLED_RECIPIENTS)
    with transaction(engine) as session:
        keys = session.scalars(select(Notification.idempotency_key)).all()
    assert sorted(keys) == sorted(f"parts-killed#{n}" for n in range(KILLED_RECIPIENTS))


def _sequence_value(engine: Engine) -> int:
    """The notifications id sequence (not transactional: it shows ids reserved by a running
    transaction); 0 on SQLite."""
    if engine.dialect.name != "postgresql":
        return 0
    with engine.connect() as connection:
        value = connection.execute(
            text(
                "SELECT coalesce(pg_sequence_last_value("
                "pg_get_serial_sequence('notifications', 'id')::regclass), 0)"
            )
        )
        return int(value.scalar_one())


def store_part(
    engine: Engine,
    request: SendRequest,
    settings: Settings,
    part: range,
    catalog: TemplateCatalog = CATALOG,
) -> EnqueueResult:
    """One part in its own transaction, as the dispatch flow stores it."""
    with transaction(engine) as session:
        return enqueue(
            session=session,
            request=request,
            catalog=catalog,
            settings=settings,
            now=NIGHT,
            part=part,
        )


def store_parts(
    engine: Engine,
    request: SendRequest,
    settings: Settings,
    size: int,
    catalog: TemplateCatalog = CATALOG,
) -> list[EnqueueResult]:
    """Every part, one after another, as the dispatch flow stores a large request."""
    return [
        store_part(engine, request, settings, part, catalog)
        for part in request_parts(request, size)
    ]


def test_a_request_stored_in_parts_stores_what_one_transaction_stores(
    engine: Engine, settings: Settings
) -> None:
    """Parts of 4 over 13 recipients (repeats and blanks dropped; an unknown one skipped): the
    same rows and decisions, in the request's order, as the request stored whole."""
    seed(engine, mixed_roster()[:13])
    to = ("p:12", " ", "p:3", "p:9", "nobody", *[f"p:{n}" for n in range(11)], "p:3")
    whole = SendRequest("repair_assigned", to, CONTEXT, None, "whole", skip_unknown=True)
    with transaction(engine) as session:
        one = enqueue(session=session, request=whole, catalog=CATALOG, settings=settings, now=NIGHT)
    split = SendRequest("repair_assigned", to, CONTEXT, None, "split", skip_unknown=True)
    assert [len(part) for part in request_parts(split, 4)] == [4, 4, 4, 1]
    parts = store_parts(engine, split, settings, 4)
    merged = EnqueueResult.merged(parts)
    with transaction(engine) as session:
        assert stored_rows(session, "split") == stored_rows(session, "whole")
    assert (
        merged.rows == one.rows
        and merged.unknown_recipients == ("nobody",) == one.unknown_recipients
    )
    assert len(merged.notification_ids) == len(one.notification_ids) == 12
    assert not merged.duplicate


def test_a_request_whose_part_failed_stores_only_the_rest_when_run_again(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    """The third part fails (a recipient the template cannot render for): the first two stay
    stored. Run again after the fix, the request stores the third and fourth parts only."""
    catalog = personal_catalog(tmp_path)
    seed(engine, [person(n, name="boom" if n == 7 else f"P{n}") for n in range(10)])
    request = SendRequest("hello", tuple(f"p:{n}" for n in range(10)), {"note": "n"}, None, "k")
    with pytest.raises(InputError):
        store_parts(engine, request, settings, 3, catalog)
    assert count_stored(engine) == (6, 12)
    seed(engine, [person(7, name="P7")])
    again = store_parts(engine, request, settings, 3, catalog)
    assert [r.duplicate for r in again] == [True, True, False, False]
    assert count_stored(engine) == (10, 20)
    with transaction(engine) as session:
        keys = session.scalars(select(Notification.idempotency_key)).all()
        names = session.scalars(
            select(Recipient.external_id).join(
                Notification, Notification.recipient_id == Recipient.id
            )
        ).all()
    assert sorted(keys) == sorted(f"k#{n}" for n in range(10))
    assert sorted(names) == sorted(f"p:{n}" for n in range(10)), "each recipient stored once"
    merged = EnqueueResult.merged(again)
    assert len(merged.notification_ids) == 10 and not merged.duplicate
    assert merged.rows == {"email": {"pending": 4}, "sms": {"pending": 4}}, "only the new rows"
    assert EnqueueResult.merged(store_parts(engine, request, settings, 3, catalog)).duplicate


@pytest.mark.parametrize(
    "changed",
    [
        {"to": ("p:0", "p:2", "p:1")},  # one more in the middle: positions name others
        {"to": ("p:1", "p:0")},  # the same recipients in another order
        {"to": ("p:0",)},  # fewer
        {"template": "test_message", "context": {"sent_at": "now"}},
        {"context": {"repair_id": "R-8", "unit_number": "12"}},
        {"priority": Priority.low},
    ],
)
def test_a_key_already_used_for_another_request_refuses_it_and_stores_nothing(
    engine: Engine, settings: Settings, changed: dict[str, Any]
) -> None:
    """Seen by a user: the same key with a changed recipient list sent a second copy to a
    recipient who had one and nothing to the new one; with another template nothing was stored
    and the answer was "duplicate". Now the request is refused, naming the key, whether stored
    in parts or whole, and the first request is still answered."""
    seed(engine, mixed_roster()[:5])
    first = SendRequest("repair_assigned", ("p:0", "p:1"), CONTEXT, None, "job-7")
    stored = EnqueueResult.merged(store_parts(engine, first, settings, 1))
    before = count_stored(engine)
    other = dataclasses.replace(first, **changed)
    for size in (1, 5):
        with pytest.raises(InputError, match="idempotency_key: 'job-7' was already used"):
            store_parts(engine, other, settings, size)
    with pytest.raises(InputError, match="idempotency_key"), transaction(engine) as session:
        enqueue(session=session, request=other, catalog=CATALOG, settings=settings, now=NIGHT)
    assert count_stored(engine) == before
    again = EnqueueResult.merged(store_parts(engine, first, settings, 2))
    assert again.duplicate and again.notification_ids == stored.notification_ids


@pytest.mark.parametrize(("first", "again"), [(None, Priority.high), (Priority.high, None)])
def test_the_template_s_own_priority_named_or_left_out_is_the_same_request(
    engine: Engine, settings: Settings, first: Priority | None, again: Priority | None
) -> None:
    """repair_assigned's priority is high: a request sent without `--priority` and repeated with
    `--priority high` (or the other way round) asks for the same thing, and was refused as
    "another ... priority"."""
    seed(engine, mixed_roster()[:2])
    request = SendRequest("repair_assigned", ("p:0", "p:1"), CONTEXT, first, "job-8")
    stored = EnqueueResult.merged(store_parts(engine, request, settings, 1))
    repeated = dataclasses.replace(request, priority=again)
    for size in (1, 5):
        answer = EnqueueResult.merged(store_parts(engine, repeated, settings, size))
        assert answer.duplicate and answer.notification_ids == stored.notification_ids
    with transaction(engine) as session:
        whole = enqueue(
            session=session, request=repeated, catalog=CATALOG, settings=settings, now=NIGHT
        )
    assert whole.duplicate and whole.notification_ids == stored.notification_ids


def test_a_key_partly_stored_before_fingerprints_still_refuses_another_request(
    engine: Engine, settings: Settings
) -> None:
    """A request whose first part was stored before rows recorded fingerprints (migration 0009)
    and which was resumed after: its newer rows decide, whichever row a probe meets first."""
    seed(engine, mixed_roster()[:4])
    request = SendRequest("repair_assigned", ("p:0", "p:1", "p:2"), CONTEXT, None, "old-key")
    first, *rest = request_parts(request, 2)
    store_part(engine, request, settings, first)
    with transaction(engine) as session:
        session.execute(text("UPDATE notifications SET request_fingerprint = NULL"))
    for part in rest:
        store_part(engine, request, settings, part)
    before = count_stored(engine)
    other = dataclasses.replace(request, to=("p:3", "p:0", "p:1"))
    with pytest.raises(InputError, match="idempotency_key: 'old-key' was already used"):
        store_parts(engine, other, settings, 2)
    assert count_stored(engine) == before
    assert EnqueueResult.merged(store_parts(engine, request, settings, 2)).duplicate


@pytest.mark.parametrize(
    ("changed", "field"),
    [
        ({"context": {"repair_id": "R-\x00", "unit_number": "12"}}, "context.repair_id"),
        ({"to": ("p:0", "p:\x001")}, "to[1]"),
        ({"idempotency_key": "k\x00"}, "idempotency_key"),
    ],
)
def test_a_nul_character_is_refused_naming_its_field_and_stores_nothing(
    engine: Engine, settings: Settings, changed: dict[str, Any], field: str
) -> None:
    """PostgreSQL cannot store a NUL character: it refused the request with "A string literal
    cannot contain NUL (0x00) characters", naming no field (SQLite stored it)."""
    seed(engine, mixed_roster()[:2])
    request = SendRequest("repair_assigned", ("p:0", "p:1"), CONTEXT, None, "k")
    request = dataclasses.replace(request, **changed)
    with pytest.raises(InputError, match=rf"^{re.escape(field)}: contains a NUL"):
        store_parts(engine, request, settings, 1)
    assert count_stored(engine) == (0, 0)


def test_the_longest_key_a_dispatch_accepts_stores_its_request_and_answers_it_again(
    engine: Engine, settings: Settings
) -> None:
    """A 150-character idempotency key (the flow's and the command's limit) is the request's id
    whole: stored in parts, answered as a duplicate when run again. PostgreSQL refused it once
    ("value too long": the request id held 64 characters)."""
    seed(engine, mixed_roster()[:5])
    key = "k" * 150
    request = SendRequest("repair_assigned", tuple(f"p:{n}" for n in range(5)), CONTEXT, None, key)
    first = EnqueueResult.merged(store_parts(engine, request, settings, 2))
    assert first.request_id == key and len(first.notification_ids) == 5
    again = EnqueueResult.merged(store_parts(engine, request, settings, 2))
    assert again.duplicate and again.notification_ids == first.notification_ids
    with transaction(engine) as session:
        assert set(session.scalars(select(Notification.request_id))) == {key}


def test_a_later_part_checks_its_recipients_and_the_first_part_checks_them_all(
    engine: Engine, settings: Settings
) -> None:
    seed(engine, [person(n) for n in range(6)])
    unknown_last = SendRequest(
        "repair_assigned", tuple(f"p:{n}" for n in range(7)), CONTEXT, None, "u"
    )
    with pytest.raises(InputError, match="p:6"):
        store_parts(engine, unknown_last, settings, 3)
    assert count_stored(engine) == (0, 0), "the first part refused the whole request"
    request = SendRequest("repair_assigned", tuple(f"p:{n}" for n in range(6)), CONTEXT, None, "d")
    first, later = request_parts(request, 3)
    store_part(engine, request, settings, first)
    with transaction(engine) as session:
        session.execute(text("DELETE FROM recipients WHERE external_id = 'p:4'"))
    with pytest.raises(InputError, match=r"no longer known: p:4"):
        store_part(engine, request, settings, later)
    skipping = SendRequest("repair_assigned", request.to, CONTEXT, None, "d", skip_unknown=True)
    rest = store_part(engine, skipping, settings, later)
    assert len(rest.notification_ids) == 2 and count_stored(engine) == (5, 10)
    unkeyed = SendRequest("repair_assigned", request.to, CONTEXT, skip_unknown=True)
    with pytest.raises(ValueError, match="idempotency key"):
        store_part(engine, unkeyed, settings, first)
    assert request_parts(unkeyed, 3) == [range(6)], "an unkeyed request is stored whole"
    whole = store_part(engine, unkeyed, settings, range(6))
    assert len(whole.notification_ids) == 5, "its one part, the whole request (p:4 is gone)"


def test_recipients_added_in_the_requests_own_transaction_are_all_sent_to(
    engine: Engine, settings: Settings
) -> None:
    """On Postgres the chunks are read through a second connection while the first writes, but
    not when the transaction already wrote: that connection could not see the new recipients."""
    seed(engine, [person(n) for n in range(3)])
    newcomers = [person(n) for n in range(100, 107)]
    request = SendRequest(
        "repair_assigned", tuple(f"p:{n}" for n in [0, *range(100, 107), 1, 2]), CONTEXT, None, "k"
    )
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=newcomers)
        result = enqueue(
            session=session, request=request, catalog=CATALOG, settings=settings, now=NIGHT, chunk=2
        )
    assert len(result.notification_ids) == 10
    with transaction(engine) as session:
        stored = stored_rows(session, "k")
    assert [row[0] for row in stored[::2]] == list(request.to)
