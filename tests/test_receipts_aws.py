"""Receipts through real boto3 against moto (server mode): set-up as code, SES events published
through SNS to SQS and read by the poll, SMS delivery-log lines read from CloudWatch Logs in
batches, a crash between the commit and the SQS delete, a poison message."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.parsers import ResponseParserError
from sqlalchemy import Engine, func, select

from notify.bootstrap import Runtime
from notify.db import DELIVERY_LOGS, RECEIPTS, utcnow
from notify.fallback import FallbackPolicy
from notify.receipts import ReceiptSources, poll_receipts, setup_receipts
from notify.receipts.parse import parse_sqs_body
from notify.receipts.poll import report_json, sources_from
from notify.receipts.queue import QueueMessage, poll_queue
from notify.receipts.setup import EVENT_TYPES
from notify.receipts.smslogs import read_sms_logs, sms_log_groups
from notify.rendering import TemplateCatalog
from notify.senders.base import OutgoingEmail
from notify.senders.ses import SesEmailSender, send_email_request
from notify.settings import Settings, load_settings
from tests.factories import Rows
from tests.receipt_samples import ses_event, sms_line

NAME = "notifyops-receipts"
FALLBACK = FallbackPolicy.of(TemplateCatalog())
TO = "tech.1@example.com"
PHONE = "+15551234567"


def _client(service: str, url: str) -> Any:
    return boto3.session.Session().client(service, region_name="us-east-1", endpoint_url=url)


@pytest.fixture
def aws(aws_env: str) -> dict[str, Any]:
    return {name: _client(name, aws_env) for name in ("ses", "sesv2", "sns", "sqs", "logs")}


def _settings(db_url: str, **extra: Any) -> Settings:
    return load_settings(database_url=db_url, sender="memory", receipts_wait_s=0, **extra)


def _poll(
    aws: dict[str, Any],
    engine: Engine,
    db_url: str,
    *,
    with_logs: bool = False,
    clock: Callable[[], datetime] = utcnow,
) -> Any:
    """One receipts poll of the queue (and, `with_logs`, of the SMS delivery logs)."""
    logs = {"logs": aws["logs"], "account_id": "123456789012"} if with_logs else {}
    return poll_receipts(
        engine=engine,
        sources=ReceiptSources(sqs=aws["sqs"], **logs),
        settings=_settings(db_url),
        clock=clock,
        fallback=FALLBACK,
    )


def _setup(aws: dict[str, Any], role: str | None = None) -> Any:
    return setup_receipts(
        ses=aws["ses"], sns=aws["sns"], sqs=aws["sqs"], name=NAME, sms_role_arn=role
    )


def test_setup_says_to_name_the_configuration_set_until_sends_use_it(
    aws: dict[str, Any],
) -> None:
    """Receipts of an email come only when its send names the configuration set: set-up says
    so every time it runs while NOTIFY_SES_CONFIGURATION_SET does not name it (a second run finds
    the set, and still says it), and says sends use it once they do."""

    def note(sends_use: str | None) -> str:
        result = setup_receipts(
            ses=aws["ses"],
            sns=aws["sns"],
            sqs=aws["sqs"],
            name=NAME,
            sms_role_arn=None,
            sends_use=sends_use,
        )
        [item] = [i for i in result.items if i.kind == "ses-configuration-set"]
        return item.note

    hint = f"sends do not use it yet: set NOTIFY_SES_CONFIGURATION_SET={NAME}"
    assert note(None) == hint  # created
    assert note(None) == hint  # found
    assert note("another-set") == hint
    assert note(NAME) == "sends use it (NOTIFY_SES_CONFIGURATION_SET)"


def test_setup_creates_everything_once_and_then_finds_it(aws: dict[str, Any]) -> None:
    role = "arn:aws:iam::123456789012:role/sns-sms-logs"
    first = _setup(aws, role)
    assert {(i.kind, i.action) for i in first.items} == {
        ("sns-topic", "created"),
        ("sqs-queue", "created"),
        ("sns-subscription", "created"),
        ("ses-configuration-set", "created"),
        ("ses-event-destination", "created"),
        ("sns-sms-delivery-logs", "updated"),
    }
    again = _setup(aws, role)
    assert {i.action for i in again.items} == {"found"}
    described = aws["ses"].describe_configuration_set(
        ConfigurationSetName=NAME, ConfigurationSetAttributeNames=["eventDestinations"]
    )
    [destination] = described["EventDestinations"]
    assert destination["SNSDestination"]["TopicARN"] == first.items[0].arn
    assert {"send", "bounce", "complaint", "delivery", "reject"} <= set(
        destination["MatchingEventTypes"]
    )
    attributes = aws["sns"].get_sms_attributes()["attributes"]
    assert attributes["DeliveryStatusSuccessSamplingRate"] == "100"
    queue = aws["sqs"].get_queue_url(QueueName=NAME)["QueueUrl"]
    redrive = aws["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])
    assert json.loads(redrive["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"].endswith(
        f"{NAME}-dlq"
    )


WRONG_DESTINATIONS = {
    "disabled": ({"Enabled": False}, "was disabled: no receipts came"),
    "bounce only": (
        {"MatchingEventTypes": ["bounce"]},
        "was not matching send, reject, complaint, delivery, renderingFailure, deliveryDelay: "
        "no receipts came",
    ),
    "another topic": (
        {"SNSDestination": {"TopicARN": "arn:aws:sns:us-east-1:123456789012:other"}},
        "was publishing to arn:aws:sns:us-east-1:123456789012:other: no receipts came",
    ),
}


@pytest.mark.parametrize("wrong", WRONG_DESTINATIONS, ids=list(WRONG_DESTINATIONS))
def test_setup_sets_right_an_event_destination_of_our_name_that_delivers_no_receipts(
    aws: dict[str, Any], moto_ses_updates_event_destinations: str, wrong: str
) -> None:
    """A destination of our name found disabled, matching some event types only or publishing
    to another topic was reported `found` and left as it was: no receipt ever arrived. Set-up
    now updates it to what it creates and says what was wrong. (moto 5.2.6 has no SES
    UpdateConfigurationSetEventDestination: the fixture teaches moto's server the call.)"""
    topic = aws["sns"].create_topic(Name=NAME)["TopicArn"]
    change, note = WRONG_DESTINATIONS[wrong]
    right = {
        "Name": NAME,
        "Enabled": True,
        "MatchingEventTypes": EVENT_TYPES,
        "SNSDestination": {"TopicARN": topic},
    }
    _create_destination(aws["ses"], {**right, **change})

    result = _setup(aws)

    [item] = [i for i in result.items if i.kind == "ses-event-destination"]
    assert (item.action, item.note) == ("updated", note)
    destination = _destination(aws["ses"])
    assert destination["Enabled"] is True
    assert destination["SNSDestination"]["TopicARN"] == topic
    assert set(destination["MatchingEventTypes"]) == set(EVENT_TYPES)
    [again] = [i for i in _setup(aws).items if i.kind == "ses-event-destination"]
    assert again.action == "found"


def test_moto_still_lacks_the_ses_event_destination_update(aws: dict[str, Any]) -> None:
    """Why `moto_ses_updates_event_destinations` exists: plain moto answers the call with a 500
    page botocore cannot parse. When this fails, moto has the call: drop the fixture."""
    _setup(aws)
    with pytest.raises(ResponseParserError):
        aws["ses"].update_configuration_set_event_destination(
            ConfigurationSetName=NAME, EventDestination=_destination(aws["ses"])
        )


def _destination(ses: Any) -> dict[str, Any]:
    described = ses.describe_configuration_set(
        ConfigurationSetName=NAME, ConfigurationSetAttributeNames=["eventDestinations"]
    )
    [destination] = described["EventDestinations"]
    return dict(destination)


def _create_destination(ses: Any, destination: dict[str, Any]) -> None:
    """What a hand-made set-up or a console edit leaves: our name, other settings."""
    ses.create_configuration_set(ConfigurationSet={"Name": NAME})
    ses.create_configuration_set_event_destination(
        ConfigurationSetName=NAME, EventDestination=destination
    )


def test_sends_carry_the_configuration_set_and_the_delivery_id_tag(aws: dict[str, Any]) -> None:
    message = OutgoingEmail(TO, "s", "t", None, "notifications@example.com", delivery_id=42)
    request = send_email_request(message, configuration_set=NAME)
    assert request["ConfigurationSetName"] == NAME
    assert request["EmailTags"] == [{"Name": "delivery_id", "Value": "42"}]
    receipt = SesEmailSender(aws["sesv2"], configuration_set=NAME).send_email(message)
    assert receipt.provider_message_id  # moto accepts both (and stores neither)


def _publish(aws: dict[str, Any], topic: str, records: Sequence[dict[str, Any] | str]) -> None:
    for record in records:
        text = record if isinstance(record, str) else json.dumps(record)
        aws["sns"].publish(TopicArn=topic, Message=text)


def _sent_rows(engine: Engine, aws: dict[str, Any], count: int) -> list[tuple[int, str]]:
    """Rows the deliverer sent through (moto) SES, tagged with their delivery id."""
    rows = Rows()
    rid = rows.recipient("tech:1", email=TO)
    ids = [
        rows.delivery(rid, channel="email", created_at=utcnow(), recipient_email=TO)
        for _ in range(count)
    ]
    sender = SesEmailSender(aws["sesv2"], configuration_set=NAME)
    sent = []
    for row_id in ids:
        message = OutgoingEmail(TO, "s", "t", None, "notifications@example.com", delivery_id=row_id)
        sent.append((row_id, sender.send_email(message).provider_message_id))
    for (_, message_id), spec in zip(sent, rows.deliveries, strict=True):
        spec["provider_message_id"] = message_id
    rows.insert(engine)
    return sent


def _statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as connection:
        return dict(
            connection.execute(select(DELIVERY_LOGS.c.id, DELIVERY_LOGS.c.status)).tuples().all()
        )


def _queue_depth(aws: dict[str, Any]) -> int:
    url = aws["sqs"].get_queue_url(QueueName=NAME)["QueueUrl"]
    attributes = aws["sqs"].get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_ses_events_through_sns_and_sqs_reach_their_statuses(
    aws: dict[str, Any], engine: Engine, db_url: str
) -> None:
    topic = _setup(aws).items[0].arn
    sent = _sent_rows(engine, aws, 5)
    kinds = ["Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay"]
    records: list[dict[str, Any] | str] = [
        ses_event(kind, message_id, to=TO, delivery_id=row_id)
        for kind, (row_id, message_id) in zip(kinds, sent, strict=True)
    ]
    _publish(aws, topic, [*records, "this is not an SES event"])
    report = _poll(aws, engine, db_url)
    statuses = _statuses(engine)
    assert [statuses[row_id] for row_id, _ in sent] == [
        "delivered",
        "bounced",
        "complained",
        "undelivered",
        "sent",
    ]
    payload = report_json(report)
    assert payload["applied"] == dict.fromkeys(kinds, 1)
    assert (payload["malformed"], payload["unmatched"], payload["duplicates"]) == (1, 0, 0)
    assert _queue_depth(aws) == 0


def dies_after_commit(aws: dict[str, Any], url: str) -> Callable[[Sequence[QueueMessage]], None]:
    """A poll's `after_commit` hook that kills it after the commit, before the SQS delete: the
    messages come back at once, as once their visibility timeout ran out while it was dead."""

    def crash(chunk: Sequence[QueueMessage]) -> None:
        for message in chunk:
            aws["sqs"].change_message_visibility(
                QueueUrl=url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=0
            )
        raise RuntimeError("kill -9 after the commit, before the delete")

    return crash


def test_a_crash_between_commit_and_delete_changes_nothing_twice(
    aws: dict[str, Any], engine: Engine, db_url: str
) -> None:
    topic = _setup(aws).items[0].arn
    sent = _sent_rows(engine, aws, 3)
    _publish(aws, topic, [ses_event("Bounce", m, to=TO, delivery_id=r) for r, m in sent])
    url = aws["sqs"].get_queue_url(QueueName=NAME)["QueueUrl"]

    common: dict[str, Any] = {
        "sqs": aws["sqs"],
        "queue_url": url,
        "engine": engine,
        "clock": utcnow,
        "max_messages": 100,
        "wait_s": 0,
    }
    with pytest.raises(RuntimeError):
        poll_queue(**common, after_commit=dies_after_commit(aws, url))
    assert set(_statuses(engine).values()) == {"bounced"}  # committed before the crash
    again = poll_queue(**common)
    assert (again.duplicates, again.changed, again.suppressed) == (3, 0, 0)
    assert _queue_depth(aws) == 0


def test_moto_identity_feedback_with_an_object_message_is_read() -> None:
    """moto puts the record in `Message` as an object and says notificationType."""
    record = ses_event("Bounce", "static-id", to=TO)
    record["notificationType"] = "Bounce, Complaint, or Delivery."
    del record["eventType"]
    del record["mail"]["tags"]
    event = parse_sqs_body(json.dumps({"Type": "Notification", "Message": record}))
    assert (event.event_type, event.delivery_id, event.suppress) == ("Bounce", None, True)


def _put_lines(logs: Any, group: str, lines: Sequence[tuple[datetime, str]]) -> None:
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="stream")
    events = [{"timestamp": int(at.timestamp() * 1000), "message": line} for at, line in lines]
    logs.put_log_events(logGroupName=group, logStreamName="stream", logEvents=events)


