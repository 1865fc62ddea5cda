"""Bulk upsert of recipients on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine

from notify.db import transaction
from notify.recipients import (
    count_recipients,
    list_recipients,
    recipients_by_external_id,
    upsert_counts,
    upsert_recipients,
)
from notify.roster import RecipientRow


def row(external_id: str, name: str = "Tech", **changes: object) -> RecipientRow:
    values: dict[str, object] = {
        "external_id": external_id,
        "name": name,
        "email": f"{external_id.replace(':', '.')}@example.com",
        "phone": "+12065550100",
        "timezone": "UTC",
        "receive_email": True,
        "receive_sms": True,
        "quiet_hours_start": None,
        "quiet_hours_end": None,
    }
    values.update(changes)
    return RecipientRow(**values)  # type: ignore[arg-type]


def test_upsert_creates_then_updates_by_external_id(engine: Engine) -> None:
    with transaction(engine) as session:
        first = upsert_recipients(session=session, rows=[row("t:1"), row("t:2")])
    with transaction(engine) as session:
        second = upsert_recipients(
            session=session, rows=[row("t:2", name="Renamed", receive_sms=False), row("t:3")]
        )
    assert (first.created, first.updated) == (2, 0)
    assert (second.created, second.updated) == (1, 1)
    with transaction(engine) as session:
        found = recipients_by_external_id(session=session, external_ids=["t:2", "t:9"])
        assert set(found) == {"t:2"}
        assert found["t:2"].name == "Renamed" and found["t:2"].receive_sms is False
        assert count_recipients(session=session) == 3


def test_upsert_counts_say_what_the_upsert_will_do_and_write_nothing(engine: Engine) -> None:
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=[row("t:1")])
    rows = [row("t:1", name="Renamed"), row("t:2"), row("t:3")]
    with transaction(engine) as session:
        would = upsert_counts(session=session, rows=rows)
    with transaction(engine) as session:
        assert count_recipients(session=session) == 1
        assert (
            recipients_by_external_id(session=session, external_ids=["t:1"])["t:1"].name == "Tech"
        )
        did = upsert_recipients(session=session, rows=rows)
    assert (would.created, would.updated) == (did.created, did.updated) == (2, 1)


def test_an_update_keeps_the_columns_the_file_left_out(engine: Engine) -> None:
    stored = row(
        "t:1", timezone="America/Chicago", quiet_hours_start="22:00", quiet_hours_end="07:00"
    )
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=[stored])
    left_out = frozenset({"timezone", "receive_sms", "quiet_hours_start", "quiet_hours_end"})
    update = row("t:1", name="Renamed", receive_sms=False, absent=left_out)
    new = row("t:2", receive_sms=False, absent=left_out)
    with transaction(engine) as session:
        counts = upsert_recipients(session=session, rows=[update, new, row("t:3")])
    assert (counts.created, counts.updated) == (2, 1)
    with transaction(engine) as session:
        found = recipients_by_external_id(session=session, external_ids=["t:1", "t:2"])
        kept = found["t:1"]
        assert (kept.name, kept.timezone, kept.receive_sms) == ("Renamed", "America/Chicago", True)
        assert (kept.quiet_hours_start, kept.quiet_hours_end) == ("22:00", "07:00")
        assert (found["t:2"].timezone, found["t:2"].receive_sms) == ("UTC", False)


def test_upsert_handles_more_rows_than_one_chunk(engine: Engine) -> None:
    rows = [row(f"t:{n:05d}") for n in range(1_234)]
    with transaction(engine) as session:
        counts = upsert_recipients(session=session, rows=rows)
    assert counts.created == 1_234
    with transaction(engine) as session:
        assert count_recipients(session=session) == 1_234
        page = list_recipients(session=session, limit=3, offset=1_000)
        assert [r.external_id for r in page] == ["t:01000", "t:01001", "t:01002"]
        assert count_recipients(session=session, search="t:0123") == 4


def test_search_takes_percent_and_underscore_literally(engine: Engine) -> None:
    rows = [row("t:1", name="Ana"), row("t_2", name="Ben"), row("t:3", name="100% Carl")]
    with transaction(engine) as session:
        upsert_recipients(session=session, rows=rows)
    with transaction(engine) as session:
        assert count_recipients(session=session, search="%") == 1
        assert [r.external_id for r in list_recipients(session=session, search="_")] == ["t_2"]
        assert count_recipients(session=session, search="\\") == 0
        assert count_recipients(session=session, search=" ana ") == 1
        assert count_recipients(session=session, search="   ") == 3


def test_lookups_ignore_surrounding_spaces_as_the_importer_does(engine: Engine) -> None:
    from notify.recipients import known_external_ids

    with transaction(engine) as session:
        upsert_recipients(session=session, rows=[row("t:1")])
    with transaction(engine) as session:
        assert known_external_ids(session=session, external_ids=["  t:1 "]) == {"t:1"}
        found = recipients_by_external_id(session=session, external_ids=[" t:1"])
        assert set(found) == {"t:1"}
