"""The Prefect flows on a real (temporary) Prefect API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import Artifact as StoredArtifact
from prefect.flow_engine import run_flow
from prefect.states import State
from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.exc import OperationalError, ProgrammingError

from flows.artifacts import delivery_notes, request_markdown
from flows.deliver import deliver_pending
from flows.delivery import batches_to_start
from flows.dispatch import dispatch_notifications
from flows.params import LISTED_MAX, DeliverParams, DispatchParams
from flows.states import result_of
from notify.bootstrap import Runtime, using
from notify.db import DeliveryLog, Notification, Recipient, make_engine, transaction, utcnow
from notify.delivery import BatchReport
from notify.errors import MESSAGE_REJECTED, SENDER_NOT_VERIFIED, DeliveryError, InputError
from notify.outbox import Leftovers, RescueCounts, claim_due, mark_sending
from notify.request_report import RequestReport, request_report
from notify.senders import Senders
from notify.senders.memory import MemorySender
from notify.settings import Priority, load_settings
from notify.summaries import DeliverySummary, DispatchSummary
from notifyops.cli import main
from tasks.dispatch import STEP_ATTEMPTS, retried
from tests.aws_fixtures import moto_sent
from tests.runtime import reload_runtime
from tests.test_dispatch import add_recipients, email_statuses, tech

CONTEXT = {"repair_id": "R-9", "unit_number": "77"}


def dispatch(request: DispatchParams) -> tuple[State[Any], DispatchSummary]:
    """Run the dispatch flow as the CLI does: its final state and its summary."""
    state = dispatch_notifications(return_state=True, **request.flow_parameters())
    summary: DispatchSummary = result_of(state)
    return state, summary


def test_dispatch_flow_stores_delivers_and_summarises(flow_env: str) -> None:
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n) for n in range(1, 6)])
    request = DispatchParams(
        template="repair_assigned", to=[f"tech:{n}" for n in range(1, 6)], context=CONTEXT
    )
    state, summary = dispatch(request)
    assert state.is_completed() and state.message == "repair_assigned: 5 notification(s); 10 sent"
    assert len(summary.enqueue.notification_ids) == 5
    assert summary.enqueue.rows == {"email": {"pending": 5}, "sms": {"pending": 5}}
    assert summary.delivery is not None
    assert summary.delivery.outcomes == {"email": {"sent": 5}, "sms": {"sent": 5}}
    assert summary.delivery.remaining_due == 0
    with transaction(engine) as session:
        flow_runs = set(session.scalars(select(Notification.flow_run_id)))
    assert len(flow_runs) == 1 and None not in flow_runs, "notifications name their flow run"


def test_a_bad_template_fails_the_flow_and_stores_nothing(flow_env: str) -> None:
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1)])
    with pytest.raises(InputError, match="unit_number"):
        dispatch(
            DispatchParams(template="repair_assigned", to=["tech:1"], context={"repair_id": "x"})
        )
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_long_recipient_list_runs_as_one_text_and_reaches_everyone(flow_env: str) -> None:
    """Past LISTED_MAX recipients the run's `to` is one text (Prefect would otherwise walk the
    list item by item); the flow splits it back, in order, and names the run by the count."""
    engine = make_engine(flow_env)
    count = LISTED_MAX + 5
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, count + 1)])
    request = DispatchParams(
        template="repair_assigned", to=[f"tech:{n}" for n in range(1, count + 1)], context=CONTEXT
    )
    parameters = request.flow_parameters()
    assert parameters["to"] == "\n".join(request.to)
    assert DispatchParams(**parameters).recipients() == request.recipients()
    short = DispatchParams(template="repair_assigned", to=["tech:1", "tech:2"], context=CONTEXT)
    assert short.flow_parameters()["to"] == ["tech:1", "tech:2"], "a short list stays a list"
    state, summary = dispatch(request)
    assert state.is_completed()
    assert summary.delivery is not None and summary.delivery.outcomes == {"email": {"sent": count}}
    with transaction(engine) as session:
        report = request_report(session=session, request_id=summary.enqueue.request_id)
    assert report.count("sent") == count
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert f" · {count} to · " in run.name


def test_a_request_past_the_servers_default_parameter_limit_runs(flow_env: str) -> None:
    """Prefect's server refuses run parameters over 512 KiB by default (about 40,000 recipient
    ids); the project's Prefect settings lift that limit, so such a request runs."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1, receive_sms=False), tech(2, receive_sms=False)])
    unknown = [f"technician:unknown-{n:07d}" for n in range(30_000)]
    request = DispatchParams(
        template="repair_assigned",
        to=["tech:1", *unknown, "tech:2"],
        context=CONTEXT,
        skip_unknown=True,
    )
    assert len(json.dumps(request.flow_parameters())) > 512 * 1024
    _, summary = dispatch(request)
    assert len(summary.enqueue.unknown_recipients) == len(unknown)
    assert summary.delivery is not None and summary.delivery.outcomes == {"email": {"sent": 2}}


def test_a_small_send_runs_one_delivery_batch(flow_env: str) -> None:
    """Its rows fit one batch: one deliver-batch task run, not `parallel_batches` of them; the
    rescue and digests before it and the leftovers and the request's own rows after it are steps
    of the run, not task runs of their own (each costs the server CPU to record)."""
    add_recipients(make_engine(flow_env), [tech(1), tech(2)])
    state, summary = dispatch(
        DispatchParams(template="repair_assigned", to=["tech:1", "tech:2"], context=CONTEXT)
    )
    assert summary.delivery is not None and summary.delivery.claimed == 4
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    names = sorted(run.name.rsplit("-", 1)[0] for run in runs)
    assert names == ["deliver-batch", "enqueue-notifications"], names
    assert summary.delivery.remaining_due == 0  # what finishing the run found


