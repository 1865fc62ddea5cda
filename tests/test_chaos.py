"""The chaos suite at CI size (`python -m bench.chaos --trials 10`): 10 SIGKILLs of real deliverer
processes at random steps, one storm per provider fault, a PostgreSQL cluster restarted under
`notifyops deliver`. The fake provider's log (written before it answers) is the ground truth."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bench import chaos
from bench.fake_provider import FAULTS, SMTP_PASSWORD, SMTP_USER, Faults, accepted, running
from notify.db import make_engine
from notify.errors import DeliveryError, ErrorClass
from notify.senders.base import OutgoingEmail, OutgoingSms
from notify.senders.memory import MemorySender
from notify.senders.ses import SesEmailSender
from notify.senders.smtp import SmtpEmailSender
from notify.senders.sns import SnsSmsSender
from notify.settings import Priority, load_settings
from tests.conftest import POSTGRES_ADMIN_URL, empty_tables, engine_for
from tests.test_dispatch import add_recipients, deliverer, send, tech

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CI_TRIALS = 10
CAN_MAKE_CLUSTERS = shutil.which("pg_createcluster") is not None and os.geteuid() == 0


@pytest.fixture(scope="module")
def suite(postgres_url: str) -> Iterator[dict[str, chaos.Row]]:
    rows = chaos.run(
        CI_TRIALS,
        seed=11,
        with_cli=CAN_MAKE_CLUSTERS,
        admin_url=POSTGRES_ADMIN_URL,
        size=chaos.CI,
    )
    print("\n" + chaos.markdown(rows))
    yield {row.fault: row for row in rows}


def client(service: str, url: str) -> Any:
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=0.3
    )
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="chaos",
        aws_secret_access_key="chaos",
        config=config,
    )


EXPECTED = {
    "timeout_before": ("ReadTimeoutError", ErrorClass.maybe_sent, False),
    "timeout_after": ("ReadTimeoutError", ErrorClass.maybe_sent, True),
    "reset_after": ("ConnectionClosedError", ErrorClass.maybe_sent, True),
    "throttle": ("TooManyRequestsException", ErrorClass.transient, False),
    "server_error": ("InternalFailure", ErrorClass.transient, False),
    "forbidden": ("AccessDeniedException", ErrorClass.config, False),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_fake_provider_faults_reach_boto3_as_providers_do(fault: str, tmp_path: Path) -> None:
    """Each injected fault arrives through real botocore as the error class a real provider's
    would; the provider logs a message it accepted even when the client never hears back."""
    code, error_class, logged = EXPECTED[fault]
    email = OutgoingEmail(
        to="tech1@example.com", subject="s", text="t", html=None, sender="ops@example.com"
    )
    with running(tmp_path / "accepted.jsonl", Faults(**{fault: 1.0}, hang_s=0.6)) as fake:
        with pytest.raises(DeliveryError) as caught:
            SesEmailSender(client("sesv2", fake.url)).send_email(email)
        sms = SnsSmsSender(client("sns", fake.url))
        assert not sms.is_opted_out("+12065550001")
        with pytest.raises(DeliveryError) as caught_sms:
            sms.send_sms(OutgoingSms(phone="+12065550001", body="b", transactional=True))
    assert (caught.value.code, caught.value.error_class) == (code, error_class)
    assert caught_sms.value.error_class == error_class
    assert sum(accepted(fake.log_path).values()) == (2 if logged else 0)


def test_a_healthy_fake_provider_accepts_and_logs_each_message_once(tmp_path: Path) -> None:
    with running(tmp_path / "accepted.jsonl") as fake:
        email = OutgoingEmail(
            to="a@example.com", subject="s", text="t", html="<p>t</p>", sender="o@example.com"
        )
        receipt = SesEmailSender(client("sesv2", fake.url)).send_email(email)
        sms = SnsSmsSender(client("sns", fake.url))
        sms_receipt = sms.send_sms(OutgoingSms(phone="+12065550001", body="b", transactional=False))
    assert receipt.provider_message_id.startswith("ses-")
    assert sms_receipt.provider_message_id.startswith("sns-")
    assert accepted(fake.log_path) == {("email", "a@example.com"): 1, ("sms", "+12065550001"): 1}


def test_a_request_cut_off_mid_body_is_never_accepted(tmp_path: Path) -> None:
    """A client killed while sending its request leaves a short body: a provider never accepts
    it (the fake once logged the truncated phone number as a message nobody asked for)."""
    body = b"Action=Publish&Version=2010-03-31&PhoneNumber=%2B12065550001&Message=hello"
    cut = body.index(b"0001")  # the phone number itself is cut short
    with running(tmp_path / "accepted.jsonl") as fake:
        host, port = fake.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            head = (
                f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            )
            conn.sendall(head.encode() + body[:cut])
            conn.shutdown(socket.SHUT_WR)  # the client is gone
            assert conn.recv(1024) == b"", "no answer to a request that never arrived whole"
        sms = SnsSmsSender(client("sns", fake.url))
        sms.send_sms(OutgoingSms(phone="+12065550002", body="b", transactional=False))
    assert accepted(fake.log_path) == {("sms", "+12065550002"): 1}


def test_the_fake_smtp_endpoint_logs_what_it_takes(tmp_path: Path) -> None:
    """The failover's path: the production SMTP sender logs in and sends; the message is in the
    provider's log before the 250, like one the API took."""
    with running(tmp_path / "log.jsonl", smtp=True) as fake:
        smtp = SmtpEmailSender(
            "127.0.0.1", fake.smtp_port, SMTP_USER, SMTP_PASSWORD, starttls=False, timeout=5
        )
        smtp.send_email(
            OutgoingEmail(
                to="tech@example.com", subject="s", text="t", html=None, sender="n@example.com"
            )
        )
        smtp.close()
        assert fake.calls["smtp"] == 1
    assert accepted(fake.log_path) == {("email", "tech@example.com"): 1}