def test_sms_delivery_logs_are_read_in_batches_with_a_checkpoint(
    aws: dict[str, Any], engine: Engine
) -> None:
    now = utcnow()
    rows = Rows()
    rid = rows.recipient("tech:1")
    ids = [
        rows.delivery(
            rid,
            channel="sms",
            created_at=now - timedelta(minutes=10),
            recipient_phone=PHONE,
            provider_message_id=f"sms-{n}",
        )
        for n in range(30)
    ]
    rows.insert(engine)
    success, failure = sms_log_groups("us-east-1", "123456789012")
    at = now - timedelta(minutes=5)
    _put_lines(
        aws["logs"],
        success,
        [(at, sms_line(f"sms-{n}", phone=PHONE, price=0.00581)) for n in range(29)],
    )
    failed = sms_line("sms-29", phone=PHONE, ok=False, price=0.0)
    _put_lines(aws["logs"], failure, [(at, failed)])
    common: dict[str, Any] = {
        "logs": aws["logs"],
        "engine": engine,
        "groups": (success, failure),
        "overlap": timedelta(minutes=15),
        "lookback": timedelta(hours=1),
    }
    first = read_sms_logs(**common, now=now)
    assert (first.lines, first.calls) == (30, 2)  # one call per group for the hour, not per message
    statuses = _statuses(engine)
    assert [statuses[i] for i in ids].count("delivered") == 29
    assert statuses[ids[-1]] == "undelivered"
    with engine.connect() as connection:
        costs = set(connection.scalars(select(DELIVERY_LOGS.c.actual_cost)))
    assert {str(c) for c in costs} == {"0.005810", "0.000000"}
    later = read_sms_logs(**common, now=now + timedelta(minutes=1))  # overlap re-read: no-op
    assert (later.report.duplicates, later.report.changed) == (30, 0)