@pytest.mark.parametrize(
    ("due_after", "others_running", "expected"),
    [
        (0, False, 0),  # nothing due: the run ends
        (0, True, 0),
        (1, False, 1),  # the last batch running saw rows due: one batch takes them
        (3, True, 0),  # a running batch claims those next: no empty task run after them
        (5, False, 2),  # one batch per window of due rows: a third would claim nothing
        (8, True, 2),  # a batch's worth is waiting beside the running ones
    ],
)
def test_a_batch_that_ends_starts_only_the_batches_the_rows_still_due_need(
    due_after: int, others_running: bool, expected: int
) -> None:
    """With two batches sharing a dispatch's rows, the first to end used to see the second's
    last rows still due and start another, which found nothing: a deliver-batch task run that
    did nothing, in the UI and in the server's work; and a top-up filled every free slot however
    few rows were due. Rows left once the others end still start a batch."""
    report = BatchReport(claimed=8, due_after=due_after)
    started = batches_to_start(report, others_running=others_running, limit=8, window=4)
    assert started == expected


def test_a_deployment_run_records_its_deployment_and_an_ad_hoc_run_none(flow_env: str) -> None:
    """Notifications say which deployment sent them, as a worker runs a deployment's flow run;
    an ad hoc run has none (its run context says so, without asking the API)."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1), tech(2)])
    ad_hoc = DispatchParams(template="repair_assigned", to=["tech:1"], context=CONTEXT)
    state, _ = dispatch(ad_hoc)
    assert state.is_completed()
    deployment_id = dispatch_notifications.to_deployment(name="attribution-check").apply()
    parameters = DispatchParams(
        template="repair_assigned", to=["tech:2"], context=CONTEXT
    ).flow_parameters()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    state = run_flow(
        dispatch_notifications, flow_run=run, parameters=parameters, return_type="state"
    )
    assert isinstance(state, State) and state.is_completed()
    with transaction(engine) as session:
        recorded = dict(
            session.execute(select(Notification.flow_run_id, Notification.deployment_name)).all()
        )
    assert recorded[str(run.id)] == "attribution-check"
    assert [name for run_id, name in recorded.items() if run_id != str(run.id)] == [None]


def test_deliver_flow_delivers_what_send_left(flow_env: str) -> None:
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 8)])
    _, stored = dispatch(
        DispatchParams(
            template="repair_assigned",
            to=[f"tech:{n}" for n in range(1, 8)],
            context=CONTEXT,
            deliver=False,
        )
    )
    assert stored.delivery is None
    summary: DeliverySummary = deliver_pending(DeliverParams(batch_size=3, parallel_batches=2))
    assert summary.claimed == 7 and summary.batches == 3
    assert summary.outcomes == {"email": {"sent": 7}}


def test_a_deliver_run_whose_rescue_made_rows_unknown_ends_red(flow_env: str) -> None:
    """A deliverer died with a message in flight: the run that rescues it sends the rest, but the
    message may have reached the provider, so the run used to end green while `deliver` exited
    1. It now ends Failed (`PartlyFailed`), saying how many are in doubt and what to do."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 5)])
    dispatch(
        DispatchParams(
            template="repair_assigned",
            to=[f"tech:{n}" for n in range(1, 5)],
            context=CONTEXT,
            deliver=False,
        )
    )
    now = datetime.now(UTC)
    with transaction(engine) as session:
        rows = claim_due(session=session, owner="dead", limit=10, now=now, lease=timedelta(0))
        mark_sending(session=session, owner="dead", ids=[rows[0].id], now=now)
        # the dead deliverer's lease ran out an hour ago: the next deliver run rescues its rows
        session.execute(
            update(DeliveryLog)
            .where(DeliveryLog.lease_owner == "dead")
            .values(lease_expires_at=now - timedelta(hours=1))
        )
    state = deliver_pending(DeliverParams(), return_state=True)
    summary: DeliverySummary = result_of(state)
    assert (summary.rescued_unknown, summary.outcomes) == (1, {"email": {"sent": 3}})
    assert state.is_failed() and state.name == "PartlyFailed"
    with get_client(sync_client=True) as client:
        name = client.read_flow_run(state.state_details.flow_run_id).name
    assert name == "deliver-pending · 3 sent, 1 unknown · PartlyFailed"
    assert "1 message(s) a stopped deliverer left in flight are now `unknown`" in str(state.message)
    assert "--status unknown --allow-unknown" in str(state.message)
    table = Artifact.get("deliver-pending")  # the rescued rows were in its description only
    assert table is not None and table.data is not None
    rows = json.loads(str(table.data))
    assert {"channel": "email", "status": "sent", "rows": 3} in rows
    rescued = [row for row in rows if str(row["status"]).startswith("rescued")]
    assert [(row["status"], row["rows"]) for row in rescued] == [
        ("rescued from a stopped deliverer: back to the queue", 3),
        (
            "rescued from a stopped deliverer: in flight, now unknown (the provider may have them)",
            1,
        ),
    ]


