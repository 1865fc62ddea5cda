"""The monitoring checks' switches are decided once: the caller's flag, else the setting."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from notify.alerts import DEFAULT_ROUTES, parse_routing
from notify.checks import should_mute
from notify.db import Suppression, make_engine, transaction
from notify.settings import load_settings
from notifyops.cli import main
from tests.factories import AS_OF
from tests.runtime import reload_runtime
from tests.test_monitoring_flows import crafted


@pytest.mark.parametrize("auto_mute", [True, False])
@pytest.mark.parametrize(("flag", "expected"), [(True, True), (False, False), (None, None)])
def test_the_mute_flag_wins_over_the_setting(
    auto_mute: bool, flag: bool | None, expected: bool | None
) -> None:
    settings = load_settings(loop_auto_mute=auto_mute)
    assert should_mute(settings, flag) is (auto_mute if expected is None else expected)


@pytest.mark.parametrize(("flag", "expected"), [(True, True), (False, False), (None, False)])
def test_a_look_back_mutes_only_when_asked(flag: bool | None, expected: bool) -> None:
    """`audit loops --as-of <last month>` muted today's recipients for 24 hours for loops that
    had ended long ago (NOTIFY_LOOP_AUTO_MUTE on): a look back mutes only with --mute."""
    settings = load_settings(loop_auto_mute=True)
    assert should_mute(settings, flag, as_of=AS_OF) is expected


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("auto_mute", ["true", "false"])
@pytest.mark.parametrize(("flag", "mutes"), [("--mute", True), ("--no-mute", False)])
def test_audit_loops_mutes_exactly_when_asked(
    cli_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    auto_mute: str,
    flag: str,
    mutes: bool,
) -> None:
    monkeypatch.setenv("NOTIFY_LOOP_AUTO_MUTE", auto_mute)
    reload_runtime()
    crafted(cli_env)
    code = main(["audit", "loops", "--as-of", AS_OF.isoformat(), flag, "--direct", "--json"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    with transaction(make_engine(cli_env)) as session:
        stored = session.scalar(select(func.count()).select_from(Suppression))
    assert (len(report["muted"]), stored) == ((1, 1) if mutes else (0, 0))
    assert report["auto_mute"] is mutes, "the report says whether this run muted, not the setting"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_audit_loops_at_now_mutes_by_the_setting(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --as-of the command looks at now, so NOTIFY_LOOP_AUTO_MUTE decides: the command
    had passed its own clock as `as_of`, which reads as a look back (one mutes only when asked)."""
    from datetime import UTC, datetime, timedelta

    from tests.factories import Rows

    monkeypatch.setenv("NOTIFY_LOOP_AUTO_MUTE", "true")
    reload_runtime()
    rows = Rows()
    looping = rows.recipient("technician:7", phone="+15551230007")
    rows.many(8, looping, created_at=datetime.now(UTC) - timedelta(hours=1), title="Unit 9")
    rows.insert(make_engine(cli_env))
    assert main(["audit", "loops", "--direct", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["auto_mute"] is True and len(report["muted"]) == 1


def test_audit_loops_lists_as_muted_only_what_a_mute_holds_now(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the runbook's `recipients unmute`, the next `audit loops` over the same messages
    listed the loop under `muted`, until now + NOTIFY_LOOP_MUTE_HOURS, though nothing muted it
    (the lift holds); and a second run over an active mute gave that mute a new end, later
    than the suppression's own. `muted` is what a mute holds now, with the mute's end."""
    from datetime import UTC, datetime, timedelta

    from tests.factories import Rows

    monkeypatch.setenv("NOTIFY_LOOP_AUTO_MUTE", "true")
    reload_runtime()
    rows = Rows()
    looping = rows.recipient("technician:7", phone="+15551230007")
    rows.many(8, looping, created_at=datetime.now(UTC) - timedelta(hours=1), title="Unit 9")
    rows.insert(make_engine(cli_env))

    def loops() -> list[dict[str, object]]:
        assert main(["audit", "loops", "--direct", "--json"]) == 1
        muted: list[dict[str, object]] = json.loads(capsys.readouterr().out)["muted"]
        return muted

    [first] = loops()
    assert first["created"] is True
    [again] = loops()
    assert (again["created"], again["until"]) == (False, first["until"]), "the mute's own end"
    unmute = ["recipients", "unmute", "technician:7", "--channel", "sms", "--reason", "fixed"]
    assert main(unmute) == 0
    capsys.readouterr()
    assert loops() == [], "lifted: nothing mutes the loop now"
    with transaction(make_engine(cli_env)) as session:
        stored = session.scalars(select(Suppression.until)).all()
    assert len(stored) == 1 and stored[0] is not None and stored[0] <= datetime.now(UTC)


def test_the_default_alert_routing_setting_is_the_documented_default() -> None:
    assert parse_routing(load_settings().alert_routing) == dict(DEFAULT_ROUTES)
    assert parse_routing(load_settings(alert_routing="P1=log").alert_routing)["P1"] == ("log",)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # SES's answer, not the database
def test_health_against_the_aws_stand_in_lists_the_calls_it_lacks_and_exits_0(
    cli_env: str,
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """moto implements neither sesv2.GetAccount nor ses.GetAccountSendingEnabled: health raised
    P3 `ses-errors` for them and exited 1 on every run against the stand-in, however healthy.
    They are calls the endpoint lacks (a bare 404, an HTML 500), listed in `ses.not_offered`;
    an error SES names (AccessDenied) is still P3 (tests/test_audits.py)."""
    monkeypatch.setenv("NOTIFY_SENDER", "aws")
    reload_runtime()
    assert main(["health", "--direct", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ses = report["ses"]
    assert ses["sending_enabled"] is None and ses["max_24h_send"] == 200.0
    assert ses["not_offered"] == ["sesv2.GetAccount", "ses.GetAccountSendingEnabled"]
    assert ses["errors"] == [] and report["findings"] == []