def test_poll_with_the_runtime_reads_queue_and_logs(
    aws_env: str, engine: Engine, db_url: str
) -> None:
    settings = _settings(db_url)
    runtime = Runtime(settings, engine=engine)
    try:
        sources = sources_from(runtime)
        assert sources.account_id == "123456789012"
        _setup(
            {"ses": runtime.aws_client("ses"), "sns": runtime.aws_client("sns"), "sqs": sources.sqs}
        )
        report = poll_receipts(
            engine=engine, sources=sources, settings=settings, clock=utcnow, fallback=FALLBACK
        )
    finally:
        runtime.close()
    assert len(report.sms.missing_groups) == 2  # no SMS logged yet: not an error
    assert report.reputation is not None and report.reputation.severity is None


def test_setup_and_the_poll_use_one_name_when_sends_name_another_configuration_set(
    aws_env: str, engine: Engine, db_url: str
) -> None:
    """NOTIFY_SES_CONFIGURATION_SET=rb-myset with the default NOTIFY_RECEIPTS_NAME: set-up made
    the set, topic and queue `rb-myset`, and the poll read `notifyops-receipts` (missing: "not
    set up" right after a set-up that worked; or another queue), so no receipt was ever read."""
    from notify.receipts.poll import setup_from

    settings = _settings(db_url, ses_configuration_set="rb-myset")
    runtime = Runtime(settings, engine=engine)
    try:
        result = setup_from(runtime)
        [topic] = [i.arn for i in result.items if i.kind == "sns-topic"]
        assert topic is not None and topic.endswith(":rb-myset")
        rows = Rows()
        row = rows.delivery(
            rows.recipient("tech:1", email=TO),
            created_at=utcnow() - timedelta(minutes=5),
            channel="email",
            recipient_email=TO,
            provider_message_id="m-set",
        )
        rows.insert(engine)
        runtime.aws_client("sns").publish(
            TopicArn=topic, Message=json.dumps(ses_event("Delivery", "m-set", to=TO))
        )
        report = poll_receipts(
            engine=engine,
            sources=sources_from(runtime),
            settings=settings,
            clock=utcnow,
            fallback=FALLBACK,
        )
    finally:
        runtime.close()
    assert report.email.applied["Delivery"] == 1
    with engine.connect() as connection:
        status = connection.scalar(select(DELIVERY_LOGS.c.status).where(DELIVERY_LOGS.c.id == row))
    assert status == "delivered"


