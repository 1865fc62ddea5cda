"""Audits from hourly rollups give the full scan's answer, to the cent, on SQLite and Postgres.

Random rows over ~30 hours (every status, both channels, costs to the micro-dollar, rows exactly
on hour edges and on the window's start), folded, then changed the way writers change them
(pending -> sent, failed -> redriven -> sent or failed again, late inserts into folded hours,
rows in the open hour, SMS delivery receipts bringing the real price before and after the row is
folded, and a second price for a priced row), folded again; after every step each audit is
compared with a full scan, and the SMS spend with a sum at the receipt's price where known.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, update

from notify.audits import (
    failure_summary,
    health,
    loop_detection,
    normalise_error_message,
    sms_cost_audit,
)
from notify.audits.common import usd_from_micros
from notify.audits.rollups import FULL_SCAN, RollupPolicy, fold, hold_folds, reset_rollups
from notify.conditions import NOT_SPENDING
from notify.db import (
    ACCEPTED_STATUSES,
    DeliveryLog,
    LoopRow,
    Notification,
    Recipient,
    RollupOpenRow,
    RollupState,
    Status,
    sms_cost_known,
    transaction,
)
from notify.error_messages import normalize_error
from notify.money import money
from notify.receipts import store_receipts
from notify.receipts.events import ReceiptEvent, Source
from notify.settings import Settings, load_settings

AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # on an hour: the window's first hour is exact
H = timedelta(hours=1)
READ_ONLY = RollupPolicy(fold=False)
AUDITS: tuple[Callable[..., Any], ...] = (sms_cost_audit, failure_summary, health, loop_detection)
WINDOWS = (
    (AS_OF, timedelta(hours=24)),
    (AS_OF + timedelta(minutes=17, microseconds=5), timedelta(hours=24)),
    (AS_OF - timedelta(minutes=30), timedelta(hours=3, minutes=10)),
    (AS_OF - timedelta(minutes=1), timedelta(minutes=40)),
    (AS_OF + timedelta(minutes=45), timedelta(hours=24)),
    (AS_OF + timedelta(minutes=10), timedelta(hours=5, minutes=20)),
)
MESSAGES = (
    "Email address is not verified. The following identities failed: tech{n}@example.com",
    "Invalid parameter: PhoneNumber Reason: +1555{n:07d} is not valid",
    "Request {n:08x}-aaaa-bbbb-cccc-0123456789ab failed: Internal Error",
    "Maximum sending rate exceeded.",
    None,
)
OPEN = ("pending", "claimed", "sending", "pending_retry", "unknown", "failed", "failed_permanent")
STATUSES = ("sent", "delivered", "skipped", *OPEN)


class World:
    """Random delivery rows and the changes writers make to them."""

    def __init__(self, engine: Engine, seed: int) -> None:
        self.engine, self.rnd, self.next_id = engine, random.Random(seed), 1
        with engine.begin() as connection:
            connection.execute(
                insert(Recipient),
                [
                    {"id": r, "external_id": f"technician:{r}", "phone": f"+1555000{r:04d}"}
                    for r in range(1, 7)
                ],
            )

    def moment(self) -> datetime:
        rnd = self.rnd
        base = AS_OF - timedelta(hours=28) + timedelta(seconds=rnd.uniform(0, 29.5 * 3600))
        edge = rnd.random()
        if edge < 0.05:  # exactly on an hour
            return base.replace(minute=0, second=0, microsecond=0)
        if edge < 0.07:  # exactly on a window's start
            return AS_OF - timedelta(hours=24)
        return base

    def insert(self, count: int, created: Callable[[], datetime] | None = None) -> None:
        notes, logs = [], []
        for _ in range(count):
            row_id, at = self.next_id, (created or self.moment)()
            self.next_id += 1
            status = self.rnd.choice(STATUSES)
            rid = self.rnd.randint(1, 6)
            title = self.rnd.choice(("Repair assigned", "Repair done", f"Repair #{row_id}"))
            notes.append(
                {
                    "id": row_id,
                    "recipient_id": rid,
                    "template_name": "t",
                    "title": title,
                    "message": title,
                    "created_at": at,
                }
            )
            logs.append(self.delivery(row_id, at, status))
        with self.engine.begin() as connection:
            connection.execute(insert(Notification), notes)
            connection.execute(insert(DeliveryLog), logs)

    def delivery(self, row_id: int, at: datetime, status: str) -> dict[str, Any]:
        rnd = self.rnd
        channel = rnd.choice(("sms", "email"))
        sms = channel == "sms"
        values: dict[str, Any] = {
            "id": row_id,
            "notification_id": row_id,
            "channel": channel,
            "status": status,
            "created_at": at,
            # handed to a provider once (a pending one put back after a crash): the price step's
            # receipts find them by the delivery id alone, as the receipts poll does such rows
            "attempts": 1,
            "segments": rnd.randint(1, 3) if sms else None,
            "cost": Decimal(rnd.randint(0, 90_000)) / 1_000_000 if sms else None,
            "sent_at": None,
            "error_message": None,
            "error_norm": None,
            "error_code": None,
            "error_class": None,
        }
        if status in ("sent", "delivered"):
            values["sent_at"] = self.sent_after(at)
        if status in ("failed", "failed_permanent", "pending_retry", "unknown"):
            values.update(self.failure(row_id))
        return values

    def sent_after(self, at: datetime) -> datetime:
        rnd = self.rnd
        latency = rnd.choice((0.0, rnd.uniform(0, 5), rnd.uniform(0, 7200)))
        return at + timedelta(seconds=latency, microseconds=rnd.randint(0, 999))

    def failure(self, n: int) -> dict[str, Any]:
        message = self.rnd.choice(MESSAGES)
        text = message.format(n=n) if message else None
        stored = self.rnd.random() < 0.3 and text is not None  # as the outbox will write it
        return {
            "error_message": text,
            "error_norm": normalize_error(text) if stored and text else None,
            "error_code": self.rnd.choice((None, "Throttling", "InvalidParameter")),
            "error_class": self.rnd.choice((None, "transient", "permanent")),
        }

    def change(self, now: datetime, count: int) -> None:
        """What the deliverer and operators do after a fold: outcomes of open rows (sent at
        `now`-ish), redrives of failed rows, new failures with new messages."""
        with self.engine.begin() as connection:
            open_ids = connection.execute(
                select(DeliveryLog.id).where(DeliveryLog.status.in_(OPEN))
            ).scalars()
            for row_id in self.rnd.sample(sorted(open_ids), count):
                fate = self.rnd.choice(("sent", "failed", "pending", "pending_retry"))
                values: dict[str, Any] = {"status": fate, "error_norm": None}
                if fate == "sent":
                    sent_at = now + timedelta(seconds=self.rnd.uniform(-60, 3600))
                    values.update(sent_at=sent_at, error_message=None)
                elif fate != "pending":
                    values.update(self.failure(row_id + 7919))
                connection.execute(
                    update(DeliveryLog).where(DeliveryLog.id == row_id).values(values)
                )

    def price(self, now: datetime, count: int) -> None:
        """SMS delivery receipts with the real price, applied as the receipts poll applies them
        (store_receipts): for sent or delivered SMS, some of them priced already (a second
        price), and for a few rows still open (a crash row or a retry the receipt proves sent)."""
        dl = DeliveryLog
        with self.engine.begin() as connection:
            sms = select(dl.id, dl.status).where(dl.channel == "sms").order_by(dl.id)
            rows = connection.execute(sms).all()
        resolvable = ("sent", "delivered", "pending", "pending_retry", "unknown", "failed")
        candidates = [row_id for row_id, status in rows if status in resolvable]
        events = [
            ReceiptEvent(
                source=Source.sms,
                event_type="SmsSuccess",
                dedupe_key=f"price:{row_id}:{self.rnd.getrandbits(64)}",
                provider_message_id=None,
                delivery_id=row_id,
                occurred_at=now,
                sent_at=now,
                outcome=Status.delivered,
                price=Decimal(self.rnd.randint(0, 90_000)) / 1_000_000,
            )
            for row_id in self.rnd.sample(candidates, count)
        ]
        with transaction(self.engine) as session:
            report = store_receipts(session=session, events=events, now=now)
        assert sum(report.applied.values()) == count


def paid_sms_micros(engine: Engine, start: datetime, end: datetime, *, include_start: bool) -> int:
    """Paid SMS sent in (start, end] ([start, end]) at the receipt's price where one arrived,
    else the estimate: summed row by row here, as a reference the audits' SQL does not share."""
    dl = DeliveryLog
    query = select(dl.sent_at, sms_cost_known()).where(
        dl.channel == "sms",
        dl.status.in_(ACCEPTED_STATUSES),
        dl.carried_by_id.is_(None),
        dl.sent_at.is_not(None),
    )
    with engine.begin() as connection:
        rows = connection.execute(query).all()
    return sum(
        int((Decimal(price or 0) * 1_000_000).to_integral_value())
        for sent_at, price in rows
        if (start <= sent_at if include_start else start < sent_at) and sent_at <= end
    )