def test_an_unverified_email_sender_stops_email_and_the_run_still_sends_every_sms(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With NOTIFY_EMAIL_FROM unverified, `notifyops deliver` stopped every batch at the first
    email and every SMS, urgent ones included, stayed pending run after run. Now the run stops
    email only: the batches it starts after that claim SMS only until none is due (no batch
    for the stopped channel's rows), every SMS is sent, the email rows wait with no attempt
    counted, and the run still ends Stopped saying email stopped and why."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n) for n in range(1, 13)])
    dispatch(
        DispatchParams(
            template="repair_assigned",
            to=[f"tech:{n}" for n in range(1, 13)],
            context=CONTEXT,
            priority=Priority.urgent,
            deliver=False,
        )
    )

    def unverified_sender(message: Any) -> DeliveryError | None:
        if hasattr(message, "to"):
            return DeliveryError(SENDER_NOT_VERIFIED, "Email address is not verified: ops@")
        return None

    # one email waits for a retry an earlier run left (the stop's count missed it: 11 of 12)
    with transaction(engine) as session:
        first_email = session.scalars(
            select(DeliveryLog).where(DeliveryLog.channel == "email").order_by(DeliveryLog.id)
        ).first()
        assert first_email is not None
        first_email.status = "pending_retry"
        first_email.next_attempt_at = utcnow() + timedelta(hours=1)
    sender = MemorySender(fail=unverified_sender)
    settings = load_settings(send_concurrency=2, send_window=4)
    with using(Runtime(settings, senders=Senders(email=sender, sms=sender))):
        state = deliver_pending(DeliverParams(batch_size=4, parallel_batches=2), return_state=True)
        summary: DeliverySummary = result_of(state)
        assert len(sender.sms) == 12 and summary.outcomes["sms"] == {"sent": 12}
        assert len(sender.failures) <= 2 * 2, "only the first two batches tried email"
        assert summary.batches <= 2 + 3, "two batches, then one per 4 SMS left: nothing more"
        assert state.is_failed() and state.name == "Stopped"
        message = str(state.message)
        assert "Delivery stopped after 12 sent: email stopped: MessageRejected (config)" in message
        assert "12 message(s) wait" in message, "the emails: given back, never claimed, later"
        emails = email_statuses(engine)
        assert set(emails) <= {"pending", "pending_retry"} and sum(emails.values()) == 12
        with transaction(engine) as session:
            attempts = set(session.scalars(select(DeliveryLog.attempts)))
        assert attempts == {0, 1}, "SMS sent once each; no email attempt counted"
        capsys.readouterr()
        assert main(["deliver"]) == 1, "the next run stops email again: still failing"
    shown = " ".join(capsys.readouterr().out.split())
    assert "batch stopped: email stopped: MessageRejected (config)" in shown, shown
    assert len(sender.sms) == 12, "nothing sent twice"


def test_send_command_runs_the_flow_and_is_idempotent(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add_recipients(make_engine(flow_env), [tech(1), tech(2)])
    args = [
        "send",
        "--template",
        "repair_assigned",
        "--to",
        "tech:1",
        "--to",
        "tech:2",
        "--context",
        json.dumps(CONTEXT),
        "--idempotency-key",
        "k-1",
        "--json",
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["enqueue"]["duplicate"] is True
    assert again["enqueue"]["notification_ids"] == first["enqueue"]["notification_ids"]
    assert first["delivery"]["outcomes"]["email"]["sent"] == 2
    pasted = [*args[:-2], " k-1\t", "--json"]  # the key copied with the spaces around it
    assert main(pasted) == 0
    padded = json.loads(capsys.readouterr().out)
    assert padded["enqueue"]["duplicate"] is True, "surrounding spaces are not part of a key"
    assert padded["enqueue"]["notification_ids"] == first["enqueue"]["notification_ids"]


def test_a_form_submitted_again_with_its_key_says_it_sent_nothing_twice(flow_env: str) -> None:
    """A run of an idempotency key already used ended `repair_assigned: 1 notification(s); 2
    sent`, named as the first run: a runs list showed the message sent twice. Its state and name
    now say it was the same request again, and that nothing was stored or sent twice."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1)])
    form = {"template": "repair_assigned", "to": "tech:1", "context": CONTEXT}
    first = dispatch_notifications(return_state=True, idempotency_key="k-form", **form)
    assert first.message == "repair_assigned: 1 notification(s); 2 sent"
    again = dispatch_notifications(return_state=True, idempotency_key="k-form", **form)
    assert again.is_completed()
    assert again.message == (
        "repair_assigned: duplicate of request k-form (same key): nothing new stored, nothing "
        "sent twice; its 1 notification(s): 2 sent"
    )
    with get_client(sync_client=True) as client:
        names = [client.read_flow_run(s.state_details.flow_run_id).name for s in (first, again)]
    assert names == [
        "repair_assigned · k-form · 1 to · Completed",
        "repair_assigned · k-form · 1 to · duplicate · Completed",
    ]


def test_an_unknown_recipient_in_the_form_is_refused_naming_the_form_field(
    flow_env: str,
) -> None:
    """A run from the UI form with an unknown recipient failed saying `pass --skip-unknown`, a
    command-line flag the form does not have; the message now names the form's field too."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1)])
    state = dispatch_notifications(
        return_state=True, template="repair_assigned", to="tech:1, tech:404", context=CONTEXT
    )
    assert state.is_failed()
    message = str(state.message)
    assert "unknown recipient(s): tech:404" in message
    assert "skip_unknown (--skip-unknown)" in message, message
    assert email_statuses(engine) == {}, "nothing stored"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert {"template:repair_assigned", "priority:high"} <= set(run.tags), (
        "a failed run is found by its template and priority too"
    )
    assert run.name.startswith("repair_assigned → 2 recipients"), "its start name kept"


def test_a_send_that_skipped_unknown_recipients_says_so_in_one_line_and_exits_1(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --skip-unknown the command exited 1 with no line saying why (and in its table listed
    every unknown id on one line, 30,000 of them for a big list)."""
    add_recipients(make_engine(flow_env), [tech(1)])
    unknown = [f"tech:gone-{n}" for n in range(12)]
    to = [arg for name in ["tech:1", *unknown] for arg in ("--to", name)]
    base = ["send", "-t", "repair_assigned", *to, "--context", json.dumps(CONTEXT)]
    for args in ([*base, "--skip-unknown"], [*base, "--skip-unknown", "--json"]):
        assert main(args) == 1
        captured = capsys.readouterr()
        (line,) = captured.err.strip().splitlines()
        assert line.startswith("error: 12 unknown recipient(s) skipped: tech:gone-0, "), line
        assert "tech:gone-9 …" in line and "tech:gone-11" not in line
        assert "tech:gone-11" not in captured.out or args[-1] == "--json"


EMPTY_DIGEST = {"items": [], "more": 0, "sms_items": [], "total": 0}
INTERNAL_REFUSAL = "template 'digest' is internal: the deliverer makes it, it is not sent by hand"


def test_send_refuses_the_deliverers_digest_in_one_line_and_stores_nothing(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send --template digest` sent a real technician "0 updates from your quiet hours"."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1)])
    args = ["send", "--template", "digest", "--to", "tech:1", "--context", json.dumps(EMPTY_DIGEST)]
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert INTERNAL_REFUSAL in line, line
    assert stored_notifications(engine) == 0


def test_a_dispatch_run_naming_the_digest_fails_saying_why_and_stores_nothing(
    flow_env: str,
) -> None:
    """A run of the deployment given `template: digest` (the API, `--param`) sent it too; it now
    fails saying the deliverer makes it, not only that the value is not among the choices."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1)])
    state = dispatch_notifications(
        return_state=True, template="digest", to="tech:1", context=EMPTY_DIGEST
    )
    assert state.is_failed()
    assert INTERNAL_REFUSAL in str(state.message), state.message
    assert stored_notifications(engine) == 0


def stored_notifications(engine: Engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(Notification)) or 0


def test_send_with_a_key_already_used_for_other_recipients_is_refused(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same key with a changed list used to send tech:1 a second copy and tech:2 nothing;
    now the command says the key names another request, exits 2 and stores nothing."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1), tech(2)])
    base = ["send", "--template", "repair_assigned", "--context", json.dumps(CONTEXT)]
    key = ["--idempotency-key", "k-changed", "--no-deliver"]
    assert main([*base, "--to", "tech:1", *key]) == 0
    capsys.readouterr()
    assert main([*base, "--to", "tech:2,tech:1", *key]) == 2
    error = capsys.readouterr().err
    assert "idempotency_key: 'k-changed' was already used for a different request" in error
    with transaction(engine) as session:
        stored = session.scalars(
            select(Recipient.external_id).join(
                Notification, Notification.recipient_id == Recipient.id
            )
        ).all()
    assert stored == ["tech:1"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_during_a_send_stops_sending_and_keeps_what_was_sent(
    flow_env: str, capsys: pytest.CaptureFixture[str], signum: signal.Signals
) -> None:
    """Ctrl-C mid-delivery used to go on sending for ~20 s, end the run Crashed with no summary,
    and a second Ctrl-C left rows `sending` that became `unknown`; SIGTERM (Prefect's own
    handler raising in the flow) sent everything for ~35 s, then a traceback. Now the sends in
    flight finish, the rest go back to the queue, the run ends Interrupted (Cancelled, grey) and
    the command prints what was sent and exits 128 + the signal (130, 143)."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(1, 41)])

    def ctrl_c_at_the_fifth(message: Any) -> None:
        if len(sender.emails) == 4:
            os.kill(os.getpid(), signum)
            time.sleep(0.2)  # the signal reaches the command's thread while this call is out

    sender = MemorySender(fail=ctrl_c_at_the_fifth)
    settings = load_settings(send_concurrency=2)
    with using(Runtime(settings, senders=Senders(email=sender, sms=sender))):
        code = main(
            [
                "send",
                "--template",
                "repair_assigned",
                "--context",
                json.dumps(CONTEXT),
                "--idempotency-key",
                f"interrupted-{signum}",
                *(f"--to=tech:{n}" for n in range(1, 41)),
            ]
        )
    shown = capsys.readouterr()
    assert code == 128 + signum, shown
    if signum == signal.SIGINT:  # a SIGTERM during a flow run reaches Prefect's handler
        assert "stopping: storing no further part of the request, finishing the sends in" in (
            " ".join(shown.err.split())
        )
    reached = len(sender.emails)
    assert 5 <= reached <= 7, reached
    assert re.search(rf"email\s*│\s*sent\s*│\s*{reached}\s", shown.out), shown.out
    assert f"{40 - reached} returned to the queue" in shown.out
    assert "batch stopped: interrupted" in shown.out
    assert email_statuses(engine) == {"sent": reached, "pending": 40 - reached}
    with transaction(engine) as session:
        run_id = session.scalar(select(Notification.flow_run_id).limit(1))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.state is not None and run.state.is_cancelled() and run.state.name == "Interrupted"
    assert f"Interrupted after {reached} sent" in str(run.state.message)
    # the rows given back are due now, so the due count has them: they were counted twice
    assert f"; {40 - reached} message(s) wait in the queue" in str(run.state.message)
    with using(Runtime(settings, senders=Senders(email=sender, sms=sender))):
        assert main(["deliver"]) == 0
    assert email_statuses(engine) == {"sent": 40}, "`notifyops deliver` sent the rest at once"
    assert len(sender.emails) == 40, "none twice"


def test_dispatch_through_ses_and_sns_on_moto(
    flow_env: str, aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SENDER", "aws")
    reload_runtime()
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1), tech(2), tech(3, phone="+12065550199")])
    state, summary = dispatch(
        DispatchParams(template="repair_assigned", to="tech:1, tech:2\ntech:3", context=CONTEXT)
    )
    assert state.is_failed() and state.name == "PartlyFailed"
    assert "1 of this request's messages failed" in str(state.message)
    assert summary.delivery is not None
    assert summary.delivery.outcomes["email"] == {"sent": 3}
    assert summary.delivery.outcomes["sms"] == {"failed_permanent": 1, "sent": 2}
    sent = moto_sent(aws_env)
    assert sorted(m["destinations"]["ToAddresses"][0] for m in sent["email"]) == [
        "tech1@example.com",
        "tech2@example.com",
        "tech3@example.com",
    ]
    assert sorted(m["phone_number"] for m in sent["sms"]) == ["+12065550001", "+12065550002"]
    with transaction(engine) as session:
        ids = set(
            session.scalars(
                select(DeliveryLog.provider_message_id).where(DeliveryLog.channel == "email")
            )
        )
    assert ids == {m["id"] for m in sent["email"]}


def test_send_prints_the_failed_sends_with_their_fix(
    flow_env: str,
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A send to an opted-out number printed only `sms failed_permanent 1` (the run's state
    said "see the failures table", which only --json had): now the table says which address
    (masked), the error code and the runbook's fix."""
    monkeypatch.setenv("NOTIFY_SENDER", "aws")
    reload_runtime()
    add_recipients(make_engine(flow_env), [tech(3, phone="+12065550199")])
    args = ["send", "-t", "repair_assigned", "--to", "tech:3", "--context", json.dumps(CONTEXT)]
    assert main(args) == 1
    printed = " ".join(capsys.readouterr().out.split())
    assert "Sends that failed" in printed and "OptedOut" in printed
    assert "opt-in-phone-number" in printed, "the fix"
    assert "+12065550199" not in printed, "masked"


def quiet_now(n: int) -> Any:
    """A recipient in quiet hours right now (UTC): their SMS is deferred to the window's end."""
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=2))
    return tech(n, timezone="UTC", quiet_hours_start=start, quiet_hours_end=end.strftime("%H:%M"))


def test_send_prints_its_own_rows_and_when_the_deferred_ones_go(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send` printed only the run's delivery counts: an SMS deferred by quiet hours did not
    appear, and rows of an earlier request delivered by the same run were counted as this one's.
    Now it lists its own rows by status and decision, the deferred ones first with when they go;
    the run's delivery table says it covers any request's due rows."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1), quiet_now(2), tech(3, receive_sms=False)])
    base = ["send", "--template", "repair_assigned", "--context", json.dumps(CONTEXT)]
    assert main([*base, "--to", "tech:3", "--idempotency-key", "earlier", "--no-deliver"]) == 0
    capsys.readouterr()
    assert main([*base, "--to", "tech:1,tech:2", "--idempotency-key", "own"]) == 0
    shown = capsys.readouterr().out
    waiting = re.search(r"1 sms waiting until (\S+ \S+) UTC: sms: deferred to", shown)
    assert waiting is not None, shown
    own = shown[shown.index("This request's messages") : shown.index("Delivered by this run")]
    assert re.search(r"email\s*│\s*sent\s*│[^│]*│\s*2\s", own), own
    assert re.search(r"sms\s*│\s*sent\s*│[^│]*│\s*1\s", own), own
    assert re.search(r"sms\s*│\s*pending\s*│\s*sms: deferred to[^│]*│\s*1\s", own), own
    assert "This run's delivery: every due row it claimed, this request's and others'." in shown
    delivered = shown[shown.index("Delivered by this run") :]
    assert re.search(r"email\s*│\s*sent\s*│\s*3\s", delivered), "tech:3's earlier row too"
    assert main([*base, "--to", "tech:1,tech:2", "--idempotency-key", "own", "--json"]) == 0
    request = json.loads(capsys.readouterr().out)["request"]
    assert request["request_id"] == "own"
    assert sum(g["rows"] for g in request["groups"]) == 4
    assert main([*base, "--to", "tech:3", "--idempotency-key", "stored-only", "--no-deliver"]) == 0
    assert "1 email due now: email: send" in capsys.readouterr().out, "due, not deferred"


def test_a_send_is_judged_on_its_own_messages_not_on_others_the_run_delivered(
    flow_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dispatch delivers every due row, other requests' too. One of those failing used to end
    a send whose own email went out PartlyFailed ("1 of 2 message(s) failed") with exit 1; now
    the send exits 0 and its run is green, its message naming the other request's failure; a
    failure of its own still fails it."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n, receive_sms=False) for n in (1, 2, 3)])

    def reject_tech3(message: Any) -> DeliveryError | None:
        if getattr(message, "to", "") == "tech3@example.com":
            return DeliveryError(MESSAGE_REJECTED, "Message rejected: invalid header")
        return None

    sender = MemorySender(fail=reject_tech3)
    base = ["send", "--template", "repair_assigned", "--context", json.dumps(CONTEXT)]
    with using(Runtime(load_settings(), senders=Senders(email=sender, sms=sender))):
        assert main([*base, "--to", "tech:3", "--idempotency-key", "other", "--no-deliver"]) == 0
        assert main([*base, "--to", "tech:1", "--idempotency-key", "mine"]) == 0
        capsys.readouterr()
        with get_client(sync_client=True) as client:
            mine = client.read_flow_run(run_of(engine, "mine"))
        assert mine.state is not None and mine.state.is_completed(), mine.state
        assert "other requests' due rows: 1 of them failed" in str(mine.state.message)
        assert main([*base, "--to", "tech:3", "--idempotency-key", "own-failure"]) == 1
        with get_client(sync_client=True) as client:
            failed = client.read_flow_run(run_of(engine, "own-failure"))
    assert failed.state is not None and failed.state.name == "PartlyFailed"
    assert "1 of this request's messages failed (MessageRejected)" in str(failed.state.message)


def run_of(engine: Any, request_id: str) -> Any:
    with transaction(engine) as session:
        query = select(Notification.flow_run_id).where(Notification.request_id == request_id)
        return session.scalars(query).first()


def test_an_unverified_sender_stops_the_dispatch_red_with_the_fix_and_its_own_rows(
    flow_env: str,
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NOTIFY_SENDER", "aws")
    monkeypatch.setenv("NOTIFY_EMAIL_FROM", "not-verified@example.com")
    reload_runtime()
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(1), quiet_now(2)])
    request = DispatchParams(template="repair_assigned", to=["tech:1", "tech:2"], context=CONTEXT)
    state, summary = dispatch(request)
    assert state.is_failed() and state.name == "Stopped"
    assert "Verify the sender address" in str(state.message), "the fix is in the state message"
    assert summary.delivery is not None and summary.delivery.stopped
    own = request_markdown(request_report_of(engine, summary.enqueue.request_id), this_run=None)
    assert "sms | pending | sms: deferred to" in own
    assert "waiting until" in own and "pending_retry" in own
    (artifact,) = run_artifacts(state)  # one artifact per dispatch run, written at its end
    assert artifact.key == "dispatch-request" and "delivery STOPPED" in str(artifact.description)
    shown = str(artifact.data)
    assert "sms | pending | sms: deferred to" in shown, "the request's own rows"
    assert "## Stored" in shown and "| email | pending | 2 |" in shown, "what the run stored"
    assert "STOPPED: " in shown and "Verify the sender address" in shown, "why delivery stopped"
    assert "### Sends that failed or wait for a retry" in shown
    assert "| email | t***@example.com | pending_retry |" in shown
    assert "tech1@example.com" not in shown, "addresses masked"
    assert (
        main(
            [
                "send",
                "--template",
                "repair_assigned",
                "--to",
                "tech:1",
                "--context",
                json.dumps(CONTEXT),
                "--json",
            ]
        )
        == 1
    ), "the CLI still prints and exits 1"


def run_artifacts(state: State[Any]) -> list[StoredArtifact]:
    """The artifacts a flow run wrote, oldest first."""
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=run_filter)
    return sorted(found, key=lambda artifact: artifact.created or 0)


def request_report_of(engine: Any, request_id: str) -> RequestReport:
    with transaction(engine) as session:
        return request_report(session=session, request_id=request_id)


def task_run_names(state: State[Any]) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    return sorted(run.name.rsplit("-", 1)[0] for run in runs)


def sent_per_recipient(engine: Any) -> dict[tuple[str, str], int]:
    with transaction(engine) as session:
        rows = session.execute(
            select(Recipient.external_id, DeliveryLog.channel, func.count())
            .join(Notification, Notification.id == DeliveryLog.notification_id)
            .join(Recipient, Recipient.id == Notification.recipient_id)
            .where(DeliveryLog.status == "sent")
            .group_by(Recipient.external_id, DeliveryLog.channel)
        ).all()
    return {(name, channel): count for name, channel, count in rows}


def test_a_large_request_is_stored_in_parts_while_the_first_ones_are_delivered(
    flow_env: str,
) -> None:
    """10 recipients in parts of 3: four enqueue task runs (the first inline, the others beside
    the delivery batches), every message sent once, one summary for the whole request; the same
    key again stores and sends nothing."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n) for n in range(1, 11)])
    request = DispatchParams(
        template="repair_assigned",
        to=[f"tech:{n}" for n in range(1, 11)],
        context=CONTEXT,
        idempotency_key="parts-1",
    )
    with using(Runtime(load_settings(enqueue_part=3))):
        state, summary = dispatch(request)
        assert state.is_completed(), state.message
        assert task_run_names(state).count("enqueue-notifications") == 4
        assert len(summary.enqueue.notification_ids) == 10 and not summary.enqueue.duplicate
        assert summary.enqueue.rows == {"email": {"pending": 10}, "sms": {"pending": 10}}
        assert summary.delivery is not None
        assert summary.delivery.outcomes == {"email": {"sent": 10}, "sms": {"sent": 10}}
        assert sent_per_recipient(engine) == {
            (f"tech:{n}", channel): 1 for n in range(1, 11) for channel in ("email", "sms")
        }
        stored = Artifact.get("dispatch-enqueue")  # written once the last part was stored
        assert stored is not None and stored.flow_run_id == state.state_details.flow_run_id
        assert stored.description == "Request parts-1: 10 notifications"
        again, repeated = dispatch(request)
    assert again.is_completed() and repeated.enqueue.duplicate
    assert sorted(repeated.enqueue.notification_ids) == sorted(summary.enqueue.notification_ids)
    assert sum(sent_per_recipient(engine).values()) == 20, "nothing sent twice"


def test_a_part_that_fails_fails_the_run_after_the_stored_parts_are_sent(flow_env: str) -> None:
    """The third part cannot be decided (a recipient row holds a malformed phone number, which a
    per-country price must parse): the run fails with that error once the six recipients stored
    before it are sent; after the fix, the same key stores and sends only the other four."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n) for n in range(1, 11)])
    broken = "UPDATE recipients SET phone = :phone WHERE external_id = 'tech:8'"
    with transaction(engine) as session:
        session.execute(text(broken), {"phone": "not-a-phone"})
    request = DispatchParams(
        template="repair_assigned",
        to=[f"tech:{n}" for n in range(1, 11)],
        context=CONTEXT,
        idempotency_key="parts-2",
    )
    priced = load_settings(enqueue_part=3, sms_prices={"US": "0.00645"})  # parses each number
    with using(Runtime(priced)):
        with pytest.raises(InputError, match=r"not E\.164"):
            dispatch(request)
        assert sorted({name for name, _ in sent_per_recipient(engine)}) == sorted(
            f"tech:{n}" for n in range(1, 7)
        )
        stored = Artifact.get("dispatch-enqueue")  # what the failed run did store
        assert stored is not None and stored.description == "Request parts-2: 6 notifications"
        with transaction(engine) as session:
            session.execute(text(broken), {"phone": tech(8).phone})
        state, summary = dispatch(request)
    assert state.is_completed(), state.message
    assert len(summary.enqueue.notification_ids) == 10
    assert summary.enqueue.rows == {"email": {"pending": 4}, "sms": {"pending": 4}}
    assert sent_per_recipient(engine) == {
        (f"tech:{n}", channel): 1 for n in range(1, 11) for channel in ("email", "sms")
    }


@pytest.mark.parametrize("deliver", [False, True], ids=["no-deliver", "deliver"])
def test_an_interruption_stores_no_further_part_and_says_how_to_store_the_rest(
    flow_env: str, deliver: bool
) -> None:
    """A Ctrl-C or SIGTERM (the runtime's `interrupted`, set here before the run) while a request
    is stored in parts: the part being stored is committed, no further one is stored, and the run
    ends Interrupted saying how many recipients were not stored and the key that stores them.
    Run again with the key, it stores (and sends) only those."""
    engine = make_engine(flow_env)
    add_recipients(engine, [tech(n) for n in range(1, 11)])
    key = f"parts-interrupted-{deliver}"
    request = DispatchParams(
        template="repair_assigned",
        to=[f"tech:{n}" for n in range(1, 11)],
        context=CONTEXT,
        idempotency_key=key,
        deliver=deliver,
    )
    with using(Runtime(load_settings(enqueue_part=3))) as here:
        here.interrupted.set()
        state, summary = dispatch(request)
        assert state.is_cancelled() and state.name == "Interrupted", state
        assert summary.not_stored == 7 and len(summary.enqueue.notification_ids) == 3
        assert state.message is not None
        assert "interrupted after storing 3 of 10 notification(s)" in state.message
        assert f"idempotency_key={key}" in state.message
        assert task_run_names(state).count("enqueue-notifications") == 1
        artifact = Artifact.get("dispatch-request")
        assert artifact is not None and artifact.description is not None
        assert "INTERRUPTED: 7 recipient(s) not stored" in artifact.description
        # an interrupted delivery said "delivery STOPPED" (and its due rows "waiting for a later
        # attempt") while the run ended Interrupted
        assert ("delivery INTERRUPTED" in artifact.description) is deliver
        assert "STOPPED" not in artifact.description
        assert sent_per_recipient(engine) == {}, "an interrupted run hands nothing to a provider"
        here.interrupted.clear()
        again, rest = dispatch(request.model_copy(update={"deliver": True}))
    assert again.is_completed(), again.message
    assert rest.not_stored == 0 and len(rest.enqueue.notification_ids) == 10
    assert sent_per_recipient(engine) == {
        (f"tech:{n}", channel): 1 for n in range(1, 11) for channel in ("email", "sms")
    }


def _refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_a_delivery_step_tries_again_when_the_database_connection_fails() -> None:
    """Rescue, digests and leftovers run in the flow, not as task runs: a lost database
    connection is retried as their tasks' retries did, then the step's answer is used."""
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < STEP_ATTEMPTS:
            raise _refused()
        return "done"

    assert retried("prepare-delivery", flaky, delay_s=0) == "done"
    assert len(calls) == STEP_ATTEMPTS


def test_a_delivery_step_gives_up_after_its_attempts_and_never_retries_a_defect() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise _refused()

    with pytest.raises(OperationalError):
        retried("finish-delivery", down, delay_s=0)
    assert len(calls) == STEP_ATTEMPTS

    def broken() -> None:
        calls.append(1)
        raise ValueError("a defect, not a lost connection")

    calls.clear()
    with pytest.raises(ValueError, match="a defect"):
        retried("finish-delivery", broken, delay_s=0)
    assert len(calls) == 1

    calls.clear()
    with pytest.raises(OperationalError, match="no such table"):
        retried("finish-delivery", lambda: _missing_table(calls), delay_s=0)
    assert len(calls) == 1, "SQLite's missing table is an OperationalError, and a defect"


def _missing_table(calls: list[int]) -> None:
    """What SQLite says when the schema lacks a table: an OperationalError, like a lost file."""
    calls.append(1)
    with make_engine("sqlite://").connect() as connection:
        connection.execute(text("SELECT * FROM delivery_logs_gone"))


def _locked(path: Path) -> OperationalError:
    """What SQLite says when another process holds the file's write lock (and we do not wait)."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with (
            pytest.raises(OperationalError, match="locked") as raised,
            engine.connect() as connection,
        ):
            connection.execute(text("SELECT count(*) FROM sqlite_master"))
        return raised.value
    finally:
        engine.dispose()
        holder.close()


def test_an_audit_tries_again_when_the_database_is_away_and_never_for_a_defect(
    tmp_path: Path,
) -> None:
    """run-audit's retries (10 s apart) wait for a lost, refused or busy database only: a schema
    that refuses the query or a bug fails the run at once instead of 20 s later, the same way."""
    from prefect.states import Failed

    from tasks.checks import audit

    def worth_another(error: BaseException) -> bool:
        return bool(audit.retry_condition_fn(audit, None, Failed(data=error)))  # type: ignore[misc]

    assert worth_another(_refused())
    assert worth_another(_locked(tmp_path / "locked.db"))
    with pytest.raises(OperationalError) as missing:
        _missing_table([])
    assert not worth_another(missing.value)
    undefined = ProgrammingError("SELECT", {}, Exception('relation "delivery_logs" does not exist'))
    assert not worth_another(undefined)
    assert not worth_another(TypeError("a defect"))


def test_the_delivery_notes_count_batches_as_the_command_does() -> None:
    """The artifact's line said '1 batches' where `notifyops deliver` says '1 batch(es)'."""
    summary = DeliverySummary.of(
        BatchReport(claimed=3), batches=1, rescued=RescueCounts(0, 0), left=Leftovers(0, 0, 0)
    )
    assert delivery_notes(summary).startswith("3 claimed in 1 batch(es); 0 still due; ")


def test_a_dispatch_names_its_rows_another_run_is_still_sending() -> None:
    """A duplicate submitted while the first run was still sending ended 'its 6
    notification(s): 0 sent', hiding the nine rows under way."""
    from flows.states import dispatch_verdict
    from notify.request_report import RequestReport, RequestRows

    def rows(status: str, count: int) -> RequestRows:
        return RequestRows(
            channel="email",
            status=status,
            decision="email: send",
            rows=count,
            next_attempt_at=None,
            delivered_by="first-run",
            error_code=None,
        )

    own = RequestReport(
        request_id="k", groups=(rows("sent", 3), rows("sending", 7), rows("claimed", 2))
    )
    name, message = dispatch_verdict(DeliverySummary(), own)
    assert name is None and message == "3 sent; 9 being sent by another run"


def test_an_interrupted_delivery_is_no_stop_to_page_about() -> None:
    """An operator's Ctrl-C on a send emitted `notifyops.delivery.stopped`, the event the RUNBOOK
    points the on-call automation at; a provider's refusal still does, and failures in an
    interrupted run are still `delivery.failed`."""
    from flows.events import delivery_event
    from notify.delivery import INTERRUPTED

    assert delivery_event(DeliverySummary(stopped=INTERRUPTED)) is None
    failed = DeliverySummary(stopped=INTERRUPTED, outcomes={"email": {"failed": 1}})
    assert delivery_event(failed) == (
        "delivery.failed",
        {"template": None, "outcomes": failed.outcomes},
    )
    refused = DeliverySummary(stopped="email stopped: config error MessageRejected")
    found = delivery_event(refused, template="repair_assigned")
    assert found is not None and found[0] == "delivery.stopped"
    assert found[1]["reason"] == "email stopped: config error MessageRejected"


@pytest.fixture
def events_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Prefect's events worker with its asserting client: what the run emitted, kept."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    try:
        yield worker
    finally:
        worker.drain()


def test_an_ad_hoc_check_emits_events_no_automation_on_live_alerts_matches(
    events_worker: Any,
) -> None:
    """A look back or another window than the schedule's emitted `notifyops.alert.P1` like the
    live check: the RUNBOOK's automation on it paged for a P1 long over."""
    from datetime import UTC, datetime

    from prefect.events.clients import AssertingEventsClient

    from flows.events import check_events
    from notify.reports import Report
    from notify.severity import Finding, Severity

    at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    found = Finding("failure-rate", Severity.P1, "email failure rate 80%")
    report = Report(
        as_of=at, window_start=at, window_hours=1, severity=Severity.P1, findings=(found,)
    )
    check_events("failures", report, ["log"], ["sns: route not configured"])
    check_events("failures", report, ["log"], ["sns: route not configured"], ad_hoc="a look back")
    events_worker.drain()
    client = events_worker._client
    assert isinstance(client, AssertingEventsClient)
    emitted = [(e.event, e.payload.get("ad_hoc")) for e in client.events]
    assert emitted == [
        ("notifyops.alert.P1", None),
        ("notifyops.alert.unrouted", None),
        ("notifyops.ad-hoc.P1", "a look back"),
        ("notifyops.ad-hoc.unrouted", "a look back"),
    ]