def _decisions(engine: Engine) -> dict[int, tuple[str, str]]:
    with engine.connect() as connection:
        query = select(DELIVERY_LOGS.c.id, DELIVERY_LOGS.c.status, DELIVERY_LOGS.c.decision)
        return {row_id: (status, why) for row_id, status, why in connection.execute(query)}


def _due(rows: Rows, recipient: int, channel: str, address: str, now: datetime) -> int:
    """A pending row of `channel` to `address`, due at `now`."""
    column = "recipient_phone" if channel == "sms" else "recipient_email"
    return rows.delivery(
        recipient,
        channel=channel,
        status="pending",
        created_at=now,
        next_attempt_at=now,
        **{column: address},
    )


def test_a_bounce_skips_the_rows_still_queued_to_the_address_in_the_same_poll(
    aws: dict[str, Any], engine: Engine, db_url: str
) -> None:
    """A long delivery run goes on claiming queued rows: a hard bounce read mid-run stops the
    rows still queued to the bounced address at once (due now or later), not at the next run's
    recheck; another address's rows and the bounced recipient's SMS go on."""
    topic = _setup(aws).items[0].arn
    now = utcnow()
    rows = Rows()
    tech = rows.recipient("tech:1", email=TO)
    other = rows.recipient("tech:2", email="tech.2@example.com")
    bounced = rows.delivery(
        tech, channel="email", created_at=now, recipient_email=TO, provider_message_id="ses-1"
    )
    queued = [
        rows.delivery(
            tech, channel="email", status=status, created_at=now, recipient_email=TO, **when
        )
        for status, when in (
            ("pending", {"next_attempt_at": now}),
            ("pending_retry", {"next_attempt_at": now + timedelta(hours=1)}),
        )
    ]
    untouched = [
        _due(rows, other, "email", "tech.2@example.com", now),
        _due(rows, tech, "sms", PHONE, now),
    ]
    rows.insert(engine)
    _publish(aws, topic, [ses_event("Bounce", "ses-1", to=TO, delivery_id=bounced)])
    report = _poll(aws, engine, db_url)
    decisions = _decisions(engine)
    assert decisions[bounced][0] == "bounced"
    for row_id in queued:
        status, decision = decisions[row_id]
        assert status == "skipped"
        assert decision.startswith("email: muted after it was queued (suppression #")
        assert "Bounce:Permanent:General receipt ses:Bounce:ses-1:" in decision, decision
    assert [decisions[row_id][0] for row_id in untouched] == ["pending", "pending"]
    payload = report_json(report)
    assert (payload["suppressed"], payload["queued_skipped"], payload["fallbacks"]) == (1, 2, 0)


