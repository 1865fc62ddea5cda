"""No secret value in any output: secrets are set, commands run (working and failing, with and
without --debug), and stdout, stderr, the log records and Prefect's artifacts are scanned."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from notify.bootstrap import Runtime, using
from notify.masking import mask_url, mask_webhook
from notify.settings import load_settings
from notifyops.cli import main
from tests.conftest import empty_tables, engine_for

SAMPLE = Path(__file__).resolve().parents[1] / "notify" / "samples" / "roster.csv"
DB_PASSWORD = "Db-Pass-7f3a9e"
QUERY_PASSWORD = "Query-Pass-1c2d"
SMTP_PASSWORD = "Smtp-Pass-88e1b0"
WEBHOOK_PATH = "services/T0SECRET1/B0SECRET2/XyZwebhookToken42"
WEBHOOK_URL = f"https://hooks.slack.com/{WEBHOOK_PATH}"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY1"
SECRETS = (DB_PASSWORD, QUERY_PASSWORD, SMTP_PASSWORD, "XyZwebhookToken42", "T0SECRET1", AWS_SECRET)
UNREACHABLE = (
    f"postgresql+psycopg2://app:{DB_PASSWORD}@127.0.0.1:1/notify?password={QUERY_PASSWORD}"
)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} printed in {where}: …{_around(text, secret)}…"


def _around(text: str, secret: str) -> str:
    at = text.find(secret)
    return text[max(0, at - 80) : at + 80]


def _set_secrets(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    for name in list(os.environ):
        if name.startswith("NOTIFY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NOTIFY_DATABASE_URL", database_url)
    monkeypatch.setenv("NOTIFY_SENDER", "memory")
    monkeypatch.setenv("NOTIFY_SMTP_USERNAME", "AKIAEXAMPLESMTPUSER")
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", WEBHOOK_URL)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)


@pytest.fixture
def reachable(postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The test Postgres (trust auth accepts and ignores the password), every secret set."""
    empty_tables(engine_for(postgres_url))
    url = make_url(postgres_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    _set_secrets(monkeypatch, url)
    monkeypatch.chdir(tmp_path)
    with using(Runtime(load_settings())):
        yield url


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    _set_secrets(monkeypatch, UNREACHABLE)
    monkeypatch.chdir(tmp_path)
    with using(Runtime(load_settings())):
        yield UNREACHABLE


WORKING = [
    ["config"],
    ["config", "--json"],
    ["db", "upgrade"],
    ["db", "upgrade", "--json"],
    ["recipients", "import", str(SAMPLE)],
    ["recipients", "list"],
    ["recipients", "list", "--json"],
    ["templates", "list"],
    ["health", "--direct"],
    ["health", "--direct", "--json"],
    ["audit", "failures", "--direct", "--json"],
    ["audit", "sms-cost", "--direct"],
    ["redrive"],
    ["test-email", "admin@example.com"],
    ["recipients", "list", "--limit", "0", "--debug"],
]
FAILING = [
    ["config"],
    ["config", "--json"],
    ["deliver"],
    ["deliver", "--debug"],
    ["recipients", "list"],
    ["audit", "failures", "--direct"],
    ["audit", "failures"],
    ["db", "upgrade"],
    ["db", "upgrade", "--debug"],
    ["send", "-t", "repair_assigned", "--to", "t:1"],
    ["redrive", "--debug"],
]


@pytest.mark.parametrize("args", WORKING, ids=" ".join)
def test_no_secret_in_the_output_of_working_commands(
    args: list[str],
    reachable: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    main(["db", "upgrade"])
    main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err or "--debug" in args
    for where, text in (("stdout", captured.out), ("stderr", captured.err), ("logs", caplog.text)):
        assert_no_secret(text, f"`notifyops {' '.join(args)}` {where}")


@pytest.mark.parametrize("args", FAILING, ids=" ".join)
def test_no_secret_in_errors_against_an_unreachable_database(
    args: list[str],
    unreachable: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    code = main(args)
    captured = capsys.readouterr()
    if args[0] != "config":
        assert code == 2
        assert "cannot open the database postgresql+psycopg2://app:***@127.0.0.1:1" in captured.err
    for where, text in (("stdout", captured.out), ("stderr", captured.err), ("logs", caplog.text)):
        assert_no_secret(text, f"`notifyops {' '.join(args)}` {where}")


@pytest.mark.parametrize("args", [["health", "--direct"], ["health"]], ids=" ".join)
def test_no_secret_in_health_reporting_an_unreachable_database(
    args: list[str],
    prefect_harness: None,
    unreachable: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Health reports the database it cannot open as its P1 finding (exit 1), URL masked."""
    caplog.set_level(logging.DEBUG)
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "cannot open the database postgresql+psycopg2://app:***@127.0.0.1:1" in captured.out
    for where, text in (("stdout", captured.out), ("stderr", captured.err), ("logs", caplog.text)):
        assert_no_secret(text, f"`notifyops {' '.join(args)}` {where}")


def test_config_shows_the_webhook_as_scheme_and_host_only(
    unreachable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["alert_webhook_url"] == "https://hooks.slack.com/***"
    assert shown["smtp_password"] == "********"
    assert shown["database_url"] == "postgresql+psycopg2://app:***@127.0.0.1:1/notify?password=***"


def test_a_failed_flow_logs_no_secret(
    flow_env: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Inside a Prefect run (its task and flow failure logs, with tracebacks) the URL is masked."""
    from flows.deliver import deliver_pending
    from notify.schema import DatabaseNotReady

    _set_secrets(monkeypatch, UNREACHABLE)
    caplog.set_level(logging.DEBUG)
    with using(Runtime(load_settings())), pytest.raises(DatabaseNotReady):
        deliver_pending()
    assert "cannot open the database" in caplog.text, "the failure was logged (and scanned)"
    assert_no_secret(caplog.text, "Prefect's logs of a failed deliver-pending run")


def test_a_flow_run_through_the_cli_prints_and_publishes_no_secret(
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect.client.orchestration import get_client

    _set_secrets(monkeypatch, flow_env)
    caplog.set_level(logging.DEBUG)
    with using(Runtime(load_settings())):
        assert main(["health", "--json"]) in (0, 1)
    captured = capsys.readouterr()
    with get_client(sync_client=True) as client:
        artifacts = json.dumps([a.model_dump(mode="json") for a in client.read_artifacts()])
    for where, text in (
        ("stdout", captured.out),
        ("stderr", captured.err),
        ("logs", caplog.text),
        ("artifacts", artifacts),
    ):
        assert_no_secret(text, f"`notifyops health` {where}")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://user:pa55@db:5432/x", "postgresql://user:***@db:5432/x"),
        ("mysql://root:p@ss@db/x", "mysql://root:***@db/x"),
        (
            "postgresql://u@db/x?sslmode=require&password=pw",
            "postgresql://u@db/x?sslmode=require&password=***",
        ),
        (
            "cannot open postgresql://u@h/x?password=pw: refused",
            "cannot open postgresql://u@h/x?password=***: refused",
        ),
        ("host=db password=pw dbname=x", "host=db password=*** dbname=x"),
        ('{"SecretAccessKey": "abc/def+ghi"}', '{"SecretAccessKey": "***"}'),
        ("aws_secret_access_key=abc/def", "aws_secret_access_key=***"),
        (
            "POST https://hooks.slack.com/services/T/B/x failed",
            "POST https://hooks.slack.com/*** failed",
        ),
        ("sqlite:///notifyops.db", "sqlite:///notifyops.db"),
        ("idempotency_key=abc", "idempotency_key=abc"),
        ("password: hunter2", "password: ***"),
        ('{"password":"pw"}', '{"password":"***"}'),
        ("unknown recipient(s): secret:1, token:7", "unknown recipient(s): secret:1, token:7"),
    ],
)
def test_mask_url_hides_passwords_tokens_and_webhook_paths(text: str, shown: str) -> None:
    assert mask_url(text) == shown


def test_mask_url_hides_known_secret_values_wherever_they_are() -> None:
    assert mask_url(f"signature mismatch for {AWS_SECRET}", secrets=[AWS_SECRET, None]) == (
        "signature mismatch for ***"
    )


def test_mask_webhook_keeps_scheme_and_host() -> None:
    assert mask_webhook(WEBHOOK_URL) == "https://hooks.slack.com/***"
    assert mask_webhook("https://user:pw@chat.example.com:8443/hook/x") == (
        "https://chat.example.com:8443/***"
    )
    assert mask_webhook("not a url") == "***"
    assert mask_webhook(None) is None
