"""Redrive (runbook sections 1 and 5): filtered, counted first, recorded under an id so the same
redrive run again changes nothing; `unknown` and `failed_permanent` only when told."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from notify.actions.audit_trail import Actor
from notify.actions.redrive import RedriveRequest, RedriveResult, redrive
from notify.db import transaction
from notify.errors import InputError
from notify.rendering import TemplateCatalog
from tests.action_rows import NOW, OLD, action_rows, actions, decision_of, failures, set_status
from tests.action_rows import status_of as statuses
from tests.factories import Rows

BOB = Actor.from_cli("bob")
CATALOG = TemplateCatalog()


def run(engine: Engine, apply: bool = False, **filters: object) -> RedriveResult:
    request = RedriveRequest(**filters)  # type: ignore[arg-type]
    with transaction(engine) as session:
        return redrive(
            session=session, request=request, now=NOW, actor=BOB, apply=apply, catalog=CATALOG
        )


def test_a_dry_run_groups_by_error_and_changes_nothing(engine: Engine) -> None:
    failures(engine)
    result = run(engine)
    assert (result.matched, result.redriven, result.applied) == (4, 0, False)
    assert [(g.error_code, g.rows) for g in result.by_error] == [
        ("Throttling", 3),
        ("InternalFailure", 1),
    ]
    assert statuses(engine)[1] == "failed"
    assert actions(engine)[0].key == result.redrive_id


def test_redrive_puts_matching_rows_back_due_now_and_records_them(engine: Engine) -> None:
    failures(engine)
    result = run(engine, apply=True, error_codes=["Throttling"], channel="sms")
    assert result.redriven == 3
    assert [statuses(engine)[i] for i in (1, 2, 3, 7)] == ["pending"] * 3 + ["failed"]
    assert action_rows(engine, result.action_id) == {1: "failed", 2: "failed", 3: "failed"}
    assert f"redrive {result.redrive_id}" in decision_of(engine, 1)


def test_the_same_redrive_again_changes_nothing_even_after_its_rows_failed_again(
    engine: Engine,
) -> None:
    failures(engine)
    first = run(engine, apply=True, error_codes=["Throttling"])
    set_status(engine, [1, 2, 3], "failed")  # delivered again and failed again
    again = run(engine, apply=True, error_codes=["Throttling"])
    assert again.redrive_id == first.redrive_id
    assert (again.matched, again.already_redriven, again.redriven) == (0, 3, 0)
    assert statuses(engine)[1] == "failed"
    fresh = run(engine, apply=True, error_codes=["Throttling"], redrive_id="second-try")
    assert fresh.redriven == 3, "a new redrive id redrives them on purpose"


def test_the_time_range_narrows_rows_but_does_not_change_the_redrive_id(engine: Engine) -> None:
    failures(engine)
    recent = run(engine, created_after=NOW - timedelta(hours=2))
    older = run(engine, created_before=OLD + timedelta(minutes=1))
    assert (recent.matched, older.matched) == (1, 3)
    assert recent.redrive_id == older.redrive_id


def test_fields_a_form_sent_empty_are_left_out_and_it_is_the_same_redrive(engine: Engine) -> None:
    """The Prefect form sends a text field left empty as "": the redrive was refused (`template
    '' is not known`) instead of leaving those filters out."""
    failures(engine)
    plain = run(engine)
    empty = {"template": "", "recipient": "", "redrive_id": " ", "created_after": ""}
    from_form = run(engine, **empty)
    assert (from_form.redrive_id, from_form.matched) == (plain.redrive_id, plain.matched)


def test_a_time_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"created_after: .* is not before created_before"):
        RedriveRequest(created_after=NOW, created_before=NOW - timedelta(days=3))
    with pytest.raises(ValidationError, match="no row can match"):
        RedriveRequest(created_after=NOW, created_before=NOW)


def test_a_template_nothing_knows_is_refused_but_a_removed_ones_rows_are_not(
    engine: Engine,
) -> None:
    rows = Rows()  # one failed row of a template since removed from the catalogue
    rows.delivery(
        rows.recipient("technician:1"), created_at=OLD, status="failed", template_name="gone"
    )
    rows.insert(engine)
    with pytest.raises(InputError, match="template 'nope' is not known"):
        run(engine, apply=True, template="nope")
    assert actions(engine) == [] and statuses(engine)[1] == "failed"
    assert "gone" not in CATALOG.names()
    assert run(engine, apply=True, template="gone").redriven == 1


def test_a_known_error_code_matches_in_any_case_and_is_one_redrive(engine: Engine) -> None:
    """`optedout` finds the OptedOut rows, under one redrive id. A code the taxonomy does not
    know matches as stored: two spellings would be two redrive ids for the same rows, and
    redrive each row twice."""
    rows = Rows()
    one = rows.recipient("technician:1")
    for code in ("OptedOut", "CarrierBlocked"):  # a code the taxonomy knows, and one it does not
        rows.delivery(one, created_at=OLD, status="failed", error_code=code)
    rows.insert(engine)
    typed = run(engine, error_codes=["optedout"])
    assert [s.id for s in typed.sample] == [1]
    assert typed.redrive_id == run(engine, error_codes=["OptedOut"]).redrive_id
    assert run(engine, apply=True, error_codes=["carrierblocked"]).redriven == 0
    assert run(engine, apply=True, error_codes=["CarrierBlocked"]).redriven == 1
    assert statuses(engine) == {1: "failed", 2: "pending"}


def test_an_error_class_is_taken_in_any_case_and_one_the_taxonomy_lacks_is_refused(
    engine: Engine,
) -> None:
    """`--error-class Config` or a typo matched no row: the dry run said 0 rows would be
    redriven, as if nothing had failed that way."""
    rows = Rows()
    rows.delivery(
        rows.recipient("technician:1"), created_at=OLD, status="failed", error_class="config"
    )
    rows.insert(engine)
    typed = run(engine, error_classes=[" Config"])
    assert typed.matched == 1
    assert typed.redrive_id == run(engine, error_classes=["config"]).redrive_id
    with pytest.raises(ValidationError, match=r"'confg' is not an error class \(transient, "):
        RedriveRequest(error_classes=["confg"])


def test_unknown_needs_an_explicit_flag_and_warns(engine: Engine) -> None:
    failures(engine)
    with pytest.raises(ValidationError, match="allow_unknown"):
        RedriveRequest(statuses=["unknown"])
    result = run(engine, apply=True, statuses=["unknown"], allow_unknown=True)
    assert result.redriven == 1 and statuses(engine)[6] == "pending"
    assert result.warnings and "twice" in result.warnings[0]


def test_sms_whose_email_fallback_went_are_counted_in_a_warning_before_redriving(
    engine: Engine,
) -> None:
    """Redriving an SMS that failed for good sends it by SMS too when its email fallback went
    (or is on its way): the operator is told how many, in the dry run and when applying."""
    rows = Rows()
    rid = rows.recipient("tech:1")
    failed = [
        rows.delivery(rid, created_at=OLD, status="failed_permanent", error_code="OptedOut")
        for _ in range(3)
    ]
    for sms, fallback_status in zip(failed, ("sent", "pending", "failed"), strict=False):
        rows.delivery(rid, created_at=OLD, channel="email", status=fallback_status, replaces_id=sms)
    rows.insert(engine)
    fix = {"statuses": ["failed_permanent"], "error_codes": ["OptedOut"]}
    warning = (
        "2 of these SMS already have their email fallback (sent or on its way): redriving them "
        "sends the message by SMS as well"
    )
    assert run(engine, **fix).warnings == [warning]
    assert run(engine, apply=True, **fix).warnings == [warning]
    assert run(engine, **fix).warnings == [], "redriven already: nothing to warn of"


def test_failed_permanent_needs_the_error_code_named(engine: Engine) -> None:
    failures(engine)
    with pytest.raises(ValidationError, match="error code"):
        RedriveRequest(statuses=["failed_permanent"])
    result = run(engine, apply=True, statuses=["failed_permanent"], error_codes=["MessageRejected"])
    assert result.redriven == 2 and statuses(engine)[4] == "pending"


def test_purged_and_sent_rows_are_never_redriven() -> None:
    with pytest.raises(ValidationError):
        RedriveRequest(statuses=["purged"])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        RedriveRequest(statuses=["sent"])  # type: ignore[list-item]