def test_sigkill_at_every_step_loses_nothing_and_sends_nothing_twice(
    suite: dict[str, chaos.Row],
) -> None:
    row = suite["sigkill"]
    assert row.trials == CI_TRIALS
    assert (row.duplicates, row.lost, row.failed, row.left_open) == (0, 0, 0, 0), row
    assert row.unexplained == 0, "unknown only where the provider may have the message"
    assert row.strays == [], "nothing sent or owed that no request asked for"
    assert row.accepted + row.unknown_not_accepted == row.messages, (
        "each message reached the provider exactly once, or is unknown with a cut to explain it"
    )
    steps = {chaos.PHASES[step] for step in chaos.HELD_STEPS}
    assert steps <= set(row.phases), f"the kills missed a step: {dict(row.phases)}"


@pytest.mark.parametrize("fault", list(chaos.STORMS))
def test_a_provider_storm_ends_delivered_or_parked_never_failed(
    suite: dict[str, chaos.Row], fault: str
) -> None:
    row = suite[fault]
    assert row.failed_at_storm_end == 0, "a storm fails no row"
    assert (row.duplicates, row.lost, row.failed, row.left_open) == (0, 0, 0, 0), row
    assert row.unexplained == 0
    assert row.strays == [], "nothing sent or owed that no request asked for"
    if fault in ("throttle", "server_error", "forbidden", "outage", "outage_failover"):
        assert row.unknown == 0 and row.accepted == row.messages, "answered errors are retried"


@pytest.mark.parametrize("scenario", ["outage_failover", "failover_kill"])
def test_the_smtp_failover_carries_email_through_an_outage_and_sends_nothing_twice(
    suite: dict[str, chaos.Row], scenario: str
) -> None:
    """The SES API refuses every call; email goes through SES SMTP (a kill among those sends
    included) and no email reaches the provider on both paths."""
    row = suite[scenario]
    assert row.smtp_accepted > 0, "email went through SMTP"
    assert (row.duplicates, row.lost, row.failed, row.left_open) == (0, 0, 0, 0), row
    assert row.failed_at_storm_end == 0 and row.unexplained == 0 and row.strays == []
    assert row.accepted + row.unknown_not_accepted == row.messages


NEEDS_CLUSTERS = pytest.mark.skipif(not CAN_MAKE_CLUSTERS, reason="needs pg_createcluster, root")


@NEEDS_CLUSTERS
def test_a_postgres_restart_under_notifyops_deliver_loses_and_doubles_nothing(
    suite: dict[str, chaos.Row],
) -> None:
    row = suite["pg-restart"]
    assert (row.duplicates, row.lost, row.failed, row.left_open, row.unexplained) == (
        0,
        0,
        0,
        0,
        0,
    ), row
    assert row.accepted + row.unknown_not_accepted == row.messages


@NEEDS_CLUSTERS
def test_notifyops_deliver_says_what_a_database_restart_left(
    suite: dict[str, chaos.Row],
) -> None:
    row = suite["pg-restart"]
    assert row.dishonest_exits == 0, row.notes


# --- a finding for notify/delivery.py (see the docstring) -----


def test_a_database_failure_mid_batch_leaves_in_doubt_only_what_was_in_flight(
    postgres_url: str,
) -> None:
    """The deliverer's connection is terminated while its senders work. What it knew when the
    database went away (messages accepted, rows it never handed over) must not wait for rescue
    as `unknown`: afterwards no row is `sending`, every accepted message is `sent`."""
    watcher = engine_for(postgres_url)
    empty_tables(watcher)
    add_recipients(watcher, [tech(n, timezone="UTC") for n in range(100)])
    settings = load_settings(
        database_url=postgres_url,
        sender="memory",
        batch_size=200,
        send_window=40,
        send_concurrency=4,
        loop_threshold=1_000_000,
        sms_daily_cap_usd=1_000_000,
    )
    send(watcher, settings, [f"tech:{n}" for n in range(100)], priority=Priority.urgent)
    calls = itertools.count(1)

    def cut_the_database(message: object) -> None:
        if next(calls) == 30:
            with watcher.connect() as connection:
                connection.execute(text(TERMINATE), {"name": DOOMED})
        return None

    sender = MemorySender(latency_s=0.002, fail=cut_the_database)
    doomed = make_engine(postgres_url, connect_args={"application_name": DOOMED})
    with pytest.raises(OperationalError):
        deliverer(doomed, settings, sender).deliver_batch()
    doomed.dispose()
    with watcher.connect() as connection:
        counts: dict[str, int] = dict(
            connection.execute(text("SELECT status, count(*) FROM delivery_logs GROUP BY 1")).all()
        )
    assert counts.get("sending", 0) == 0, counts
    assert counts.get("sent", 0) == len(sender.emails) + len(sender.sms), counts


DOOMED = "chaos-doomed-deliverer"
TERMINATE = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"
