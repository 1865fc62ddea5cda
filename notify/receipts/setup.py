"""Set-up as code for receipts, idempotent: run it again and it finds what exists (an SES
event destination of its name that would deliver no receipts is updated to what it creates).

SES configuration set (its events go to an SNS topic) -> SNS topic -> SQS queue (with a
dead-letter queue; raw delivery off: the flow parses the SNS envelope). For SMS, the SNS
delivery-status logging attributes (the IAM role, 100% success sampling). The SES v1 API is used
for the configuration set because it manages the same sets and moto implements it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

EVENT_TYPES = [
    "send",
    "reject",
    "bounce",
    "complaint",
    "delivery",
    "renderingFailure",
    "deliveryDelay",
]
MAX_RECEIVE_COUNT = 5  # receives before a message goes to the dead-letter queue
VISIBILITY_TIMEOUT_S = 120
RETENTION_S = 14 * 24 * 3600
SUCCESS_SAMPLING = "100"


@dataclass(frozen=True)
class SetupItem:
    kind: str  # ses-configuration-set, sns-topic, ...
    name: str
    action: str  # created, found, updated, skipped
    arn: str = ""
    note: str = ""


@dataclass
class SetupResult:
    items: list[SetupItem] = field(default_factory=list)

    def add(self, item: SetupItem) -> SetupItem:
        self.items.append(item)
        return item


def setup_receipts(
    *,
    ses: Any,
    sns: Any,
    sqs: Any,
    name: str,
    sms_role_arn: str | None,
    sends_use: str | None = None,
) -> SetupResult:
    """`sends_use`: the configuration set sends name now (NOTIFY_SES_CONFIGURATION_SET): unless
    it is `name`, the configuration set's item says to set it, whether it was created or found
    (the receipts of a send without it never come)."""
    result = SetupResult()
    topic = result.add(_topic(sns, name))
    dlq = result.add(_queue(sqs, f"{name}-dlq", {"MessageRetentionPeriod": str(RETENTION_S)}))
    queue = result.add(_queue(sqs, name, _queue_attributes(dlq.arn, topic.arn)))
    result.add(_subscription(sns, topic.arn, queue.arn))
    result.add(_configuration_set(ses, name, sends_use))
    result.add(_event_destination(ses, name, topic.arn))
    result.add(_sms_logging(sns, sms_role_arn))
    return result


def _topic(sns: Any, name: str) -> SetupItem:
    existing = [
        t["TopicArn"]
        for page in sns.get_paginator("list_topics").paginate()
        for t in page.get("Topics", [])
        if t["TopicArn"].rsplit(":", 1)[-1] == name
    ]
    arn = existing[0] if existing else sns.create_topic(Name=name)["TopicArn"]
    sns.set_topic_attributes(
        TopicArn=arn, AttributeName="Policy", AttributeValue=_topic_policy(arn)
    )
    return SetupItem("sns-topic", name, "found" if existing else "created", arn)


def _topic_policy(topic_arn: str) -> str:
    account = topic_arn.split(":")[4]
    statement = {
        "Sid": "SesPublishesReceipts",
        "Effect": "Allow",
        "Principal": {"Service": "ses.amazonaws.com"},
        "Action": "SNS:Publish",
        "Resource": topic_arn,
        "Condition": {"StringEquals": {"AWS:SourceAccount": account}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _queue(sqs: Any, name: str, attributes: dict[str, str]) -> SetupItem:
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        action = "found"
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    except ClientError as error:
        if "NonExistentQueue" not in _code(error) and "QueueDoesNotExist" not in _code(error):
            raise
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        action = "created"
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return SetupItem("sqs-queue", name, action, arn, note=url)


def _queue_attributes(dlq_arn: str, topic_arn: str) -> dict[str, str]:
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TopicSendsReceipts",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": "*",
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    return {
        "RedrivePolicy": json.dumps(redrive),
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
        "MessageRetentionPeriod": str(RETENTION_S),
        "Policy": json.dumps(policy),
    }


def _subscription(sns: Any, topic_arn: str, queue_arn: str) -> SetupItem:
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for sub in page.get("Subscriptions", []):
            if sub.get("Protocol") == "sqs" and sub.get("Endpoint") == queue_arn:
                return SetupItem("sns-subscription", queue_arn, "found", sub["SubscriptionArn"])
    arn = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "false"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return SetupItem("sns-subscription", queue_arn, "created", arn)


def _configuration_set(ses: Any, name: str, sends_use: str | None) -> SetupItem:
    if sends_use == name:
        note = "sends use it (NOTIFY_SES_CONFIGURATION_SET)"
    else:
        note = f"sends do not use it yet: set NOTIFY_SES_CONFIGURATION_SET={name}"
    try:
        ses.describe_configuration_set(ConfigurationSetName=name)
        return SetupItem("ses-configuration-set", name, "found", note=note)
    except ClientError as error:
        if "ConfigurationSetDoesNotExist" not in _code(error):
            raise
    ses.create_configuration_set(ConfigurationSet={"Name": name})
    return SetupItem("ses-configuration-set", name, "created", note=note)


def _event_destination(ses: Any, name: str, topic_arn: str) -> SetupItem:
    """Create the event destination, or set one of our name right: a destination that is
    disabled, matches other event types or publishes to another topic delivers no receipts.

    SES v1 UpdateConfigurationSetEventDestination replaces the destination of that name. moto
    (5.2.6) does not implement it (its server answers 500): the tests teach their moto server
    the call as SES documents it (tests/aws_fixtures.py, `moto_ses_updates_event_destinations`).
    """
    wanted = _wanted_destination(name, topic_arn)
    found = _destination_named(ses, name)
    if found is None:
        ses.create_configuration_set_event_destination(
            ConfigurationSetName=name, EventDestination=wanted
        )
        return SetupItem("ses-event-destination", name, "created", topic_arn)
    wrong = _destination_differences(found, topic_arn)
    if not wrong:
        return SetupItem("ses-event-destination", name, "found", topic_arn)
    ses.update_configuration_set_event_destination(
        ConfigurationSetName=name, EventDestination=wanted
    )
    note = "was " + "; ".join(wrong) + ": no receipts came"
    return SetupItem("ses-event-destination", name, "updated", topic_arn, note=note)


def _wanted_destination(name: str, topic_arn: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Enabled": True,
        "MatchingEventTypes": EVENT_TYPES,
        "SNSDestination": {"TopicARN": topic_arn},
    }


def _destination_named(ses: Any, name: str) -> dict[str, Any] | None:
    described = ses.describe_configuration_set(
        ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"]
    )
    for found in described.get("EventDestinations", []):
        if found and found.get("Name") == name:
            destination: dict[str, Any] = found
            return destination
    return None


def _destination_differences(found: dict[str, Any], topic_arn: str) -> list[str]:
    """What makes `found` differ from the destination set-up creates, said for the operator."""
    wrong = []
    if not found.get("Enabled", False):
        wrong.append("disabled")
    matched = set(found.get("MatchingEventTypes", []))
    unmatched = [kind for kind in EVENT_TYPES if kind not in matched]
    if unmatched:
        wrong.append(f"not matching {', '.join(unmatched)}")
    extra = sorted(matched - set(EVENT_TYPES))
    if extra:
        wrong.append(f"also matching {', '.join(extra)}")
    found_topic = found.get("SNSDestination", {}).get("TopicARN")
    if found_topic != topic_arn:
        wrong.append(f"publishing to {found_topic or 'no SNS topic'}")
    return wrong


def _sms_logging(sns: Any, role_arn: str | None) -> SetupItem:
    if not role_arn:
        return SetupItem(
            "sns-sms-delivery-logs",
            "DeliveryStatusIAMRole",
            "skipped",
            note="set NOTIFY_SMS_DELIVERY_LOG_ROLE_ARN (an IAM role SNS can write logs with)",
        )
    wanted = {
        "DeliveryStatusIAMRole": role_arn,
        "DeliveryStatusSuccessSamplingRate": SUCCESS_SAMPLING,
    }
    current = sns.get_sms_attributes().get("attributes", {})
    if all(current.get(k) == v for k, v in wanted.items()):
        return SetupItem("sns-sms-delivery-logs", "DeliveryStatusIAMRole", "found", role_arn)
    sns.set_sms_attributes(attributes=wanted)
    return SetupItem("sns-sms-delivery-logs", "DeliveryStatusIAMRole", "updated", role_arn)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