def cap_micros(engine: Engine, as_of: datetime) -> int:
    """What the daily cap counts at `as_of` (SMS created since 00:00 UTC, not skipped, failed or
    purged, at the price known), summed row by row here as the reference."""
    dl = DeliveryLog
    day = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
    query = select(dl.created_at, sms_cost_known()).where(
        dl.channel == "sms", dl.status.not_in(NOT_SPENDING)
    )
    with engine.begin() as connection:
        rows = connection.execute(query).all()
    return sum(
        int((Decimal(price or 0) * 1_000_000).to_integral_value())
        for created_at, price in rows
        if day <= created_at <= as_of
    )


def dollars(micros: int) -> Decimal:
    return money(usd_from_micros(micros))


def check_sms_spend(engine: Engine, report: Any, as_of: datetime, window: timedelta) -> None:
    """The window's, the last hour's and the month's SMS spend at the price known now."""
    month = as_of.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    expected = (
        paid_sms_micros(engine, as_of - window, as_of, include_start=False),
        paid_sms_micros(engine, as_of - H, as_of, include_start=False),
        paid_sms_micros(engine, month, as_of, include_start=True),
    )
    shown = (report.total_cost_usd, report.last_hour_cost_usd, report.month_cost_usd)
    assert shown == tuple(dollars(micros) for micros in expected), (as_of, window)
    assert sum(hour.cost_usd for hour in report.hourly) == dollars(expected[0])
    assert report.today_cost_usd == dollars(cap_micros(engine, as_of)), as_of


