"""Purge (runbook section 4): stale queued rows become `purged`, counted first, recorded always."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from notify.actions.audit_trail import Actor
from notify.actions.purge import PurgeRequest, PurgeResult, purge
from notify.actions.selection import TOP_VALUES
from notify.actions.view import action_view
from notify.db import transaction
from notify.errors import InputError
from notify.outbox import claim_due, due_count
from notify.rendering import TemplateCatalog
from tests.action_rows import NOW, OLD, action_rows, actions, decision_of, queue, status_of
from tests.factories import Rows

ALICE = Actor.from_cli("alice")
CATALOG = TemplateCatalog()


def run(engine: Engine, apply: bool = False, **filters: object) -> PurgeResult:
    request = PurgeRequest(older_than_hours=24, **filters)  # type: ignore[arg-type]
    with transaction(engine) as session:
        return purge(
            session=session, request=request, now=NOW, actor=ALICE, apply=apply, catalog=CATALOG
        )


def test_a_dry_run_counts_per_filter_value_shows_a_sample_and_changes_nothing(
    engine: Engine,
) -> None:
    queue(engine)
    before = status_of(engine)
    result = run(engine)
    assert (result.matched, result.purged, result.applied) == (5, 0, False)
    assert result.counts["channel"] == {"sms": 3, "email": 2}
    assert result.counts["status"] == {"pending": 3, "pending_retry": 2}
    assert result.counts["template"] == {"daily_schedule": 3, "repair_assigned": 2}
    assert result.counts["priority"] == {"normal": 3, "high": 2}
    assert result.counts["recipient"] == {"technician:1": 3, "technician:2": 2}
    assert [s.id for s in result.sample] == [1, 2, 3, 4, 5]
    assert result.sample[0].address_masked == "+1***4567", "addresses only masked"
    assert status_of(engine) == before
    (record,) = actions(engine)
    assert (record.action, record.applied, record.actor) == ("purge", False, "alice")
    assert record.counts["matched"] == 5


def test_counts_cut_to_the_largest_values_end_with_the_rows_of_the_others(engine: Engine) -> None:
    """A purge of 30 recipients' rows listed 20 of them under "counts by recipient", by name
    order among equals, as if the others had none."""
    rows = Rows()
    for n in range(TOP_VALUES + 10):
        rows.delivery(rows.recipient(f"t:{n}"), created_at=OLD, status="pending")
    rows.insert(engine)
    result = run(engine)
    assert len(result.counts["recipient"]) == TOP_VALUES
    tables = {name: rows for name, _, rows in action_view(result.model_dump(mode="json")).tables}
    assert len(tables["counts by recipient"]) == TOP_VALUES + 1
    assert tables["counts by recipient"][-1] == ["(20 largest shown; others)", "10"]
    assert tables["counts by channel"] == [["sms", "30"]], "a complete count has no such row"


def test_purge_marks_only_stale_queued_rows_and_records_each_one(engine: Engine) -> None:
    queue(engine)
    result = run(engine, apply=True)
    assert result.purged == 5
    assert status_of(engine) == {
        1: "purged", 2: "purged", 3: "purged", 4: "purged", 5: "purged",
        6: "pending", 7: "claimed", 8: "failed",
    }  # fmt: skip
    assert action_rows(engine, result.action_id) == {
        1: "pending",
        2: "pending",
        3: "pending",
        4: "pending_retry",
        5: "pending_retry",
    }
    assert decision_of(engine, 1).endswith(f"purged by operator action {result.action_id}")
    with transaction(engine) as session:
        assert due_count(session=session, now=NOW) == 1
        claimed = claim_due(session=session, owner="w2", limit=10, now=NOW, lease=NOW - NOW)
    assert [row.id for row in claimed] == [6], "a purged row is never claimed"


def test_the_same_purge_again_changes_nothing(engine: Engine) -> None:
    queue(engine)
    run(engine, apply=True)
    again = run(engine, apply=True)
    assert (again.matched, again.purged) == (0, 0)
    assert [a.counts["purged"] for a in actions(engine)] == [5, 0]


def test_filters_narrow_the_purge(engine: Engine) -> None:
    queue(engine)
    assert run(engine, channel="email").matched == 2
    assert run(engine, template="daily_schedule", priority="high").matched == 2
    result = run(engine, apply=True, recipient="technician:1")
    assert result.purged == 3
    assert status_of(engine)[4] == "pending_retry"


def test_filters_a_form_sent_empty_filter_nothing(engine: Engine) -> None:
    """The Prefect form sends a text field left empty as "": the purge was refused (`template ''
    is not known`), or failed on an empty time, instead of leaving those filters out."""
    queue(engine)
    empty = {"template": "", "recipient": " ", "created_after": "", "created_before": ""}
    assert run(engine, **empty).matched == run(engine).matched == 5


def test_an_unknown_recipient_is_refused(engine: Engine) -> None:
    queue(engine)
    with pytest.raises(InputError, match="technician:404"):
        run(engine, recipient="technician:404")


def test_a_template_nothing_knows_is_refused_and_nothing_is_recorded(engine: Engine) -> None:
    queue(engine)
    with pytest.raises(InputError, match="template 'nope' is not known"):
        run(engine, apply=True, template="nope")
    assert actions(engine) == [] and status_of(engine)[1] == "pending"
    assert run(engine, template="repair_completed").matched == 0, "a catalogue template: 0 rows"


def test_the_stored_rows_of_a_removed_template_can_still_be_purged(engine: Engine) -> None:
    rows = Rows()
    one = rows.recipient("technician:1")
    rows.delivery(one, created_at=OLD, status="pending", template_name="retired_notice")
    rows.insert(engine)
    assert "retired_notice" not in CATALOG.names()
    assert run(engine, apply=True, template="retired_notice").purged == 1
