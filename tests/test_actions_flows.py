"""The runbook actions end to end: each flow on the shared Prefect harness (who ran it is the flow
run), and each command in-process (who ran it is --actor), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.states import State
from sqlalchemy import Engine

from flows.action_params import MuteParams, PurgeParams, RedriveParams, UnmuteParams
from flows.actions import mute_flow, purge_flow, redrive_flow, unmute_flow
from notify.db import utcnow
from notifyops.cli import main
from tests.action_rows import OLD, actions, failures, queue, status_of
from tests.test_dispatch import add_recipients, tech


def stale_hours() -> float:
    """An age that splits the crafted rows as at NOW (they were made for a fixed clock; actions
    run on the real one): cut off 12 hours after OLD (FRESH is 29 hours after OLD)."""
    return round((utcnow() - OLD).total_seconds() / 3600 - 12)


def test_each_action_flow_records_its_flow_run(flow_env: str, engine: Engine) -> None:
    queue(engine)
    dry = purge_flow(PurgeParams(older_than_hours=stale_hours()))
    assert (dry.matched, dry.purged) == (5, 0)
    done = purge_flow(PurgeParams(older_than_hours=stale_hours(), apply=True, operator="dana"))
    assert done.purged == 5 and status_of(engine)[1] == "purged"
    artifact = Artifact.get("purge-deliveries")
    assert artifact is not None and "purged 5 row(s)" in str(artifact.data)
    assert f"recorded as operator action {done.action_id}" in str(artifact.data)
    assert str(artifact.flow_run_id) in str(artifact.data), "the artifact names the run"
    assert purge_flow(PurgeParams(older_than_hours=stale_hours(), apply=True)).purged == 0
    redriven = redrive_flow(RedriveParams(statuses=["failed"], apply=True))
    assert redriven.redriven == 1 and status_of(engine)[8] == "pending"
    assert redrive_flow(RedriveParams(statuses=["failed"], apply=True)).redriven == 0
    mute = MuteParams(recipient="technician:1", channel="sms", hours=2, reason="cost")
    assert mute_flow(mute).created and not mute_flow(mute).applied, "a dry run by default"
    assert mute_flow(mute.model_copy(update={"apply": True})).applied
    lifted = unmute_flow(UnmuteParams(recipient="technician:1", apply=True))
    assert len(lifted.lifted) == 1
    trail = actions(engine)
    assert [a.action for a in trail] == [
        "purge", "purge", "purge", "redrive", "redrive", "mute", "mute", "mute", "unmute"
    ]  # fmt: skip
    assert all(a.flow_run_id for a in trail), "every run is recorded with its flow run id"
    assert trail[1].actor == "dana via flow-run" and trail[1].applied
    assert [a.applied for a in trail[:2]] == [False, True]


def run_name_and_tags(state: State[Any]) -> tuple[str, list[str]]:
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id)  # type: ignore[arg-type]
    return stored.name, list(stored.tags)


def test_an_action_run_is_named_by_what_it_did(flow_env: str, engine: Engine) -> None:
    """An action run from the UI kept Prefect's random name (`golden-crocodile`): in the runs
    list a dry run and a purge for real looked the same. Now the artifact's title names the run
    and a tag says `dry-run` or `applied`."""
    queue(engine)
    dry = purge_flow(PurgeParams(older_than_hours=stale_hours()), return_state=True)
    name, tags = run_name_and_tags(dry)
    assert name.startswith("Purge: would purge (dry run) 5 row(s) created before "), name
    assert "dry-run" in tags and "applied" not in tags
    done = redrive_flow(RedriveParams(statuses=["failed"], apply=True), return_state=True)
    name, tags = run_name_and_tags(done)
    assert re.fullmatch(r"Redrive rd-\w+: redrove 1 row\(s\)", name), name
    assert "applied" in tags


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else {"error": captured.err}


def test_purge_and_redrive_commands_count_unless_yes(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    queue(engine)
    code, dry = run(capsys, "purge", "--older-than", f"{stale_hours()}h", "--channel", "sms")
    assert code == 0 and dry["matched"] == 3 and dry["purged"] == 0
    assert dry["counts"]["template"] == {"daily_schedule": 3}  # type: ignore[index]
    code, done = run(
        capsys, "purge", "--older-than", f"{stale_hours()}h", "--yes", "--actor", "erin"
    )
    assert code == 0 and done["purged"] == 5 and done["actor"] == "erin"
    code, redrive = run(capsys, "redrive", "--status", "failed", "--yes")
    assert code == 0 and redrive["redriven"] == 1
    code, again = run(capsys, "redrive", "--status", "failed", "--yes")
    assert code == 0 and again["redriven"] == 0
    assert [a.actor for a in actions(engine)][1] == "erin"


def test_redrive_takes_a_time_pasted_with_spaces_around_it(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """--as-of took ' 2026-12-01T08:00Z '; --since and --until refused it as neither a time nor a
    duration."""
    queue(engine)
    since = f" {OLD.isoformat()} "
    code, dry = run(capsys, "redrive", "--status", "failed", "--since", since, "--until", " 1h ")
    assert code == 0 and dry["matched"] == 1


def test_redrive_refuses_unknown_and_failed_permanent_unless_told(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    failures(engine)
    code, refused = run(capsys, "redrive", "--status", "unknown")
    assert code == 2 and "--allow-unknown" in str(refused["error"])
    code, refused = run(capsys, "redrive", "--status", "failed_permanent")
    assert code == 2 and "--error-code" in str(refused["error"])
    code = main(["redrive", "--status", "unknown", "--allow-unknown"])
    assert code == 0 and "send a message twice" in capsys.readouterr().err
    code, done = run(
        capsys,
        "redrive",
        "--status",
        "failed_permanent",
        "--error-code",
        "messagerejected",  # stored as MessageRejected: codes match in any case
        "--yes",
    )
    assert code == 0 and done["redriven"] == 2


def test_redrives_refusal_names_the_option_the_user_types(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--status unknown` alone said `unknown needs allow_unknown (--allow-unknown)`: a field
    name nobody types beside the option."""
    code, refused = run(capsys, "redrive", "--status", "unknown")
    assert code == 2
    assert "error: --status: unknown needs --allow-unknown: unknown rows may" in str(
        refused["error"]
    )
    assert "allow_unknown" not in str(refused["error"])
    code, refused = run(capsys, "redrive", "--status", "failed_permanent")
    assert code == 2 and "whose cause was fixed (--error-code)" in str(refused["error"])
    assert "error_codes" not in str(refused["error"])


