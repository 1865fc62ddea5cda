"""Acknowledging receipts with no row (runbook, Receipts, "Data loss"): once looked into, a
tagged receipt matching no delivery row stops paging health's P1 data-loss; it is kept, and a new
one pages again. Through the library and the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from notify.actions.acknowledge import AcknowledgeRequest, acknowledge_receipts
from notify.actions.audit_trail import Actor
from notify.audits.health import _lost
from notify.db import RECEIPTS, DeliveryLog, Receipt, transaction
from notify.errors import InputError
from notifyops.cli import main
from tests.action_rows import NOW, actions
from tests.factories import Rows

DANA = Actor.from_cli("dana")
WHY = "restored backup of 1 Dec: rows after 09:00 lost"


def receipts(engine: Engine, *tagged: int, untagged: int = 0, hours_ago: int = 2) -> list[int]:
    """Tagged receipts (the delivery ids given, no such rows), plus untagged ones."""
    count = len(list(engine.connect().execute(select(Receipt.id))))
    rows = [{"delivery_id": tag} for tag in tagged] + [{"delivery_id": None}] * untagged
    with engine.begin() as connection:
        connection.execute(
            RECEIPTS.insert(),
            [
                {
                    "dedupe_key": f"r-{count + n}",
                    "source": "ses",
                    "event_type": "Delivery",
                    "state": "unmatched",
                    "received_at": NOW - timedelta(hours=hours_ago),
                    **row,
                }
                for n, row in enumerate(rows)
            ],
        )
        return list(connection.scalars(select(Receipt.id).order_by(Receipt.id)))[-len(rows) :]


def lost(engine: Engine) -> int:
    with transaction(engine) as session:
        return _lost(session, NOW)["unmatched_receipts"]


def ack(engine: Engine, apply: bool = False, **fields: object) -> object:
    request = AcknowledgeRequest(**{"reason": WHY, **fields})  # type: ignore[arg-type]
    with transaction(engine) as session:
        return acknowledge_receipts(
            session=session, request=request, now=NOW, actor=DANA, apply=apply
        )


def test_acknowledged_receipts_stop_paging_are_kept_and_a_new_one_pages_again(
    engine: Engine,
) -> None:
    ids = receipts(engine, 901, 902, untagged=1)
    assert lost(engine) == 2
    dry = ack(engine)
    assert (dry.matched, dry.acknowledged, lost(engine)) == (2, 0, 2)  # type: ignore[attr-defined]
    done = ack(engine, apply=True)
    assert (done.acknowledged, lost(engine)) == (2, 0)  # type: ignore[attr-defined]
    with transaction(engine) as session:
        kept = session.scalars(select(Receipt).order_by(Receipt.id)).all()
        states = [(r.state, r.reason) for r in kept]
    assert [s for s, _ in states] == ["acknowledged", "acknowledged", "unmatched"]
    assert states[0][1].startswith("acknowledged by dana") and WHY in states[0][1]
    trail = actions(engine)[-1]
    assert (trail.action, trail.applied, trail.note) == ("acknowledge-receipts", True, WHY)
    assert trail.counts["receipt_ids"] == ids[:2]
    assert ack(engine, apply=True, ids=ids[:1]).already_acknowledged == 1  # type: ignore[attr-defined]
    receipts(engine, 903)
    assert lost(engine) == 1, "a new receipt with no row pages again"


def test_ids_that_are_no_receipt_without_a_row_are_refused_by_name(engine: Engine) -> None:
    rows = Rows()
    rows.delivery(rows.recipient("technician:1"), created_at=NOW, status="sending")
    rows.insert(engine)
    with transaction(engine) as session:
        row = session.scalar(select(DeliveryLog.id))
    one, two, three = receipts(engine, 901, int(row or 0), untagged=1)
    missing = three + 1000
    with pytest.raises(InputError) as refused:
        ack(engine, apply=True, ids=[one, two, three, missing])
    assert (
        f"not such: {two} (delivery row {row} exists: the receipts poll retries it), "
        f"{three} (no delivery id tag: another sender's), {missing} (no such receipt)"
    ) in str(refused.value)
    assert lost(engine) == 1


def test_the_command_lists_unless_yes_and_needs_a_reason(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    receipts(engine, 901, 902)
    base = ["receipts", "acknowledge", "--reason", WHY, "--actor", "dana"]
    assert main([*base, "--delivery-id", "901", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert (dry["matched"], dry["applied"], dry["sample"][0]["delivery_id"]) == (1, False, 901)
    assert main([*base, "--delivery-id", "901", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["acknowledged"] == 1
    assert main([*base, "--id", "999999999"]) == 2
    assert "error: --id: only receipts with our delivery id tag" in capsys.readouterr().err
    assert main(["receipts", "acknowledge", "--reason", "  ", "--yes"]) == 2
    assert "--reason: String should have at least 1 character" in capsys.readouterr().err
    assert main(["health", "--direct", "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["unmatched_receipts"] == 1


def test_the_acknowledge_receipts_deployment_acknowledges_as_its_operator(
    flow_env: str, engine: Engine
) -> None:
    from flows.action_params import AcknowledgeParams
    from flows.actions import acknowledge_flow

    receipts(engine, 901)
    dry = acknowledge_flow(AcknowledgeParams(reason=WHY))
    assert (dry.matched, dry.acknowledged, lost(engine)) == (1, 0, 1)
    done = acknowledge_flow(AcknowledgeParams(reason=WHY, apply=True, operator="dana"))
    assert (done.acknowledged, lost(engine)) == (1, 0)
    assert actions(engine)[-1].actor.startswith("dana via")
