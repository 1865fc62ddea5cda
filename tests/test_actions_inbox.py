"""The in-app inbox: history newest first, unread count, mark read; on PostgreSQL the history
queries are ranges of the (recipient_id, read, created_at DESC) index (the plan is read)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, text

from notify.actions.inbox import history_query, inbox, mark_read, unread_count
from notify.db import Notification, Recipient, transaction
from notify.errors import InputError
from tests.factories import AS_OF, Rows


def feed(engine: Engine) -> None:
    """technician:1 has notifications 1-5 (1 oldest; 2 and 4 read), technician:2 has 6."""
    rows = Rows()
    one = rows.recipient("technician:1")
    two = rows.recipient("technician:2")
    for n in range(5):
        rows.delivery(one, created_at=AS_OF + timedelta(minutes=n), title=f"note {n + 1}")
    rows.delivery(two, created_at=AS_OF, title="other")
    for note in rows.notifications:
        note["read"] = note["id"] in (2, 4)
    rows.insert(engine)


def ids(engine: Engine, **kwargs: object) -> list[int]:
    with transaction(engine) as session:
        return [i.id for i in inbox(session=session, recipient="technician:1", **kwargs)]  # type: ignore[arg-type]


def test_history_is_newest_first_with_unread_only_limit_and_paging(engine: Engine) -> None:
    feed(engine)
    assert ids(engine) == [5, 4, 3, 2, 1]
    assert ids(engine, unread_only=True) == [5, 3, 1]
    assert ids(engine, limit=2) == [5, 4]
    assert ids(engine, before=AS_OF + timedelta(minutes=3)) == [3, 2, 1]
    with transaction(engine) as session:
        assert unread_count(session=session, recipient="technician:1") == 3


def test_mark_read_changes_only_that_recipients_unread_notifications(engine: Engine) -> None:
    feed(engine)
    with transaction(engine) as session:
        assert mark_read(session=session, recipient="technician:1", ids=[1, 2]) == 1
        assert unread_count(session=session, recipient="technician:2") == 1
        assert mark_read(session=session, recipient="technician:1", all_unread=True) == 2
        assert unread_count(session=session, recipient="technician:1") == 0
        assert mark_read(session=session, recipient="technician:1") == 0


def test_mark_read_refuses_ids_that_are_not_that_recipients_and_marks_nothing(
    engine: Engine,
) -> None:
    feed(engine)
    refused = r"^id 6, 99999: not a notification of 'technician:1'"
    with transaction(engine) as session:
        with pytest.raises(InputError, match=refused):
            mark_read(session=session, recipient="technician:1", ids=[1, 6, 99999])
        assert unread_count(session=session, recipient="technician:1") == 3, "nothing marked"
        assert unread_count(session=session, recipient="technician:2") == 1


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("unread_only", [True, False])
def test_on_postgres_the_history_reads_the_history_index(engine: Engine, unread_only: bool) -> None:
    rows = [
        {
            "recipient_id": 1 + n % 200,
            "template_name": "repair_assigned",
            "title": "t",
            "message": "m",
            "read": n % 3 == 0,
            "created_at": AS_OF + timedelta(seconds=n),
        }
        for n in range(20_000)
    ]
    recipients = [{"id": r, "external_id": f"technician:{r}", "name": ""} for r in range(1, 201)]
    with engine.begin() as connection:
        connection.execute(insert(Recipient), recipients)
        connection.execute(insert(Notification), rows)
        connection.execute(text("ANALYZE notifications"))
        query = history_query(42, unread_only=unread_only, limit=20)
        compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in connection.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_notifications_history" in plan, plan
    assert "Seq Scan" not in plan, plan
    if unread_only:
        assert "Sort" not in plan, "one range of the index, read in order"