def compare(engine: Engine, settings: Settings, policy: RollupPolicy) -> None:
    for as_of, window in WINDOWS:
        for audit in AUDITS:
            with transaction(engine) as session:
                rolled = audit(
                    session=session, as_of=as_of, window=window, settings=settings, rollups=policy
                )
            with transaction(engine) as session:
                full = audit(
                    session=session,
                    as_of=as_of,
                    window=window,
                    settings=settings,
                    rollups=FULL_SCAN,
                )
            assert rolled.to_json() == full.to_json(), (audit.__name__, as_of, window)
            if audit is sms_cost_audit:
                check_sms_spend(engine, rolled, as_of, window)


def fold_at(engine: Engine, now: datetime, grace: timedelta = timedelta(0)) -> Any:
    with transaction(engine) as session:
        return fold(session, now=now, grace=grace)


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_equal_a_full_scan_through_folds_and_late_changes(
    engine: Engine, db_url: str, seed: int
) -> None:
    settings = load_settings(database_url=db_url, sender="memory", loop_threshold=3)
    world = World(engine, seed)
    world.insert(700)
    world.price(AS_OF - 2 * H, 40)  # receipts before the rows are folded
    compare(engine, settings, READ_ONLY)  # nothing folded: all live

    first = fold_at(engine, AS_OF - 2 * H)
    assert first.folded and first.through_id == 700
    compare(engine, settings, READ_ONLY)

    world.price(AS_OF - 2 * H, 60)  # receipts for folded rows (rolled up or open), some repriced
    compare(engine, settings, READ_ONLY)
    world.change(AS_OF - 2 * H, 60)  # settle or re-fail rows that were open when folded
    world.insert(80)  # late rows in folded hours, and rows of the open hour
    world.insert(40, lambda: AS_OF - timedelta(minutes=world.rnd.uniform(0, 50)))
    world.price(AS_OF - 2 * H, 30)
    compare(engine, settings, READ_ONLY)

    second = fold_at(engine, AS_OF - H)
    assert second.promoted > 0 and second.through_id == 820
    world.change(AS_OF - H, 40)
    world.price(AS_OF - H, 40)
    compare(engine, settings, READ_ONLY)
    compare(engine, settings, RollupPolicy(clock=lambda: AS_OF))  # folds (grace passed) first
    world.price(AS_OF, 40)  # after the last fold
    compare(engine, settings, READ_ONLY)

    with engine.begin() as connection:  # a retention purge, then the rollups rebuilt
        connection.execute(delete(DeliveryLog).where(DeliveryLog.id % 7 == 0))
    with transaction(engine) as session:
        reset_rollups(session)
    assert fold_at(engine, AS_OF).through_id == 820
    compare(engine, settings, READ_ONLY)