def test_an_sms_opt_out_in_the_delivery_logs_skips_the_queued_sms_without_a_fallback(
    aws: dict[str, Any], engine: Engine, db_url: str
) -> None:
    """The number opted out (STOP): its queued SMS are skipped in the poll that reads the log
    line. An opt-out is the recipient's word, so no email stands in for them (an operator's
    whole-number mute would get one)."""
    now = utcnow()
    rows = Rows()
    tech = rows.recipient("tech:1", email=TO)
    rows.delivery(
        tech,
        channel="sms",
        created_at=now - timedelta(minutes=10),
        recipient_phone=PHONE,
        provider_message_id="sms-1",
    )
    waiting = _due(rows, tech, "sms", PHONE, now)
    rows.insert(engine)
    success, failure = sms_log_groups("us-east-1", "123456789012")
    line = sms_line("sms-1", phone=PHONE, ok=False, price=0.0, response="Phone is opted out")
    _put_lines(aws["logs"], failure, [(now - timedelta(minutes=5), line)])
    aws["logs"].create_log_group(logGroupName=success)  # nothing delivered in the hour
    _setup(aws)
    report = _poll(aws, engine, db_url, with_logs=True)
    status, decision = _decisions(engine)[waiting]
    assert status == "skipped" and decision.startswith("sms: muted after it was queued")
    assert (report.totals.suppressed, report.queued.muted, report.queued.fallbacks) == (1, 1, 0)
    assert len(_decisions(engine)) == 2, "no email fallback row"