def test_a_redrive_forms_refusal_names_the_form_field(flow_env: str, engine: Engine) -> None:
    """The form's message named the command line's option (--allow-unknown) too: there is none
    in the form, only the `allow_unknown` field to tick."""
    state: State[Any] = redrive_flow(  # type: ignore[call-overload]
        params={"statuses": ["unknown"]}, return_state=True
    )
    assert state.is_failed()
    assert "statuses: unknown needs `allow_unknown`: unknown rows may" in str(state.message)
    assert "--allow-unknown" not in str(state.message)
    state = redrive_flow(  # type: ignore[call-overload]
        params={"statuses": ["failed_permanent"]}, return_state=True
    )
    assert state.is_failed() and "whose cause was fixed (`error_codes`)" in str(state.message)
    assert "--error-code" not in str(state.message)


def test_a_redrive_form_with_an_id_no_database_holds_names_ids(
    flow_env: str, engine: Engine
) -> None:
    """A 20-digit id pasted in the form failed the run with SQLite's `OverflowError: Python int
    too large to convert to SQLite INTEGER`, naming no field."""
    failures(engine)
    for bad, bound in [(99999999999999999999, "less than or equal to"), (0, "greater than")]:
        state: State[Any] = redrive_flow(  # type: ignore[call-overload]
            params={"ids": [7, bad]}, return_state=True
        )
        assert state.is_failed()
        assert f"params.ids.1: Input should be {bound}" in str(state.message)
        assert "OverflowError" not in str(state.message)
    largest = redrive_flow(RedriveParams(ids=[2**63 - 1]))
    assert largest.matched == 0, "the largest id is looked up, and matches nothing"