def test_migrations_0010_and_0011_forget_rollups_folded_without_the_price_known(
    engine: Engine, db_url: str
) -> None:
    """Rollups folded before 0010 hold the estimate of SMS whose price arrived since (written
    then without moving the rollups), and before 0011 no cost by created hour: the upgrade
    empties them and the next fold rebuilds them at the price known."""
    from alembic import command

    from notify.migrate import alembic_config

    settings = load_settings(database_url=db_url, sender="memory", loop_threshold=3)
    world = World(engine, 6)
    world.insert(300)
    fold_at(engine, AS_OF - H)
    with engine.begin() as connection:  # a price written as before 0010: rollups unmoved
        sms = DeliveryLog.channel == "sms"
        connection.execute(update(DeliveryLog).where(sms).values(actual_cost=Decimal("0.05")))
    with pytest.raises(AssertionError):
        compare(engine, settings, READ_ONLY)
    command.downgrade(alembic_config(db_url), "0009")
    command.upgrade(alembic_config(db_url), "head")
    with transaction(engine) as session:
        assert session.get(RollupState, 1) is None
    compare(engine, settings, RollupPolicy(clock=lambda: AS_OF, grace=timedelta(0)))
    assert fold_at(engine, AS_OF + H).through_id == 300


def test_no_fold_commits_while_receipts_change_prices(engine: Engine, db_url: str) -> None:
    """Receipts hold the folds off from before they lock the rows they price until they commit:
    a fold in between would read the old price and the receipts would not know to move it.
    (SQLite runs one writer at a time anyway.)"""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL row locks")
    world = World(engine, 7)
    world.insert(50)
    assert fold_at(engine, AS_OF - H).through_id == 50
    world.insert(10)
    with transaction(engine) as session:
        assert hold_folds(session) == 50
        assert not fold_at(engine, AS_OF).folded
    assert fold_at(engine, AS_OF).through_id == 60


def test_a_loop_of_one_folded_row_and_new_rows_is_found(engine: Engine, db_url: str) -> None:
    """The folded row has no repeat when folded (not kept as repeating); its repeats arrive
    after the fold: together more than the threshold."""
    settings = load_settings(database_url=db_url, sender="memory", loop_threshold=3)
    world = World(engine, 5)
    once = AS_OF - 3 * H
    world.insert(1, lambda: once)
    fold_at(engine, AS_OF - 2 * H)
    with engine.begin() as connection:
        first = connection.execute(select(Notification.recipient_id, Notification.title)).one()
        status = connection.execute(select(DeliveryLog.status, DeliveryLog.channel)).one()
    for minutes in (10, 20, 30):
        row_id = world.next_id
        world.next_id += 1
        at = AS_OF - timedelta(minutes=minutes)
        with engine.begin() as connection:
            connection.execute(
                insert(Notification),
                {"id": row_id, "recipient_id": first[0], "template_name": "t"}
                | {"title": first[1], "message": first[1], "created_at": at},
            )
            connection.execute(
                insert(DeliveryLog),
                {"id": row_id, "notification_id": row_id, "channel": status.channel}
                | {"status": "sent", "created_at": at, "sent_at": at},
            )
    with transaction(engine) as session:
        report = loop_detection(
            session=session, as_of=AS_OF, window=24 * H, settings=settings, rollups=READ_ONLY
        )
    expected = 4 if status.status != "skipped" else 3
    assert [loop.count for loop in report.loops] == ([4] if expected > 3 else [])


def test_fold_waits_for_the_grace_before_taking_new_rows(engine: Engine) -> None:
    world = World(engine, 3)
    world.insert(50)
    grace = timedelta(minutes=10)
    assert fold_at(engine, AS_OF, grace).through_id == 0  # marks id 50, takes nothing yet
    world.insert(10)
    assert not fold_at(engine, AS_OF + timedelta(minutes=5), grace).folded
    assert fold_at(engine, AS_OF + timedelta(minutes=10), grace).through_id == 50
    assert fold_at(engine, AS_OF + timedelta(minutes=20), grace).through_id == 60


def test_fold_lists_open_rows_fills_error_norms_and_keeps_repeats(engine: Engine) -> None:
    world = World(engine, 4)
    world.insert(300)
    fold_at(engine, AS_OF)
    with transaction(engine) as session:
        dl = DeliveryLog
        open_rows = session.scalar(select(func.count()).select_from(RollupOpenRow))
        unsettled = session.scalar(select(func.count()).where(dl.status.in_(OPEN)))
        assert open_rows == unsettled
        norms = session.execute(
            select(dl.error_message, dl.error_norm).where(
                dl.status.in_((Status.failed.value, Status.failed_permanent.value)),
                dl.error_message.is_not(None),
            )
        ).all()
        assert norms and all(norm == normalise_error_message(text) for text, norm in norms)
        assert session.scalar(select(func.count()).select_from(LoopRow))
        assert session.get(RollupState, 1) is not None


def test_normalize_error_is_the_normalised_message() -> None:
    text = "Invalid parameter: PhoneNumber Reason: +15551234567 is not valid"
    assert normalize_error(text) == normalise_error_message(text)
    assert normalize_error(text) == "Invalid parameter: PhoneNumber Reason: <phone> is not valid"