def test_a_poll_that_died_after_storing_a_bounce_leaves_the_next_poll_to_skip_the_queued_rows(
    aws: dict[str, Any], engine: Engine, db_url: str
) -> None:
    """A poll killed after the commit that stored a hard bounce (or stopped by Ctrl-C, SIGTERM,
    a lost connection, an SQS error on its next receive) never skipped the rows still queued to
    the bounced address, and no later poll did: the receipt is a duplicate then and suppresses
    nothing new. A delivery run under way went on claiming them. The next poll skips them."""
    topic = _setup(aws).items[0].arn
    now = utcnow()
    rows = Rows()
    tech = rows.recipient("tech:1", email=TO)
    bounced = rows.delivery(
        tech, channel="email", created_at=now, recipient_email=TO, provider_message_id="ses-1"
    )
    queued = _due(rows, tech, "email", TO, now)
    rows.insert(engine)
    _publish(aws, topic, [ses_event("Bounce", "ses-1", to=TO, delivery_id=bounced)])
    url = aws["sqs"].get_queue_url(QueueName=NAME)["QueueUrl"]

    with pytest.raises(RuntimeError):
        poll_queue(
            sqs=aws["sqs"], queue_url=url, engine=engine, clock=utcnow, max_messages=100,
            wait_s=0, after_commit=dies_after_commit(aws, url),
        )  # fmt: skip
    assert _decisions(engine)[queued][0] == "pending"  # the bounce is stored, the row waits
    report = _poll(aws, engine, db_url)
    assert (report.totals.suppressed, report.totals.duplicates) == (0, 1)
    status, decision = _decisions(engine)[queued]
    assert status == "skipped" and decision.startswith("email: muted after it was queued")
    assert report_json(report)["queued_skipped"] == 1


def _crash_poll(aws: dict[str, Any], engine: Engine, db_url: str, unknown: int) -> Any:
    """`unknown` SMS rows to PHONE a crashed worker left, then one poll reading five log lines:
    one to PHONE, published after the rows were created, and four to numbers we never sent to
    (another sender's)."""
    now = utcnow()
    rows = Rows()
    tech = rows.recipient("tech:1", email=TO)
    for _ in range(unknown):
        rows.delivery(
            tech,
            channel="sms",
            status="unknown",
            created_at=now - timedelta(minutes=10),
            recipient_phone=PHONE,
        )
    rows.insert(engine)
    success, failure = sms_log_groups("us-east-1", "123456789012")
    at = now - timedelta(minutes=5)
    lines = [(at, sms_line("sns-ours", phone=PHONE, published=at))]
    lines += [
        (at, sms_line(f"sns-other-{n}", phone=f"+1555000000{n}", published=at)) for n in range(4)
    ]
    _put_lines(aws["logs"], success, lines)
    aws["logs"].create_log_group(logGroupName=failure)
    _setup(aws)
    report = _poll(aws, engine, db_url, with_logs=True)
    return report_json(report)


def _unmatched_in_table(engine: Engine) -> int:
    with engine.connect() as connection:
        query = select(func.count()).where(RECEIPTS.c.state == "unmatched")
        return int(connection.scalar(query) or 0)


