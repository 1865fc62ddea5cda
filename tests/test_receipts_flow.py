"""The receipts flow on the shared Prefect harness, and `notifyops receipts` against moto."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import select

from flows.receipts import ReceiptsParams, receipts_flow
from notify.db import DELIVERY_LOGS, make_engine
from notify.receipts.smslogs import sms_log_groups
from notifyops.cli import main
from tests.factories import AS_OF, Rows
from tests.receipt_samples import ses_event
from tests.runtime import reload_runtime

TO = "tech.1@example.com"


@pytest.fixture
def receipts_env(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NOTIFY_RECEIPTS_WAIT_S", "0")
    reload_runtime()
    return aws_env


def _client(service: str, url: str) -> Any:
    return boto3.session.Session().client(service, region_name="us-east-1", endpoint_url=url)


def _sent_and_published(moto_url: str, db_url: str) -> int:
    rows = Rows()
    rid = rows.recipient("tech:1", email=TO)
    row_id = rows.delivery(
        rid, channel="email", created_at=AS_OF, recipient_email=TO, provider_message_id="ses-1"
    )
    rows.insert(make_engine(db_url))
    topic = _client("sns", moto_url).create_topic(Name="notifyops-receipts")["TopicArn"]
    record = ses_event("Delivery", "ses-1", to=TO, delivery_id=row_id)
    _client("sns", moto_url).publish(TopicArn=topic, Message=json.dumps(record))
    return row_id


def _status(db_url: str, row_id: int) -> str:
    with make_engine(db_url).connect() as connection:
        return str(
            connection.scalar(select(DELIVERY_LOGS.c.status).where(DELIVERY_LOGS.c.id == row_id))
        )


def test_setup_then_one_poll_from_the_command_line(
    receipts_env: str, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reload_runtime()
    assert main(["receipts", "setup", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert {item["kind"] for item in items} >= {"ses-configuration-set", "sqs-queue"}
    assert main(["receipts", "setup", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["items"]
    assert {item["action"] for item in again} <= {"found", "skipped"}
    row_id = _sent_and_published(receipts_env, cli_env)
    assert main(["receipts", "--direct", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["applied"] == {"Delivery": 1}
    assert payload["changes"] == [
        {
            "delivery_log_id": row_id,
            "channel": "email",
            "before": "sent",
            "after": "delivered",
            "event": "Delivery",
        }
    ]
    assert _status(cli_env, row_id) == "delivered"


def test_the_text_of_a_poll_says_which_sms_delivery_log_groups_do_not_exist_yet(
    receipts_env: str, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runbook says to read `missing_groups`; only --json had it. The text says it in one
    line with the fix, and says nothing once SNS has written both groups (but for the line, once,
    saying since when the logs are read)."""
    groups = sms_log_groups("us-east-1", "123456789012")
    said = (
        f"SMS delivery logs not written yet ({groups[0]}, {groups[1]}): no SMS sent since "
        "logging began, or logging not set up: set NOTIFY_SMS_DELIVERY_LOG_ROLE_ARN and run "
        "`notifyops receipts setup`"
    )
    reload_runtime()
    assert main(["receipts", "setup"]) == 0
    capsys.readouterr()
    assert main(["receipts", "--direct"]) == 0
    assert said in " ".join(capsys.readouterr().out.split())
    for group in groups:
        _client("logs", receipts_env).create_log_group(logGroupName=group)
    assert main(["receipts", "--direct"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "not written yet" not in text
    # the first poll that reads them says, once, that older SMS have no receipt to wait for
    assert "SMS delivery logs read from " in text
    assert "stays sent (not undelivered after 72 h)" in text
    assert main(["receipts", "--direct"]) == 0
    assert "SMS delivery logs" not in capsys.readouterr().out


def test_resume_email_says_when_nothing_was_paused(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["receipts", "resume-email", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"resumed": False, "was_paused_because": None}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["receipts", "--json", "resume-email"],
            "error: --json before `resume-email` is the poll's option: give it after the "
            "subcommand, `notifyops receipts resume-email --json`",
        ),
        (
            ["receipts", "--direct", "setup"],
            "error: --direct is the poll's option (`notifyops receipts --direct`): `notifyops "
            "receipts setup` runs without Prefect already",
        ),
    ],
)
def test_a_poll_option_before_a_subcommand_is_refused_saying_where_it_goes(
    cli_env: str, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    """`notifyops receipts --json resume-email` printed text: the group's --json is the poll's
    and was dropped. Now a usage error (exit 2) in one line, and the subcommand does not run."""
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert " ".join(captured.err.split()) == said


def test_a_poll_without_setup_says_to_run_setup(
    receipts_env: str, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reload_runtime()
    assert main(["receipts", "--direct"]) == 2
    assert "run `notifyops receipts setup`" in capsys.readouterr().err


def test_a_scheduled_poll_before_setup_ends_not_set_up_in_one_line_without_a_traceback(
    receipts_env: str,
    flow_env: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What `notifyops serve` runs every minute before `receipts setup`: a run whose state says
    what is missing and the command, one warning line in its log, no traceback, no retry; the
    command through the flow says the same line as --direct (exit 2)."""
    reload_runtime()
    missing = (
        "receipts not set up (no SQS queue 'notifyops-receipts'): run `notifyops receipts setup`"
    )
    with caplog.at_level(logging.INFO):
        state = receipts_flow(return_state=True)
    assert state.is_completed() and state.name == "NotSetUp" and state.message == missing
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [missing]
    assert not [r for r in caplog.records if r.exc_info]
    assert main(["receipts"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {missing}"]


def test_a_poll_without_aws_credentials_fails_in_one_line_with_the_fix(
    flow_env: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A machine with no AWS credentials (`notifyops serve` after the demo, whose stand-in lives
    only in its own process): every minute's run failed with NoCredentialsError and its
    traceback, and the command printed `NoCredentialsError: Unable to locate credentials`."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reload_runtime()
    said = "receipts: SQS GetQueueUrl failed (NoCredentialsError: Unable to locate credentials)"
    with caplog.at_level(logging.INFO):
        state = receipts_flow(return_state=True)
    assert state.is_failed() and state.name == "AwsUnavailable"
    assert str(state.message).startswith(said) and "fix: Check the credentials" in state.message
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    for command in (["receipts"], ["receipts", "--direct"]):
        assert main(command) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: {said}; nothing was read; fix: ")


def test_the_receipts_flow_applies_events_and_writes_its_artifact(
    receipts_env: str, flow_env: str
) -> None:
    reload_runtime()
    assert main(["receipts", "setup"]) == 0
    row_id = _sent_and_published(receipts_env, flow_env)
    state = receipts_flow(ReceiptsParams(publish_metrics=True), return_state=True)
    report = state.result()
    assert report.totals.applied["Delivery"] == 1
    assert _status(flow_env, row_id) == "delivered"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == "receipts · 1 Delivery · Completed", "the runs list says what came in"


def test_a_misspelt_receipts_parameter_is_refused_naming_it(
    receipts_env: str, flow_env: str
) -> None:
    """`{"params": {"publish_metric": false}}` (a deployment run's parameters) ran and still
    published the rates: the unknown key was dropped. The run is now refused, naming it, and
    nothing is polled."""
    state = receipts_flow(params={"publish_metric": False}, return_state=True)
    assert state.is_failed()
    assert str(state.message).startswith("Validation of flow parameters failed")
    assert "params.publish_metric: Extra inputs are not permitted" in str(state.message)
