"""The `notifyops` command line: help everywhere, exit codes, one-line errors."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import typer.main

from notifyops.cli import RUNS_A_FLOW, app, main
from notifyops.console import EXIT_OUTPUT_CLOSED
from notifyops.prefect_env import pause_collector, run_flow
from tests.runtime import reload_runtime

SAMPLE = Path(__file__).resolve().parents[1] / "notify" / "samples" / "roster.csv"


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, (*prefix, name))
    return paths


ALL_COMMANDS = _command_paths(typer.main.get_command(app))


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "notifyops")
def test_every_command_has_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage:" in text
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help, f"`notifyops {' '.join(path)}` has no help text"


def test_import_reports_rejected_rows_and_exits_1(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["recipients", "import", str(SAMPLE), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == report["valid"] + report["rejected"]
    assert report["rejected"] >= 1 and report["created"] == report["valid"]
    assert {"line", "column", "value", "reason"} <= set(report["errors"][0])
    assert main(["recipients", "list", "--json", "--limit", "500"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == report["valid"]


def test_a_file_that_is_no_database_is_named_as_the_database_it_cannot_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV given as NOTIFY_DATABASE_URL: `DatabaseError: file is not a database`, naming
    neither the setting nor the file, where every other database mistake names them."""
    roster = tmp_path / "technicians.csv"
    roster.write_text("external_id,name,email,phone\ntech:1,Ana,ana@example.com,\n" * 50)
    monkeypatch.setenv("NOTIFY_DATABASE_URL", f"sqlite:///{roster}")
    reload_runtime()
    for command in (["recipients", "list"], ["db", "upgrade"]):
        assert main(command) == 2
        said = capsys.readouterr().err.strip()
        assert said == f"error: cannot open the database sqlite:///{roster}: file is not a database"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_upgrading_a_database_holding_another_apps_table_says_so_and_makes_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ProgrammingError: relation "recipients" already exists`: the upgrade ran into another
    application's table (PostgreSQL rolled it all back)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(db_url)
    with admin.begin() as connection:
        connection.execute(text("CREATE SCHEMA otherapp"))
        connection.execute(text("CREATE TABLE otherapp.recipients (id int)"))
    try:
        monkeypatch.setenv("NOTIFY_DATABASE_URL", f"{db_url}?options=-csearch_path%3Dotherapp")
        reload_runtime()
        assert main(["db", "upgrade"]) == 2
        said = capsys.readouterr().err.strip()
        assert "already holds a table of another application" in said
        assert 'relation "recipients" already exists' in said and "nothing was created" in said
        with admin.connect() as connection:
            tables = connection.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'otherapp'")
            ).scalar_one()
        assert tables == 1, "the upgrade made nothing beside it"
    finally:
        with admin.begin() as connection:
            connection.execute(text("DROP SCHEMA otherapp CASCADE"))
        admin.dispose()


def test_a_command_names_a_misspelt_setting_on_stderr_and_goes_on(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SEND_CONCURENCY", "3")
    assert main(["config", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["send_concurrency"] == 8, "the default, as before"
    assert captured.err.strip() == (
        "warning: NOTIFY_SEND_CONCURENCY is not a notifyops setting and is ignored "
        "(did you mean NOTIFY_SEND_CONCURRENCY?)"
    )


def test_a_roster_whose_header_is_in_capitals_imports(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spreadsheet's export: `EXTERNAL_ID,NAME,...` was refused (exit 2, missing columns)."""
    main(["db", "upgrade"])
    capsys.readouterr()
    roster = tmp_path / "export.csv"
    roster.write_text("EXTERNAL_ID,Name,EMAIL,Phone\ntech:1,Ana,ana@example.com,\n")
    assert main(["recipients", "import", str(roster), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 1


def test_a_roster_saved_by_a_european_excel_imports(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Semicolons between the values and h:mm quiet hours: the file was refused (exit 2, missing
    every column)."""
    main(["db", "upgrade"])
    capsys.readouterr()
    roster = tmp_path / "export.csv"
    text = (
        "external_id;name;email;phone;quiet_hours_start;quiet_hours_end\r\n"
        "tech:1;Doe, Ana;ana@example.com;;22:00:00;7:00\r\n"
    )
    roster.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert main(["recipients", "import", str(roster), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["created"], report["rejected"]) == (1, 0)


def test_dry_run_writes_nothing(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["db", "upgrade"])
    main(["recipients", "import", str(SAMPLE), "--dry-run"])
    assert "8 valid (would import; 8 new, 0 updated)" in capsys.readouterr().out
    assert main(["recipients", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 0


def test_dry_run_counts_new_and_updated_recipients_as_the_import_would(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["db", "upgrade"])
    main(["recipients", "import", str(SAMPLE)])
    roster = tmp_path / "two.csv"
    roster.write_text(
        "external_id,name,email,phone\n"
        "technician:102,Ben,ben.okafor@example.com,+13125550102\n"
        "technician:200,New,new@example.com,\n"
    )
    capsys.readouterr()

    assert main(["recipients", "import", str(roster), "--dry-run", "--json"]) == 0
    would = json.loads(capsys.readouterr().out)
    assert (would["created"], would["updated"], would["dry_run"]) == (1, 1, True)
    assert main(["recipients", "import", str(roster), "--json"]) == 0
    did = json.loads(capsys.readouterr().out)
    assert (did["created"], did["updated"]) == (1, 1)


def test_import_names_the_recipients_it_leaves_with_no_channel(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A roster of phone numbers alone: `receive_sms` defaults to false, so those recipients
    were imported and then sent nothing, with no word of it."""
    main(["db", "upgrade"])
    roster = tmp_path / "phones.csv"
    roster.write_text(
        "external_id,name,email,phone,receive_email,receive_sms\n"
        "t:1,Ana,,+13125550101,,\n"
        "t:2,Ben,ben@example.com,,false,\n"
        "t:3,Cy,cy@example.com,,,\n"
        "t:4,Di,,+13125550104,,true\n"
    )
    capsys.readouterr()
    assert main(["recipients", "import", str(roster), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unreachable"] == ["t:1", "t:2"]
    assert main(["recipients", "import", str(roster)]) == 0, "a warning, not a rejection"
    assert "2 recipient(s) receive nothing: no email address or email off, and no phone " in (
        " ".join(capsys.readouterr().out.split())
    )
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("external_id,name,email,phone,receive_sms\nt:1,Ana,,+13125550101,true\n")
    assert main(["recipients", "import", str(fixed), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unreachable"] == []


def _listed(capsys: pytest.CaptureFixture[str], external_id: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["recipients", "list", "--json", "--search", external_id]) == 0
    (recipient,) = json.loads(capsys.readouterr().out)["recipients"]
    return dict(recipient)


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        (
            "short.csv",
            "external_id,name,email,phone\ntechnician:102,Ben,ben.okafor@example.com\n",
            "line 2, phone: 3 values for 4 header columns: no value for phone",
        ),
        (
            "short.jsonl",
            '{"external_id": "technician:102", "name": "Ben", "email": "ben.okafor@example.com"}\n',
            "line 1, phone: missing required field(s): phone",
        ),
    ],
)
def test_a_row_without_a_required_value_is_rejected_and_the_stored_recipient_keeps_its_values(
    cli_env: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    error: str,
) -> None:
    main(["db", "upgrade"])
    main(["recipients", "import", str(SAMPLE)])
    before = _listed(capsys, "technician:102")
    short = tmp_path / name
    short.write_text(text)

    assert main(["recipients", "import", str(short)]) == 1

    captured = capsys.readouterr()
    assert error in captured.err
    assert "0 valid" in captured.out and "1 rejected" in captured.out
    assert _listed(capsys, "technician:102") == before
    assert before["phone"] == "+13125550102" and before["name"] == "Ben Okafor"


def test_an_update_keeps_what_the_file_leaves_out_and_resets_what_it_leaves_empty(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["db", "upgrade"])
    main(["recipients", "import", str(SAMPLE)])
    narrow = tmp_path / "phones.csv"
    narrow.write_text(
        "external_id,name,email,phone\ntechnician:102,Ben,ben@example.com,+13125550199\n"
    )
    assert main(["recipients", "import", str(narrow)]) == 0
    ben = _listed(capsys, "technician:102")
    assert (ben["phone"], ben["email"]) == ("+13125550199", "ben@example.com")
    assert (ben["timezone"], ben["receive_sms"]) == ("America/Chicago", True), "not in the header"

    line = {"external_id": "technician:102", "name": "Ben", "email": "", "phone": "+13125550199"}
    emptied = tmp_path / "emptied.jsonl"
    emptied.write_text(json.dumps(line | {"timezone": ""}) + "\n")
    assert main(["recipients", "import", str(emptied)]) == 0
    ben = _listed(capsys, "technician:102")
    assert (ben["timezone"], ben["receive_sms"], ben["email"]) == ("UTC", True, None)


def test_names_values_and_rendered_text_print_as_written_not_as_rich_markup_or_emoji(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["db", "upgrade"])
    roster = tmp_path / "brackets.csv"
    roster.write_text(
        "external_id,name,email,phone\n"
        "crew:x:1,Ana [admin] Ruiz,ana@example.com,\n"
        "crew:2,[/],bo@example.com,\n"
        "crew:3,Cy,cy@example.com,[/]\n"
    )
    capsys.readouterr()

    assert main(["recipients", "import", str(roster)]) == 1  # one rejected row, not a crash
    captured = capsys.readouterr()
    assert "MarkupError" not in captured.err
    assert "'[/]' is not E.164" in captured.out and "2 valid" in captured.out
    assert main(["recipients", "list", "--search", "crew:"]) == 0
    listed = capsys.readouterr().out
    assert "Ana [admin] Ruiz" in listed and "│ [/] " in listed and "crew:x:1" in listed

    context = json.dumps({"repair_id": "[/] [bold]R-1", "unit_number": ":x:"})
    assert main(["templates", "preview", "repair_assigned", "--context", context]) == 0
    shown = capsys.readouterr().out
    assert "Subject: Repair [/] [bold]R-1 assigned" in shown and "unit :x:" in shown


def test_bad_input_is_one_line_and_exit_2(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["recipients", "import", str(empty)]) == 2
    captured = capsys.readouterr()
    assert "empty" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert len(captured.err.strip().splitlines()) == 1


def test_commands_refuse_an_unmigrated_database(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NOTIFY_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    reload_runtime()
    assert main(["recipients", "list"]) == 2
    assert "notifyops db upgrade" in capsys.readouterr().err
    assert not (tmp_path / "fresh.db").exists(), "a command that reads creates no empty database"
    (tmp_path / "fresh.db").touch()  # an existing file without the schema: its revision
    reload_runtime()
    assert main(["recipients", "list"]) == 2
    assert "is at revision none" in capsys.readouterr().err


def test_a_database_a_newer_notifyops_upgraded_is_named_not_upgraded_again(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The code rolled back (or an old worker) over a database a newer version migrated: every
    command said `run notifyops db upgrade`, and that failed with Alembic's `CommandError: Can't
    locate revision identified by '0099'`. Both now name the revision and what to do."""
    import sqlite3

    from notify.migrate import upgrade_database
    from notify.schema import head_revision

    database = tmp_path / "newer.db"
    upgrade_database(f"sqlite:///{database}")
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    monkeypatch.setenv("NOTIFY_DATABASE_URL", f"sqlite:///{database}")
    reload_runtime()
    for command in (["db", "upgrade"], ["recipients", "list"]):
        assert main(command) == 2
        said = capsys.readouterr().err.strip()
        assert len(said.splitlines()) == 1 and "Traceback" not in said
        assert "is at revision 0099, which this notifyops does not know" in said
        assert f"its newest is {head_revision()}" in said and "newer notifyops" in said
        assert "run `notifyops db upgrade`" not in said
    with sqlite3.connect(database) as connection:
        version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == ("0099",), "the upgrade changed nothing"


def test_bad_setting_stops_at_start_naming_the_variable(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SES_RATE", "lots")
    reload_runtime()
    assert main(["config"]) == 2
    assert "NOTIFY_SES_RATE" in capsys.readouterr().err


class _ProxyPage(BaseHTTPRequestHandler):
    """What a proxy or captive portal between us and AWS answers: 200 and a page of its own."""

    page = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        page = type(self).page
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


def test_test_email_says_in_one_line_that_something_else_answered_for_ses(
    cli_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = b"<html>\n<head><title>Log in</title></head>\n<body><hr><center>portal"
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Page", (_ProxyPage,), {"page": page}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("NOTIFY_SENDER", "aws")
        reload_runtime()
        assert main(["test-email", "admin@example.com"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    shown = capsys.readouterr().out
    assert "✗ NoMessageId (transient): the answer held no MessageId: not SES's own" in shown
    assert "fix: Retried automatically" in shown
    assert "<html>" not in shown and "<title>" not in shown
    assert len(shown.splitlines()) == 2, "the error and its fix, one line each"


def test_ses_verify_sender_without_credentials_says_so_in_one_line_with_the_fix(
    cli_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `error: NoCredentialsError: Unable to locate credentials (rerun with --debug for
    details)`, no word of what to do."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    reload_runtime()
    assert main(["ses", "verify-sender"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "error: SES did not verify notifications@example.com in us-east-1: "
        "NoCredentialsError (config): Unable to locate credentials; fix: Check the credentials"
    )
    assert "--debug" not in line


def test_alarms_install_without_a_topic_warns_that_they_page_nobody(
    cli_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The alarms were installed with no actions and the command said only 'created or
    updated': on-call believed CloudWatch would page them."""
    assert main(["alarms", "install", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["sns_topic_arn"] is None
    assert _warning(captured.err, "NOTIFY_ALERT_SNS_TOPIC_ARN is unset: the alarms have no")
    topic = boto3.client("sns").create_topic(Name="pager")["TopicArn"]
    monkeypatch.setenv("NOTIFY_ALERT_SNS_TOPIC_ARN", topic)
    reload_runtime()
    assert main(["alarms", "install", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["sns_topic_arn"] == topic
    assert "NOTIFY_ALERT_SNS_TOPIC_ARN" not in captured.err


def _warning(err: str, start: str) -> str:
    """The one warning line of `err` that starts with `start` (after `warning: `)."""
    [line] = [line for line in err.splitlines() if line.startswith(f"warning: {start}")]
    return line


def _alarm_names() -> list[str]:
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return sorted(alarm["AlarmName"] for alarm in alarms)


WORKER_DOWN = "RS-Notifications-WorkerDown"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the Prefect API, not the database
def test_alarms_install_leaves_worker_down_out_where_prefect_has_no_work_pool(
    flow_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under `notifyops serve` there is no work pool, health publishes no WorkersOnline and
    WorkerDown (missing data breaching) paged for ever. Now install asks Prefect: no pool, no
    WorkerDown (one an earlier install made is removed), and it says how to add it later; with
    the pool it is installed as before."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from tasks.workers import WORK_POOL

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["alarms", "install"]) == 0  # as before: nothing to ask, all six
    unknown = _warning(capsys.readouterr().err, "PREFECT_API_URL is unset: cannot tell whether")
    assert "RS-Notifications-WorkerDown installed" in unknown
    assert WORKER_DOWN in _alarm_names()

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    assert main(["alarms", "install", "--json"]) == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert answer["work_pool"] is False and WORKER_DOWN not in answer["alarms"]
    assert answer["left_out"] == answer["removed"] == [WORKER_DOWN]
    assert len(_alarm_names()) == 5 and WORKER_DOWN not in _alarm_names()
    line = _warning(captured.err, "no `notifyops` work pool at ")
    assert "WorkerDown left out and removed" in line
    assert line.endswith("run `notifyops alarms install` again")

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
    try:
        assert main(["alarms", "install", "--json"]) == 0
        captured = capsys.readouterr()
    finally:
        with get_client(sync_client=True) as client:
            client.delete_work_pool(WORK_POOL)
    answer = json.loads(captured.out)
    assert answer["work_pool"] is True and answer["left_out"] == answer["removed"] == []
    assert WORKER_DOWN in answer["alarms"] and WORKER_DOWN in _alarm_names()
    assert "work pool" not in captured.err


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_alarms_install_warns_when_no_check_publishes_metrics(
    cli_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With NOTIFY_CLOUDWATCH_ENABLED=false nothing is ever published and every alarm that
    counts missing data as breaching pages, yet install said nothing."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # WorkerDown installed: it would page
    monkeypatch.setenv("NOTIFY_CLOUDWATCH_ENABLED", "false")
    reload_runtime()
    assert main(["alarms", "install"]) == 0
    line = _warning(capsys.readouterr().err, "NOTIFY_CLOUDWATCH_ENABLED is false: no check")
    assert "WorkerDown (missing data counts as breaching) pages for ever" in line


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_alarms_install_with_prefect_down_installs_worker_down_and_says_it_could_not_ask(
    cli_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    down = "http://127.0.0.1:9/api"
    monkeypatch.setenv("PREFECT_API_URL", down)
    with temporary_settings({PREFECT_API_URL: down}):
        assert main(["alarms", "install"]) == 0
    line = _warning(capsys.readouterr().err, f"Prefect at {down} did not answer (")
    assert "RS-Notifications-WorkerDown installed" in line and WORKER_DOWN in _alarm_names()


def test_config_masks_secrets(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SMTP_USERNAME", "AKIAEXAMPLESMTPUSER")
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "s3cret-pass")
    reload_runtime()
    assert main(["config", "--json"]) == 0
    shown = capsys.readouterr().out
    assert "s3cret-pass" not in shown
    assert json.loads(shown)["smtp_password"] == "********"


def test_config_shows_the_alert_routing_in_effect_for_every_severity(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`NOTIFY_ALERT_ROUTING=P2=log` showed as `P2=log`, as if P1, P3 and P4 went nowhere; a
    severity it leaves out keeps its default route."""
    monkeypatch.setenv("NOTIFY_ALERT_ROUTING", "P2=log")
    reload_runtime()
    assert main(["config", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["alert_routing"]
    assert shown == "P1=sns,log;P2=log;P3=log;P4=log"


def test_test_email_prints_the_message_id_or_the_classified_error(
    cli_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SENDER", "aws")
    reload_runtime()
    assert main(["test-email", "admin@example.com", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["provider_message_id"]

    monkeypatch.setenv("NOTIFY_EMAIL_FROM", "unverified@example.com")
    reload_runtime()
    assert main(["test-email", "admin@example.com"]) == 1
    shown = capsys.readouterr().out
    assert "MessageRejected" in shown and "fix:" in shown

    assert main(["test-email", "not-an-address"]) == 2
    assert "not-an-address" in capsys.readouterr().err


def test_templates_preview_shows_sms_segments(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["templates", "preview", "repair_assigned", "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["sms_segments"] == 1 and "TEST-001" in preview["subject"]
    assert main(["templates", "preview", "repair_assigned", "--context", '{"repair_id": 1}']) == 2
    assert "unit_number" in capsys.readouterr().err


def test_templates_preview_of_an_sms_longer_than_sns_accepts_says_send_refuses_it(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    context = json.dumps({"repair_id": "R-1", "unit_number": "9" * 1600})
    args = ["templates", "preview", "repair_assigned", "--context", context]
    for as_json in ([], ["--json"]):
        assert main([*args, *as_json]) == 1
        captured = capsys.readouterr()
        assert "R-1" in captured.out, "the preview is still shown"
        (line,) = captured.err.strip().splitlines()
        assert "SNS accepts at most 1,600 bytes" in line
        assert "send refuses a request whose first recipient's SMS comes out like this" in line


def _meta(priority: str = "normal", sample_context: dict[str, Any] | None = None) -> str:
    """A user template's meta.json."""
    sample = {"who": 1} if sample_context is None else sample_context
    return json.dumps(
        {"description": "d", "priority": priority, "category": "c", "sample_context": sample}
    )


def _template(root: Path, name: str, meta: str, sms: str = "Hi {{ who }}") -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for part in ("subject.txt.j2", "body.txt.j2", "body.html.j2"):
        (folder / part).write_text("Hello {{ who }}")
    (folder / "sms.txt.j2").write_text(sms)
    (folder / "meta.json").write_text(meta)


def test_templates_preview_says_when_the_sms_is_empty_and_send_skips_it(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    meta = _meta("urgent")
    _template(tmp_path, "maybe", meta, sms="{% if who == 2 %}Hi {{ who }}{% endif %}")
    monkeypatch.setenv("NOTIFY_TEMPLATES_DIR", str(tmp_path))
    reload_runtime()
    assert main(["templates", "preview", "maybe"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "The SMS text is empty for this context: send skips the SMS" in said
    assert "0 segment(s)" in said, "no part goes: it said 1"
    assert main(["templates", "preview", "maybe", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sms_segments"] == 0
    assert main(["templates", "preview", "maybe", "--context", '{"who": 2}']) == 0
    assert "is empty" not in capsys.readouterr().out
    _template(tmp_path, "hush", meta, sms="Hi")
    for part in ("subject.txt.j2", "body.txt.j2"):
        (tmp_path / "hush" / part).write_text("{% if who == 2 %}Hello{% endif %}")
    reload_runtime()
    assert main(["templates", "preview", "hush"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "The email is empty for this context: send skips it" in said


def test_templates_preview_prints_each_part_on_the_lines_it_has(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A part longer than the console is as wide printed on one line, as it is stored and sent
    (the preview broke it where the width fell, with a trailing space)."""
    _template(tmp_path, "wide", _meta(), sms="Hi {{ who }} " + "word " * 60 + "end")
    monkeypatch.setenv("NOTIFY_TEMPLATES_DIR", str(tmp_path))
    reload_runtime()
    assert main(["templates", "preview", "wide"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Hi 1 " + "word " * 60 + "end" in lines


def test_templates_preview_of_a_sample_context_lacking_a_variable_names_meta_json(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --context the preview renders meta.json's sample_context: one lacking a variable
    said "needs variable 'who' (missing from the context)", though no context was given."""
    meta = _meta(sample_context={})
    _template(tmp_path, "unsampled", meta)
    monkeypatch.setenv("NOTIFY_TEMPLATES_DIR", str(tmp_path))
    reload_runtime()
    assert main(["templates", "preview", "unsampled"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "'unsampled': the sample_context in its meta.json lacks 'who'" in line
    assert main(["templates", "preview", "unsampled", "--context", "{}"]) == 2
    assert "needs variable 'who' (missing from the context)" in capsys.readouterr().err


def test_templates_preview_for_a_recipient_renders_their_name_as_a_send_would(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The stand-in name 'Preview' is GSM-7; 'Zoë' is not: the SMS a send stores for her is
    UCS-2, in more parts, which only a preview for her shows."""
    meta = _meta("urgent")
    _template(tmp_path / "templates", "greeting", meta, sms="Hi {{ recipient.name }}")
    monkeypatch.setenv("NOTIFY_TEMPLATES_DIR", str(tmp_path / "templates"))
    roster = tmp_path / "roster.csv"
    roster.write_text("external_id,name,email,phone\ntech:7,Zoë,zoe@example.com,+13125550107\n")
    reload_runtime()
    assert main(["recipients", "import", str(roster)]) == 0
    capsys.readouterr()
    assert main(["templates", "preview", "greeting", "--json"]) == 0
    stand_in = json.loads(capsys.readouterr().out)
    assert (stand_in["sms"], stand_in["sms_encoding"]) == ("Hi Preview", "GSM-7")
    assert main(["templates", "preview", "greeting", "--recipient", "tech:7", "--json"]) == 0
    zoe = json.loads(capsys.readouterr().out)
    assert (zoe["sms"], zoe["sms_encoding"]) == ("Hi Zoë", "UCS-2")
    assert main(["templates", "preview", "greeting", "--recipient", "tech:8"]) == 2
    assert "--recipient: no recipient 'tech:8'" in capsys.readouterr().err


def test_templates_list_names_the_variables_a_context_must_give(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`recipient` is added for each recipient: listing it among a template's variables told
    the user to put it in --context."""
    meta = _meta()
    _template(tmp_path, "greeting", meta, sms="Hi {{ recipient.name }}, {{ who }}")
    monkeypatch.setenv("NOTIFY_TEMPLATES_DIR", str(tmp_path))
    reload_runtime()
    assert main(["templates", "list", "--json"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert listed["greeting"]["required_variables"] == ["who"]


def test_templates_list_marks_the_deliverers_digest_internal_and_preview_still_shows_it(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`digest` was listed like a template to send; send refuses it now, so the list says so."""
    assert main(["templates", "list", "--json"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert listed["digest"]["internal"] is True and listed["repair_assigned"]["internal"] is False
    assert main(["templates", "list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row for row in rows if "INTERNAL" in row] == [r for r in rows if "│ digest" in r]
    assert main(["templates", "preview", "digest"]) == 0
    assert "3 updates from your quiet hours" in capsys.readouterr().out


def test_a_broken_user_template_is_an_error_row_not_a_broken_list(
    cli_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    meta = _meta()
    root = tmp_path / "templates"
    _template(root, "bad_front_matter", "{not json")
    _template(root, "bad_syntax", meta, sms="{% if %}")
    _template(root, "fine", meta)
    _template(root, "nometa", meta)
    (root / "nometa" / "meta.json").unlink()
    monkeypatch.setenv("NOTIFY_TEMPLATES_DIR", str(root))
    reload_runtime()
    assert main(["templates", "list", "--json"]) == 1
    captured = capsys.readouterr()
    listed = {entry["name"]: entry for entry in json.loads(captured.out)}
    assert {"bad_front_matter", "bad_syntax", "fine", "nometa", "repair_assigned"} <= set(listed)
    assert "meta.json line 1" in listed["bad_front_matter"]["error"]
    assert "sms.txt.j2 line 1" in listed["bad_syntax"]["error"]
    assert "'nometa' has no meta.json" in listed["nometa"]["error"]
    assert listed["fine"]["required_variables"] == ["who"]
    (line,) = captured.err.strip().splitlines()
    assert "3 broken template(s): bad_front_matter, bad_syntax, nometa" in line
    assert main(["templates", "list"]) == 1
    assert "BROKEN: template 'nometa' has no meta.json" in " ".join(capsys.readouterr().out.split())
    assert main(["templates", "preview", "bad_syntax"]) == 2
    assert "sms.txt.j2 line 1" in capsys.readouterr().err


def test_usage_errors_are_one_line_naming_the_option(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recipients", "list", "--limit", "0"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "'--limit'" in line and "notifyops recipients list --help" in line


def test_debug_anywhere_on_the_line_shows_the_traceback(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deliver", "--max-batches", "0", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "--max-batches" in err.strip().splitlines()[-1]


def test_health_on_a_prefect_server_without_the_work_pool(
    flow_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The workers endpoint answers 404 for a missing pool: that is "no pool", not a crash."""
    from prefect.settings import PREFECT_API_URL

    from tasks.workers import work_pool_state

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    assert work_pool_state("no-such-pool") is None
    assert main(["health", "--json"]) in (0, 1)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and json.loads(captured.out)["severity"]


def test_health_pages_when_the_scheduled_runs_wait_with_no_work_pool(
    flow_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped, `notifyops serve` leaves its schedules making runs that nothing starts (Late);
    with no work pool there is no worker heartbeat, so health said P4 while nothing ran. Now
    runs late for over 10 minutes are a P1 finding naming the fix."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Late

    @flow(name="late-check-probe")
    def probe() -> None: ...

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    due = datetime.now(UTC) - timedelta(minutes=25)
    with get_client(sync_client=True) as client:
        created = client.create_flow_run(
            probe, tags=["notifyops", "monitoring"], state=Late(scheduled_time=due)
        )
    try:
        assert main(["health", "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["severity"] == "P1" and report["late_runs"] >= 1
        assert report["late_runs_minutes"] >= 25
        assert any(f["code"] == "runs-late" for f in report["findings"])
    finally:
        with get_client(sync_client=True) as client:
            client.delete_flow_run(created.id)


@pytest.mark.slow
def test_a_flow_that_fails_prints_one_line_and_no_prefect_traceback(
    prefect_harness: None, tmp_path: Path
) -> None:
    """A real `notifyops` process, a real Prefect run (on the session's API: an ephemeral one
    would start twice, ~15 s each on 2 cores) whose task fails: Prefect's own error logs and
    tracebacks stay off the terminal; --debug brings the traceback back."""
    import sqlite3

    from notify.migrate import upgrade_database

    database = tmp_path / "broken.db"
    upgrade_database(f"sqlite:///{database}")
    with sqlite3.connect(database) as connection:  # at head, but a table is gone
        connection.execute("DROP TABLE delivery_logs")
    env = _child_env(f"sqlite:///{database}", tmp_path)
    command = [sys.executable, "-m", "notifyops", "audit", "failures"]
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2
    (line,) = quiet.stderr.strip().splitlines()
    assert "delivery_logs" in line and "Traceback" not in quiet.stdout
    loud = subprocess.run(
        [*command, "--debug"], env=env, capture_output=True, text=True, timeout=300
    )
    assert loud.returncode == 2 and "Traceback" in loud.stderr


def _child_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """A `notifyops` process's environment: this one's, but its own database, the in-memory
    sender, its own Prefect home and the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    return _command_env(database_url, tmp_path) | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}


def _command_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """As _child_env, for a command that needs no Prefect API; no standby takes it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "PREFECT_"))}
    return env | {
        "NOTIFY_DATABASE_URL": database_url,
        "NOTIFY_SENDER": "memory",
        "NOTIFY_STANDBY": "off",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }


def _notifyops(
    args: list[str], env: dict[str, str], *, reader_gone: bool = False
) -> subprocess.CompletedProcess[str]:
    """A `notifyops` process. With reader_gone, its stdout is a pipe whose reader has closed it,
    as `| head -1` has once it read its line (closed before the command starts, so that every
    write the command makes finds it closed, not only those after a full pipe buffer)."""
    command = [sys.executable, "-m", "notifyops", *args]
    if not reader_gone:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            command, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)


@pytest.fixture
def roster_db(tmp_path: Path) -> dict[str, str]:
    """A command environment whose SQLite database holds the sample roster's valid rows."""
    from notify.migrate import upgrade_database

    url = f"sqlite:///{tmp_path / 'roster.db'}"
    upgrade_database(url)
    env = _command_env(url, tmp_path)
    assert _notifyops(["recipients", "import", str(SAMPLE)], env).returncode == 1  # 5 rejected
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["recipients", "list"],
        ["recipients", "list", "--json"],
        ["audit", "failures", "--direct", "--json"],
        ["--help"],  # Typer's own console: it exited 1
        ["send", "--help"],
    ],
    ids=" ".join,
)
def test_output_into_a_pipe_whose_reader_left_exits_141_quietly(
    roster_db: dict[str, str], args: list[str]
) -> None:
    done = _notifyops(args, roster_db, reader_gone=True)
    assert (done.returncode, done.stderr) == (EXIT_OUTPUT_CLOSED, "")
    assert EXIT_OUTPUT_CLOSED == 141


@pytest.mark.parametrize("json_output", [True, False], ids=["json", "table"])
def test_a_long_listing_whose_reader_leaves_part_way_exits_141(
    roster_db: dict[str, str], tmp_path: Path, json_output: bool
) -> None:
    """`recipients list --limit 3000 | head -1`: the reader leaves after the first of many
    kilobytes; the command exited 0, as if it had printed everything (the pipe took a part, and
    the write came back short without an error)."""
    roster = tmp_path / "many.csv"
    rows = [f"tech:{n},Technician {n:04},t{n}@example.com," for n in range(3000)]
    roster.write_text("external_id,name,email,phone\n" + "\n".join(rows) + "\n")
    assert _notifyops(["recipients", "import", str(roster)], roster_db).returncode == 0
    command = [sys.executable, "-m", "notifyops", "recipients", "list", "--limit", "3000"]
    process = subprocess.Popen(
        command + (["--json"] if json_output else []),
        env=roster_db,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(100)  # the first line or so, as `head -1` reads it
    process.stdout.close()
    assert process.wait(timeout=120) == EXIT_OUTPUT_CLOSED
    assert process.stderr.read() == b""


def test_an_import_whose_reader_left_keeps_what_it_imported(
    roster_db: dict[str, str], tmp_path: Path
) -> None:
    roster = tmp_path / "more.csv"
    roster.write_text("external_id,name,email,phone\ntech:new,New,new@example.com,\n")
    done = _notifyops(["recipients", "import", str(roster), "--json"], roster_db, reader_gone=True)
    assert (done.returncode, done.stderr) == (EXIT_OUTPUT_CLOSED, "")
    listed = _notifyops(["recipients", "list", "--json", "--search", "tech:new"], roster_db)
    assert [r["name"] for r in json.loads(listed.stdout)["recipients"]] == ["New"]


def test_a_padded_id_is_imported_stripped_and_reached_by_send(
    flow_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = tmp_path / "padded.csv"
    roster.write_text("external_id,name,email,phone\n  tech:9  ,Padded,p@example.com,\n")
    assert main(["recipients", "import", str(roster)]) == 0
    capsys.readouterr()
    assert main(["recipients", "list", "--json", "--search", "tech:9"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["external_id"] for r in listed["recipients"]] == ["tech:9"]
    context = '{"sent_at": "now"}'
    args = ["send", "-t", "test_message", "--to", " tech:9 ", "--context", context, "--json"]
    assert main([*args, "--no-deliver"]) == 0
    assert len(json.loads(capsys.readouterr().out)["enqueue"]["notification_ids"]) == 1


def test_deliver_says_why_email_waits_and_when_the_rest_is_due(
    flow_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Email paused by the reputation guardrail: the run ends Stopped, and `deliver` says so,
    with the fix, and exits 1 (it said "0 claimed; 1 due now" and exited 0). A row waiting for a
    later time (a retry's backoff, a stopped channel's rows given back) is counted, with when
    the first comes due (it said "0 due now" and nothing of them)."""
    from sqlalchemy import update

    from notify.bootstrap import runtime
    from notify.db import DELIVERY_LOGS, transaction
    from notify.marks import EMAIL_PAUSED, set_mark

    roster = tmp_path / "one.csv"
    roster.write_text("external_id,name,email,phone\ntech:7,Seven,seven@example.com,\n")
    assert main(["recipients", "import", str(roster)]) == 0
    context = '{"sent_at": "now"}'
    args = ["send", "-t", "test_message", "--to", "tech:7", "--context", context, "--no-deliver"]
    assert main(args) == 0
    now = datetime.now(UTC)
    with transaction(runtime().engine()) as session:
        set_mark(session, EMAIL_PAUSED, now, now=now, note="bounce rate 12.00%")
    capsys.readouterr()
    assert main(["deliver"]) == 1
    out = capsys.readouterr().out
    assert "0 claimed" in out and "1 due now" in out
    assert "bounce rate 12.00%" in out and "notifyops receipts resume-email" in out
    later = now + timedelta(minutes=5)
    with transaction(runtime().engine()) as session:
        set_mark(session, EMAIL_PAUSED, None, now=now, note="")
        session.execute(update(DELIVERY_LOGS).values(next_attempt_at=later))
    assert main(["deliver"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f"0 due now, 1 waiting for a later time (the next due at {later:%Y-%m-%d %H:%M:%S}" in out
    )


def test_deliver_says_what_its_rescue_left_unknown_and_what_to_do(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runbook's fix for stuck rows is `notifyops deliver`: its rescue makes rows a dead
    deliverer held in flight `unknown` and the command exits 1, but it printed only "rescued 0
    to pending, 1 to unknown", not why it failed nor what to do about them."""
    from notify.bootstrap import runtime
    from tests.factories import Rows

    now = datetime.now(UTC)
    rows = Rows()
    tech = rows.recipient("tech:5", phone="+15551230005")
    rows.delivery(
        tech, created_at=now - timedelta(hours=1), status="sending", lease_owner="dead-host",
        lease_expires_at=now - timedelta(minutes=10),
    )  # fmt: skip
    rows.insert(runtime().engine())
    assert main(["deliver"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "rescued 0 to pending, 1 to unknown" in out
    assert "1 message(s) a stopped deliverer left in flight are now `unknown`" in out
    assert "then `notifyops decide-unknown --as sent` (or `--as not-sent`) records" in out
    assert "`notifyops redrive --status unknown --allow-unknown` re-sends at once" in out


def test_a_flow_command_resumes_the_collector_its_start_up_paused(flow_env: str) -> None:
    """A command that runs a flow loads Prefect with the cyclic collector paused; its run turns
    it back on, so a long delivery never runs without it."""
    top_level = {path[0] for path in ALL_COMMANDS if path}
    assert top_level >= RUNS_A_FLOW, "every command named in RUNS_A_FLOW exists"
    pause_collector()
    try:
        assert main(["deliver"]) == 0
        assert gc.isenabled(), "the flow run resumed the collector"
    finally:
        gc.enable()


def test_a_command_flow_run_has_no_heartbeat_and_keeps_every_other_setting(
    flow_env: str,
) -> None:
    """A command's run turns Prefect's heartbeat off (its thread would hold the run's end for
    up to a second); every other setting is the process's, and nothing changes after the run."""
    from prefect import flow
    from prefect.settings import get_current_settings

    seen: dict[str, object] = {}

    @flow(name="settings-probe")
    def probe() -> None:
        settings = get_current_settings()
        seen["heartbeat"] = settings.flows.heartbeat_frequency
        seen["api"] = settings.api.url

    before = get_current_settings()
    run_flow(probe)
    assert seen == {"heartbeat": None, "api": before.api.url}
    assert before.api.url, "the run went to the session's Prefect API"
    assert get_current_settings().flows.heartbeat_frequency == before.flows.heartbeat_frequency
    assert before.flows.heartbeat_frequency is not None


def test_a_command_flow_run_shares_one_prefect_client_that_parses_no_ca_bundle(
    flow_env: str,
) -> None:
    """Over an http:// API the run and its tasks share one client, whose TLS context holds no
    CA certificate: Prefect builds every client a context holding the whole CA bundle (35-90 ms
    of CPU each), which plain HTTP never uses. The run still reaches the API, and its client is
    closed after it."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import SyncPrefectClient, get_client

    seen: dict[str, SyncPrefectClient] = {}

    @task(cache_policy=NO_CACHE)
    def client_of_a_task() -> None:
        seen["task"] = get_client(sync_client=True)

    @flow(name="client-probe")
    def probe() -> int:
        seen["flow"] = get_client(sync_client=True)
        client_of_a_task.submit().result()
        return seen["flow"].hello().status_code

    assert get_client(sync_client=True).api_url.scheme == "http"
    assert run_flow(probe) == 200
    assert seen["task"] is seen["flow"]
    assert _ca_certificates(seen["flow"]) == 0
    assert _ca_certificates(get_client(sync_client=True)) > 0, "Prefect's default, outside"
    assert seen["flow"]._closed


_WORKERS_PROBE = """
from notifyops.prefect_env import apply_defaults, pause_collector
apply_defaults()
pause_collector()
from prefect import flow, get_run_logger
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.runtime import flow_run
from notifyops.prefect_env import run_flow
from tests.test_cli import _ca_certificates

@flow(name="workers-probe")
def probe() -> str:
    get_run_logger().warning("the probe ran")
    return flow_run.id

print(run_flow(probe))
workers = EventsWorker._instances.values()  # every service's instance, by key
(events,) = [worker for worker in workers if isinstance(worker, EventsWorker)]
(logs,) = [worker for worker in workers if isinstance(worker, APILogWorker)]
assert events._orchestration_client is logs._client, "one client for both workers"
print(_ca_certificates(logs._client))
"""


def test_a_command_runs_prefect_event_and_log_workers_on_a_client_that_parses_no_ca_bundle(
    prefect_harness: None, tmp_path: Path
) -> None:
    """A fresh process (Prefect starts its event and log workers once per process): over an
    http:// API both workers share one client whose TLS context holds no CA certificate (each
    would parse the whole bundle: 50-65 ms of CPU), and the run's log still reaches the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    env = _child_env(f"sqlite:///{tmp_path / 'probe.db'}", tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _WORKERS_PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run_id, certificates = done.stdout.split()
    assert int(certificates) == 0
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert "the probe ran" in [log.message for log in logs]


def _ca_certificates(client: Any) -> int:
    """The CA certificates loaded in a Prefect client's TLS context (through httpx's transport:
    no public accessor)."""
    context = client._client._transport._pool._ssl_context
    return int(context.cert_store_stats()["x509_ca"])


def test_a_server_refusing_a_large_request_is_told_how_to_accept_it(flow_env: str) -> None:
    """A server keeping Prefect's 512 KiB default refuses a large request's run with HTTP 422: the
    command says which field, the server's words and what to change, as bad input."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    from notify.errors import InputError

    detail = (
        '{"detail": "Flow run parameters must be less than 524,288 bytes when serialized '
        '(got 901,233 bytes)."}'
    )
    request = httpx.Request("POST", "http://prefect.example/api/flow_runs/")
    response = httpx.Response(422, text=detail, request=request)

    def refused() -> None:
        raise PrefectHTTPStatusError.from_httpx_error(
            httpx.HTTPStatusError("422", request=request, response=response)
        )

    with pytest.raises(InputError) as raised:
        run_flow(refused)
    message = str(raised.value)
    assert message.startswith("to: ") and "got 901,233 bytes" in message
    assert "PREFECT_SERVER_API_MAX_PARAMETER_SIZE=0" in message


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the Prefect API, not the database
def test_a_prefect_api_that_does_not_answer_is_one_line_naming_it_and_the_fix(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PREFECT_API_URL set to a server that is down: one line with the URL and the ways on
    (start it, unset the variable, or --direct where the command has it), exit 2 (setup)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    down = "http://127.0.0.1:9/api"
    monkeypatch.setenv("PREFECT_API_URL", down)
    with temporary_settings({PREFECT_API_URL: down}):
        assert main(["deliver"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: the Prefect API at {down}") and "does not answer" in line
        assert "`prefect server start --background --port 9`" in line
        assert "unset PREFECT_API_URL" in line and "--direct" not in line  # deliver has none
        assert main(["audit", "failures", "--window", "1h"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.endswith("or add --direct to run this without Prefect")
    assert main(["audit", "failures", "--window", "1h", "--direct"]) in (0, 1)


@pytest.mark.slow  # the delivery task's retry waits 10 s
@pytest.mark.postgres  # a connection lost mid-run: PostgreSQL's, cut by its administrator
def test_a_send_that_loses_its_database_says_what_is_kept_and_how_to_resume(
    prefect_harness: None,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The database goes away while the send delivers: one line saying stored rows are kept,
    how they go out and the key to resume under (the run's, none given); resumed under it, the
    send stores what is missing and sends nobody twice."""
    import threading
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from notify.bootstrap import Runtime, using
    from notify.migrate import upgrade_database
    from notify.senders import Senders
    from notify.senders.memory import MemorySender
    from notify.settings import load_settings
    from tests.conftest import POSTGRES_ADMIN_URL

    name = f"notifyops_lost_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    lost = threading.Event()

    def lose_the_database(_message: Any) -> None:  # the provider call goes through
        if not lost.is_set():
            lost.set()
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

    try:
        upgrade_database(url)
        for variable in [v for v in os.environ if v.startswith("NOTIFY_")]:
            monkeypatch.delenv(variable)
        monkeypatch.setenv("NOTIFY_DATABASE_URL", url)
        monkeypatch.setenv("NOTIFY_SENDER", "memory")
        monkeypatch.chdir(tmp_path)
        provider = MemorySender(fail=lose_the_database)
        send = ["send", "-t", "test_message", "--context", '{"sent_at": "now"}']
        send += ["--to", "technician:101", "--to", "technician:102"]
        with using(Runtime(load_settings(), senders=Senders(email=provider, sms=provider))):
            assert main(["recipients", "import", str(SAMPLE)]) == 1  # the sample's bad rows
            capsys.readouterr()
            assert main(send) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: the database connection was lost during the send")
        assert "is kept" in line and "`notifyops deliver`" in line and "never sent twice" in line
        key = line.rsplit("--idempotency-key ", 1)[1].split(":", 2)
        assert key[0] == "flow-run" and line.count(key[1]) == 2  # the run, named twice
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        resumed = Senders(email=MemorySender(), sms=MemorySender())
        with using(Runtime(load_settings(), senders=resumed)):
            assert main([*send, "--idempotency-key", ":".join(key[:2]), "--json"]) in (0, 1)
        enqueue = json.loads(capsys.readouterr().out)["enqueue"]
        assert len(enqueue["notification_ids"]) == 2
        first = {m.to for m in provider.emails}
        again = [m.to for m in resumed.email.emails]  # type: ignore[attr-defined]
        assert first and not first & set(again)  # nobody got the email twice
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _commands(command: Any, path: str = "notifyops") -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_every_commands_help_reads_as_prose_not_as_the_source_lines() -> None:
    """Typer keeps a docstring's single line breaks: `send --help` broke 'an unknown recipient
    was skipped' from '(--skip-unknown).' on a line of its own. Every plain paragraph of every
    command's and group's help is one line (the panel wraps it to the terminal); laid-out ones
    (indented, lists) are kept."""
    import typer.main

    from notifyops.cli import app
    from notifyops.help_text import unwrap

    assert (
        unwrap("a\nb\n\n- one\n- two\n\n  code\n  more") == "a b\n\n- one\n- two\n\n  code\n  more"
    )
    broken = {
        path: paragraph
        for path, command in _commands(typer.main.get_command(app))
        for paragraph in (command.help or "").split("\n\n")
        if unwrap(paragraph) != paragraph
    }
    assert broken == {}