def test_a_log_line_a_crash_row_adopts_is_not_counted_unmatched(
    aws: dict[str, Any], engine: Engine, db_url: str
) -> None:
    """Before: 5 lines received, 1 applied to the crash row, `unmatched: 5` while the table
    held 4 unmatched receipts. The summary now agrees with the table."""
    payload = _crash_poll(aws, engine, db_url, unknown=1)
    assert payload["received"] == {"SmsSuccess": 5}
    assert payload["applied"] == {"SmsSuccess": 1}
    assert payload["crash_rows"]["matched_sms"] == 1
    assert payload["unmatched"] == _unmatched_in_table(engine) == 4
    assert _statuses(engine) == {1: "delivered"}


def test_one_log_line_for_two_crashed_sms_to_one_number_is_ambiguous_in_the_poll(
    aws: dict[str, Any], engine: Engine, db_url: str
) -> None:
    """The reviewer's case through a whole poll: before, matched_sms 2, ambiguous_sms 0."""
    payload = _crash_poll(aws, engine, db_url, unknown=2)
    crash = payload["crash_rows"]
    assert (crash["matched_sms"], crash["ambiguous_sms"]) == (0, 2)
    with engine.connect() as connection:
        ids = sorted(connection.scalars(select(DELIVERY_LOGS.c.id)))
    assert crash["ambiguous_rows"] == ids, "the operator decides them together: named"
    assert payload["applied"] == {}
    assert payload["unmatched"] == _unmatched_in_table(engine) == 5
    with engine.connect() as connection:
        query = select(DELIVERY_LOGS.c.status, DELIVERY_LOGS.c.provider_message_id)
        assert connection.execute(query).all() == [("unknown", None), ("unknown", None)]


def test_the_first_poll_after_setup_leaves_sms_sent_before_it_sent(
    aws: dict[str, Any], engine: Engine, db_url: str
) -> None:
    """The reviewer's case: a database upgraded from before receipts, SMS delivery logging set up
    only now. Before, the first poll made the SMS of days ago `undelivered`: false failure
    rates, and the runbook's redrive of undelivered rows sent each again."""
    start = utcnow()
    rows = Rows()
    tech = rows.recipient("tech:1", email=TO)
    sms = {"channel": "sms", "status": "sent", "recipient_phone": PHONE}
    old = [
        rows.delivery(
            tech, **sms, created_at=start - timedelta(days=d), sent_at=start - timedelta(days=d)
        )
        for d in (4, 9)
    ]
    answered = rows.delivery(
        tech,
        **sms,
        created_at=start - timedelta(minutes=9),
        sent_at=start - timedelta(minutes=9),
        provider_message_id="sns-ok",
    )
    after = rows.delivery(
        tech,
        **sms,
        created_at=start + timedelta(hours=1),
        sent_at=start + timedelta(hours=1),
        provider_message_id="sns-silent",
    )
    rows.insert(engine)
    success, _failure = sms_log_groups("us-east-1", "123456789012")
    at = start - timedelta(minutes=8)
    _put_lines(aws["logs"], success, [(at, sms_line("sns-ok", phone=PHONE, published=at))])
    _setup(aws)
    first = report_json(_poll(aws, engine, db_url, with_logs=True, clock=lambda: start))
    assert first["crash_rows"]["undelivered_sms"] == 0
    assert (first["sms_logs"]["read_since"], first["sms_logs"]["began"]) == (
        start.isoformat(),
        True,
    )
    assert _statuses(engine) == {
        old[0]: "sent",
        old[1]: "sent",
        answered: "delivered",
        after: "sent",
    }
    later = start + timedelta(hours=74)
    second = report_json(_poll(aws, engine, db_url, with_logs=True, clock=lambda: later))
    assert second["crash_rows"]["undelivered_sms"] == 1
    assert (second["sms_logs"]["read_since"], second["sms_logs"]["began"]) == (
        start.isoformat(),
        False,
    )
    statuses = _statuses(engine)
    assert [statuses[i] for i in (*old, answered, after)] == [
        "sent",
        "sent",
        "delivered",
        "undelivered",
    ]