def test_mute_unmute_suppressions_and_inbox_commands(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    add_recipients(engine, [tech(1)])
    mute = ["recipients", "mute", "tech:1", "--channel", "sms", "--hours", "24"]
    code, muted = run(capsys, *mute, "--reason", "runaway SMS")
    assert code == 0 and muted["created"] is True
    code, listed = run(capsys, "suppressions", "list")
    assert code == 0 and [s["recipients"] for s in listed["suppressions"]] == [["tech:1"]]  # type: ignore[union-attr,index]
    assert main(["suppressions", "list"]) == 0
    table = capsys.readouterr().out
    until = f"{datetime.fromisoformat(str(listed['suppressions'][0]['until'])):%Y-%m-%d %H:%M} UTC"  # type: ignore[index]
    assert until in table and "+00:00" not in table, "as `mute` says it: to the minute, UTC"
    code, lifted = run(capsys, "recipients", "unmute", "tech:1")
    assert code == 0 and len(lifted["lifted"]) == 1  # type: ignore[arg-type]
    code, listed = run(capsys, "suppressions", "list")
    assert listed["suppressions"] == []
    code, box = run(capsys, "inbox", "tech:1", "--unread")
    assert code == 0 and box == {"recipient": "tech:1", "unread": 0, "notifications": []}
    code, marked = run(capsys, "inbox", "mark-read", "tech:1", "--all")
    assert code == 0 and marked["marked_read"] == 0
    code, trail = run(capsys, "actions")
    assert [a["action"] for a in trail["actions"]] == ["unmute", "mute"]  # type: ignore[union-attr,index]


def test_a_mute_whose_reason_is_only_spaces_is_refused_naming_reason(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--reason "   "` was taken: the mute's reason read `    (muted by ...)`, saying nothing."""
    add_recipients(engine, [tech(1)])
    mute = ["recipients", "mute", "tech:1", "--channel", "sms"]
    code, refused = run(capsys, *mute, "--reason", "   ")
    assert code == 2
    assert "--reason: empty or only spaces: say why the channel is muted" in str(refused["error"])
    code, listed = run(capsys, "suppressions", "list")
    assert listed["suppressions"] == [], "nothing muted"
    code, muted = run(capsys, *mute, "--reason", "  runaway SMS ", "--actor", "erin")
    assert code == 0
    assert muted["suppression"]["reason"] == "runaway SMS (muted by erin for tech:1)"  # type: ignore[index]


def test_a_mute_forms_reason_of_only_spaces_is_refused_naming_reason(
    flow_env: str, engine: Engine
) -> None:
    add_recipients(engine, [tech(1)])
    params = {"recipient": "tech:1", "channel": "sms", "reason": "    "}
    state: State[Any] = mute_flow(params=params, return_state=True)  # type: ignore[call-overload]
    assert state.is_failed()
    assert "params.reason: Value error, empty or only spaces: say why" in str(state.message)


def test_an_unmute_reason_of_only_spaces_is_no_reason(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lifted mute's reason ended `(    )`; a reason left out adds nothing."""
    add_recipients(engine, [tech(1)])
    mute = ["recipients", "mute", "tech:1", "--channel", "sms", "--reason", "runaway SMS"]
    assert run(capsys, *mute, "--actor", "erin")[0] == 0
    code, lifted = run(capsys, "recipients", "unmute", "tech:1", "--reason", "    ")
    assert code == 0
    [reason] = [s["reason"] for s in lifted["lifted"]]  # type: ignore[union-attr,index]
    assert re.fullmatch(
        r"runaway SMS \(muted by erin for tech:1\); unmuted by \S+ at [\d-]+ [\d:]+ UTC", reason
    )


def test_unmute_dry_run_lists_the_mute_and_leaves_it_in_place(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    add_recipients(engine, [tech(1)])
    mute = ["recipients", "mute", "tech:1", "--channel", "sms", "--reason", "runaway SMS"]
    assert run(capsys, *mute)[0] == 0
    code, would = run(capsys, "recipients", "unmute", "tech:1", "--dry-run")
    assert code == 0 and would["applied"] is False
    assert [s["active"] for s in would["lifted"]] == [True]  # type: ignore[union-attr,index]
    assert main(["recipients", "unmute", "tech:1", "--dry-run"]) == 0
    assert "1 mute(s) of tech:1 would be lifted" in capsys.readouterr().out
    code, listed = run(capsys, "suppressions", "list")
    assert [s["recipients"] for s in listed["suppressions"]] == [["tech:1"]]  # type: ignore[union-attr,index]
    code, trail = run(capsys, "actions")
    unmutes = [a for a in trail["actions"] if a["action"] == "unmute"]  # type: ignore[union-attr]
    assert [a["applied"] for a in unmutes] == [False, False]  # type: ignore[index]


def test_actions_refuses_an_action_that_does_not_exist(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo (`--action redrives`) listed no actions, as if nobody had redriven anything."""
    add_recipients(engine, [tech(1)])
    mute = ["recipients", "mute", "tech:1", "--channel", "sms", "--reason", "runaway SMS"]
    assert run(capsys, *mute)[0] == 0
    code, refused = run(capsys, "actions", "--action", "mutes")
    assert code == 2
    assert str(refused["error"]).strip() == (
        "error: --action: 'mutes' is not an operator action (purge, redrive, mute, unmute, "
        "decide-unknown, acknowledge-receipts)"
    )
    code, trail = run(capsys, "actions", "--action", "mute")
    assert code == 0 and [a["action"] for a in trail["actions"]] == ["mute"]  # type: ignore[union-attr,index]


def test_mute_and_unmute_of_a_shared_number_name_everyone_it_affects(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = "+12065550001"
    add_recipients(engine, [tech(1), tech(2, phone=shared)])
    mute = ["recipients", "mute", "tech:1", "--channel", "sms", "--reason", "only A"]
    assert main([*mute, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tech:1 would be muted on sms" in out
    assert "would also mute tech:2 (same phone number" in out
    code, muted = run(capsys, *mute)
    assert muted["also_muted"] == ["tech:2"]
    assert muted["suppression"]["recipients"] == ["tech:1", "tech:2"]  # type: ignore[index]
    code, listed = run(capsys, "suppressions", "list", "--recipient", "tech:2")
    assert [s["recipients"] for s in listed["suppressions"]] == [["tech:1", "tech:2"]]  # type: ignore[union-attr,index]
    assert main(["recipients", "unmute", "tech:2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    said = "1 mute(s) of tech:2 would be lifted: of the phone number tech:2 shares with tech:1"
    assert said in out
    code, lifted = run(capsys, "recipients", "unmute", "tech:2")
    assert code == 0 and lifted["also_unmuted"] == ["tech:1"]
    reasons = [s["reason"] for s in lifted["lifted"]]  # type: ignore[union-attr,index]
    assert "muted by" in reasons[0] and "for tech:1" in reasons[0], "whom it was made for"


def test_mark_read_refuses_an_id_that_is_not_the_recipients_and_needs_id_or_all(
    cli_env: str, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    queue(engine)  # notifications 1-3, 6-8 are technician:1's; 4 and 5 technician:2's
    code, refused = run(capsys, "inbox", "mark-read", "technician:1", "--id", "1", "--id", "4")
    assert code == 2
    assert "id 4: not a notification of 'technician:1'" in str(refused["error"])
    code, refused = run(capsys, "inbox", "mark-read", "technician:1", "--id", "99999")
    assert code == 2 and "id 99999:" in str(refused["error"])
    code, box = run(capsys, "inbox", "technician:1", "--unread")
    assert box["unread"] == 6, "nothing was marked read"
    code, refused = run(capsys, "inbox", "mark-read", "technician:1")
    assert code == 2 and "give --id N (repeatable) or --all" in str(refused["error"])
    assert "not both" not in str(refused["error"])
    code, refused = run(capsys, "inbox", "mark-read", "technician:1", "--id", "1", "--all")
    assert code == 2 and "--id and --all: give one, not both" in str(refused["error"])
    code, marked = run(capsys, "inbox", "mark-read", "technician:1", "--id", "1")
    assert code == 0 and (marked["marked_read"], marked["unread"]) == (1, 5)
