"""Deciding `unknown` rows (runbook section 5, "Unknown rows"): after checking the provider's
logs, an operator records `sent` or `not sent` without sending; health's P3 `unknown` then
clears. Through the library and the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from notify.actions.audit_trail import Actor
from notify.actions.decide import DecideRequest, DecideResult, decide_unknown
from notify.actions.redrive import RedriveRequest, redrive
from notify.audits.health import health
from notify.audits.rollups import RollupPolicy, fold
from notify.db import DeliveryLog, transaction
from notify.errors import InputError
from notify.receipts.crash import expire_silent_sms
from notify.receipts.smslogs import note_logs_read
from notify.rendering import TemplateCatalog
from notify.settings import Settings
from notifyops.cli import main
from tests.action_rows import NOW, OLD, action_rows, actions, decision_of, insert, set_status
from tests.action_rows import status_of as statuses
from tests.factories import Rows

ERIN = Actor.from_cli("erin")
CATALOG = TemplateCatalog()
SEEN = OLD + timedelta(minutes=10)


def in_doubt(engine: Engine) -> None:
    """ids 1-2: unknown sms (technician:1), 3: unknown email (technician:2), 4: sent sms,
    5: failed email."""
    rows = Rows()
    one = rows.recipient("technician:1")
    two = rows.recipient("technician:2")
    for _ in range(2):
        rows.delivery(one, created_at=OLD, status="unknown", attempts=1, unknown_since=SEEN)
    rows.delivery(two, created_at=OLD, status="unknown", channel="email", attempts=1)
    rows.delivery(one, created_at=OLD, status="sent", attempts=1, sent_at=OLD)
    rows.delivery(two, created_at=OLD, status="failed", channel="email", attempts=5)
    insert(rows, engine)


def decide(engine: Engine, apply: bool = False, **fields: object) -> DecideResult:
    request = DecideRequest(**{"reason": "checked the SNS delivery logs", **fields})  # type: ignore[arg-type]
    with transaction(engine) as session:
        return decide_unknown(
            session=session, request=request, now=NOW, actor=ERIN, apply=apply, catalog=CATALOG
        )


def unknown_in_health(engine: Engine, settings: Settings) -> tuple[int, list[str]]:
    with transaction(engine) as session:
        fold(session, now=NOW, grace=timedelta(0))
        report = health(
            session=session,
            as_of=NOW,
            window=timedelta(hours=24),
            settings=settings,
            rollups=RollupPolicy(fold=False),
        )
    return report.unknown, [f.code for f in report.findings]


def test_a_dry_run_counts_the_unknown_rows_and_changes_nothing(engine: Engine) -> None:
    in_doubt(engine)
    result = decide(engine, outcome="sent", channel="sms")
    assert (result.matched, result.decided, result.applied) == (2, 0, False)
    assert [s.id for s in result.sample] == [1, 2]
    assert statuses(engine)[1] == "unknown"
    trail = actions(engine)[0]
    assert (trail.action, trail.applied, trail.note) == (
        "decide-unknown",
        False,
        "checked the SNS delivery logs",
    )


def test_sent_clears_health_and_the_row_is_never_redriven_as_unknown(
    engine: Engine, settings: Settings
) -> None:
    in_doubt(engine)
    assert unknown_in_health(engine, settings) == (3, ["unknown"])
    result = decide(engine, apply=True, outcome="sent", ids=[1, 2, 3])
    assert (result.decided, result.status) == (3, "sent")
    assert [statuses(engine)[i] for i in (1, 2, 3)] == ["sent"] * 3
    assert action_rows(engine, result.action_id) == {1: "unknown", 2: "unknown", 3: "unknown"}
    assert "decided sent by erin" in decision_of(engine, 1)
    with transaction(engine) as session:
        sent_at = dict(session.execute(select(DeliveryLog.id, DeliveryLog.sent_at)).tuples().all())
    assert sent_at[1] == SEEN and sent_at[3] == OLD, "when first seen unknown, else created"
    assert unknown_in_health(engine, settings) == (0, [])
    with transaction(engine) as session:
        again = redrive(
            session=session,
            request=RedriveRequest(statuses=["unknown"], allow_unknown=True),
            now=NOW,
            actor=ERIN,
            apply=True,
            catalog=CATALOG,
        )
    assert again.redriven == 0, "nothing left in doubt to send twice"


def test_not_sent_fails_the_row_for_the_audits_and_sends_nothing(engine: Engine) -> None:
    in_doubt(engine)
    result = decide(engine, apply=True, outcome="not-sent", channel="email")
    assert (result.decided, result.status, result.outcome) == (1, "failed", "not_sent")
    with transaction(engine) as session:
        row = session.get(DeliveryLog, 3)
        assert row is not None
        assert (row.status, row.error_code, row.next_attempt_at) == ("failed", "NotSent", None)
    with transaction(engine) as session:
        redriven = redrive(
            session=session,
            request=RedriveRequest(error_codes=["notsent"], ids=[3]),
            now=NOW,
            actor=ERIN,
            apply=True,
            catalog=CATALOG,
        )
    assert redriven.redriven == 1 and statuses(engine)[3] == "pending", "a redrive sends it"


def test_ids_that_are_not_unknown_are_refused_by_name_and_nothing_changes(
    engine: Engine,
) -> None:
    in_doubt(engine)
    with pytest.raises(InputError) as refused:
        decide(engine, apply=True, outcome="sent", ids=[1, 4, 5, 99])
    assert "not unknown: 4 (sent), 5 (failed), 99 (no such row)" in str(refused.value)
    assert statuses(engine)[1] == "unknown"


def test_the_same_decision_again_changes_nothing_even_if_the_row_is_unknown_again(
    engine: Engine,
) -> None:
    in_doubt(engine)
    first = decide(engine, apply=True, outcome="sent", ids=[1])
    again = decide(engine, apply=True, outcome="sent", ids=[1])
    assert (again.decision_id, again.decided, again.already_decided) == (first.decision_id, 0, 1)
    set_status(engine, [1], "unknown")  # redriven, and in doubt again
    assert decide(engine, apply=True, outcome="sent", ids=[1]).decided == 0
    assert decide(engine, apply=True, outcome="sent", ids=[1], decision_id="second").decided == 1


def test_a_reason_is_required_and_spaces_are_none() -> None:
    with pytest.raises(ValueError, match="reason"):
        DecideRequest(outcome="sent", reason="   ")
    with pytest.raises(ValueError, match="outcome"):
        DecideRequest(outcome="maybe", reason="x")  # type: ignore[arg-type]


def test_the_command_counts_unless_yes_and_names_its_options(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    in_doubt(engine)
    base = ["decide-unknown", "--as", "sent", "--reason", "in SES events", "--actor", "erin"]
    assert main([*base, "--id", "3", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert (dry["matched"], dry["decided"], dry["applied"]) == (1, 0, False)
    assert main([*base, "--id", "3", "--yes", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["decided"], done["status"], done["actor"]) == (1, "sent", "erin")
    assert statuses(engine)[3] == "sent"
    assert main([*base, "--id", "4"]) == 2
    assert "error: --id: only `unknown` rows can be decided; not unknown: 4 (sent)" in (
        capsys.readouterr().err
    )
    assert main(["decide-unknown", "--as", "gone", "--reason", "x"]) == 2
    assert "--as: Input should be 'sent' or 'not_sent'" in capsys.readouterr().err
    assert main(["actions", "--action", "decide-unknown", "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)["actions"]
    assert [a["applied"] for a in trail] == [True, False]


def test_the_decide_unknown_deployment_decides_as_its_operator(
    flow_env: str, engine: Engine
) -> None:
    from flows.action_params import DecideParams
    from flows.actions import decide_flow

    in_doubt(engine)
    dry = decide_flow(DecideParams(outcome="not_sent", reason="no Send event", ids=[3]))
    assert (dry.matched, dry.decided, statuses(engine)[3]) == (1, 0, "unknown")
    done = decide_flow(
        DecideParams(
            outcome="not_sent", reason="no Send event", ids=[3], apply=True, operator="erin"
        )
    )
    assert (done.decided, statuses(engine)[3]) == (1, "failed")
    assert actions(engine)[-1].actor.startswith("erin via")
    state = decide_flow(params={"outcome": "sent", "ids": [3]}, return_state=True)  # type: ignore[call-overload]
    assert state.is_failed() and "reason" in str(state.message)


def test_an_sms_decided_sent_is_not_made_undelivered_72_hours_on(engine: Engine) -> None:
    """A row decided sent has no provider message id: no SMS receipt can ever match it, and the
    receipts poll's 72 h rule turned it `undelivered` (a failure the operator had ruled out)."""
    in_doubt(engine)
    decide(engine, apply=True, outcome="sent", ids=[1])
    with transaction(engine) as session:
        note_logs_read(session, now=OLD - timedelta(days=1), read_before=False)
        note_logs_read(session, now=NOW + timedelta(days=4), read_before=True)
        expired = expire_silent_sms(session=session, now=NOW + timedelta(days=4))
    assert expired == 2, "the undecided unknown SMS and the sent one with no receipt expire"
    assert [statuses(engine)[i] for i in (1, 2, 4)] == ["sent", "undelivered", "undelivered"]
