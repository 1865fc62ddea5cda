"""CloudWatch metrics and the runbook's alarms, against moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from notify.audits import FailureReport, HealthReport, SmsCostReport, WorkerState
from notify.metrics import (
    failure_metrics,
    health_metrics,
    install_alarms,
    publish,
    runbook_alarms,
    sms_cost_metrics,
)
from notify.settings import Settings
from notify.severity import Severity

NAMESPACE = "RS_Systems/Notifications"
ALARMS = [
    "RS-Notifications-HighEmailFailureRate",
    "RS-Notifications-HighSMSCost",
    "RS-Notifications-QueueBacklog",
    "RS-Notifications-HighErrorRate",
    "RS-Notifications-HighLatency",
    "RS-Notifications-WorkerDown",
]


def header(now: datetime) -> dict[str, Any]:
    return {
        "as_of": now,
        "window_start": now - timedelta(hours=1),
        "window_hours": 1.0,
        "severity": Severity.P4,
    }


def sms_report(now: datetime, last_hour: str) -> SmsCostReport:
    zero = Decimal("0.00")
    return SmsCostReport(
        **header(now),
        sms_count=1,
        segments=1,
        total_cost_usd=Decimal(last_hour),
        last_hour_cost_usd=Decimal(last_hour),
        hourly_alarm_usd=Decimal(20),
        today_cost_usd=zero,
        daily_cap_usd=Decimal(100),
        daily_cap_used=0.0,
        daily_cap_reached=False,
        month_cost_usd=Decimal("12.34"),
        hourly=(),
        top_recipients=(),
        top_recipients_by_cost=(),
    )


def failure_report(now: datetime) -> FailureReport:
    return FailureReport(
        **header(now),
        total=200,
        failed=15,
        retrying=0,
        error_rate=0.075,
        email_total=100,
        email_failed=12,
        email_error_rate=0.12,
        sms_total=100,
        sms_failed=3,
        sms_error_rate=0.03,
        error_rate_threshold=0.1,
        groups=(),
        groups_not_shown=0,
    )


def health_report(now: datetime, *, sent: int = 4, workers: Any = None) -> HealthReport:
    return HealthReport(
        **header(now),
        database_reachable=True,
        database_error=None,
        backlog=1_234,
        deferred=0,
        oldest_pending_age_s=12.0,
        sent_in_window=sent,
        avg_latency_s=2.5,
        p95_latency_s=9.0,
        stuck_claimed=0,
        stuck_sending=0,
        unknown=3,
        ses=None,
        workers=workers,
    )


@pytest.fixture
def cloudwatch(aws_env: str) -> Any:
    return boto3.client("cloudwatch", region_name="us-east-1")


def statistic(client: Any, name: str, stat: str, now: datetime) -> float | None:
    answer = client.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Statistics=[stat],
        Period=3600,
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=5),
    )
    points = answer["Datapoints"]
    return points[0][stat] if points else None


def test_published_metrics_read_back(cloudwatch: Any) -> None:
    settings = Settings(sender="memory")
    now = datetime.now(UTC).replace(microsecond=0)
    points = [
        *sms_cost_metrics(sms_report(now, "12.34")),
        *failure_metrics(failure_report(now)),
        *health_metrics(health_report(now)),
    ]
    assert publish(cloudwatch, settings, points) == 8
    publish(cloudwatch, settings, sms_cost_metrics(sms_report(now, "10.00")))
    assert statistic(cloudwatch, "SMSCost", "Sum", now) == pytest.approx(22.34)
    assert statistic(cloudwatch, "EmailFailureRate", "Average", now) == pytest.approx(12.0)
    assert statistic(cloudwatch, "SmsFailureRate", "Average", now) == pytest.approx(3.0)
    assert statistic(cloudwatch, "ErrorRate", "Average", now) == pytest.approx(7.5)
    assert statistic(cloudwatch, "QueueBacklog", "Maximum", now) == 1234
    assert statistic(cloudwatch, "DeliveryLatency", "Average", now) == 2.5
    assert statistic(cloudwatch, "UnknownDeliveries", "Maximum", now) == 3
    assert statistic(cloudwatch, "DeliveryLatencyP95", "Maximum", now) == 9.0


def test_disabled_cloudwatch_publishes_nothing(cloudwatch: Any) -> None:
    settings = Settings(sender="memory", cloudwatch_enabled=False)
    now = datetime.now(UTC)
    assert publish(cloudwatch, settings, sms_cost_metrics(sms_report(now, "1"))) == 0
    assert statistic(cloudwatch, "SMSCost", "Sum", now) is None


def test_health_metrics_skip_latency_without_sends_and_count_workers() -> None:
    now = datetime.now(UTC)
    names = [p.name for p in health_metrics(health_report(now, sent=0))]
    assert names == ["QueueBacklog", "UnknownDeliveries"]
    workers = (WorkerState(name="a", online=True), WorkerState(name="b", online=False))
    online = health_metrics(health_report(now, workers=workers))[-1]
    assert (online.name, online.value) == ("WorkersOnline", 1.0)


def test_install_alarms_is_idempotent_and_pages_the_topic(cloudwatch: Any) -> None:
    topic = boto3.client("sns").create_topic(Name="pager")["TopicArn"]
    settings = Settings(sender="memory", alert_sns_topic_arn=topic)
    assert install_alarms(cloudwatch, settings) == ALARMS
    assert install_alarms(cloudwatch, settings) == ALARMS
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert sorted(alarms) == sorted(ALARMS)
    cost = alarms["RS-Notifications-HighSMSCost"]
    assert (cost["MetricName"], cost["Statistic"], cost["Period"], cost["Threshold"]) == (
        "SMSCost",
        "Maximum",
        3600,
        20.0,
    )
    assert cost["ComparisonOperator"] == "GreaterThanThreshold" and cost["Namespace"] == NAMESPACE
    assert cost["AlarmActions"] == [topic] and cost["ActionsEnabled"]
    assert cost["AlarmDescription"].startswith("SMS cost > $20.00/hour"), "money: two decimals"
    thresholds = {name: a["Threshold"] for name, a in alarms.items()}
    assert thresholds["RS-Notifications-QueueBacklog"] == 1000
    assert thresholds["RS-Notifications-HighErrorRate"] == 10
    assert thresholds["RS-Notifications-HighEmailFailureRate"] == 10
    assert thresholds["RS-Notifications-HighLatency"] == 30
    worker = alarms["RS-Notifications-WorkerDown"]
    assert (worker["ComparisonOperator"], worker["TreatMissingData"]) == (
        "LessThanThreshold",
        "breaching",
    )
    assert worker["Period"] * worker["EvaluationPeriods"] == 600


def test_alarms_without_topic_have_no_actions(cloudwatch: Any) -> None:
    settings = Settings(sender="memory", sms_hourly_alarm_usd="35")
    install_alarms(cloudwatch, settings)
    cost = cloudwatch.describe_alarms(AlarmNames=["RS-Notifications-HighSMSCost"])["MetricAlarms"]
    assert cost[0]["AlarmActions"] == [] and cost[0]["Threshold"] == 35.0
    assert len(runbook_alarms(settings)) == 6


def alarm_reading(client: Any, alarm_name: str, now: datetime) -> float | None:
    """What the alarm compares with its threshold: its metric, under its own statistic and
    period, over the period ending now (moto stores alarms but does not evaluate them)."""
    [alarm] = client.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    stat, period = alarm["Statistic"], alarm["Period"]
    answer = client.get_metric_statistics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Statistics=[stat],
        Period=period,
        StartTime=now - timedelta(seconds=period),
        EndTime=now + timedelta(minutes=5),
    )
    points = answer["Datapoints"]
    return max(point[stat] for point in points) if points else None


def test_two_sms_cost_publishes_in_one_hour_do_not_trip_the_hourly_cost_alarm(
    cloudwatch: Any,
) -> None:
    """Each SMSCost point is already the last hour's spend: summed, a scheduled run and an ad hoc
    `audit sms-cost --publish` of $15 each read $30, over the $20 alarm, and paged on-call for
    an hour that cost $15."""
    settings = Settings(sender="memory")
    install_alarms(cloudwatch, settings)
    now = datetime.now(UTC).replace(microsecond=0)
    for run in (now - timedelta(minutes=20), now):
        publish(cloudwatch, settings, sms_cost_metrics(sms_report(run, "15.00")))
    reading = alarm_reading(cloudwatch, "RS-Notifications-HighSMSCost", now)
    assert reading == pytest.approx(15.0) and reading < 20.0
    publish(cloudwatch, settings, sms_cost_metrics(sms_report(now, "25.00")))
    assert alarm_reading(cloudwatch, "RS-Notifications-HighSMSCost", now) == pytest.approx(25.0)


def test_no_runbook_alarm_sums_a_level_or_a_window_total() -> None:
    """Every metric the alarms watch is a level, a rate or a window's total: a Sum over the
    period counts it once per publish."""
    statistics = {spec.name: spec.statistic for spec in runbook_alarms(Settings(sender="memory"))}
    assert "Sum" not in statistics.values(), statistics
