"""CloudWatch: the audits' numbers as custom metrics, and the runbook's alarms on them.

Metrics (namespace settings.cloudwatch_namespace, no dimensions, as the runbook queries them):
SMSCost (USD spent in the last hour: each publish is already an hour's total, and a `--publish` like
the schedule's or a late scheduled run adds a second point to the same hour), DeliveryLatency and
DeliveryLatencyP95 (seconds), EmailFailureRate, SmsFailureRate and ErrorRate (percent, 0-100),
QueueBacklog, UnknownDeliveries and WorkersOnline (counts; WorkersOnline comes from the flow
layer, which sees Prefect). The alarms read these: the scheduled runs' (the present over the
scheduled window). An ad hoc run's (another window, a look back) carry the dimension Run=ad-hoc,
another metric to CloudWatch, which no alarm reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notify.audits import FailureReport, HealthReport, SmsCostReport
from notify.check_params import AD_HOC_DIMENSION
from notify.money import usd
from notify.settings import Settings
from notify.severity import RUNBOOK

ALARM_PREFIX = "RS-Notifications-"
WORKER_DOWN = "WorkerDown"  # needs a work pool: without one health publishes no WorkersOnline
BATCH = 20  # metric data per put_metric_data call (the oldest documented limit)
PERCENT = 100


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    unit: str  # CloudWatch StandardUnit
    timestamp: datetime

    def datum(self) -> dict[str, Any]:
        return {
            "MetricName": self.name,
            "Value": self.value,
            "Unit": self.unit,
            "Timestamp": self.timestamp,
        }


def sms_cost_metrics(report: SmsCostReport) -> list[MetricPoint]:
    return [MetricPoint("SMSCost", float(report.last_hour_cost_usd), "None", report.as_of)]


def failure_metrics(report: FailureReport) -> list[MetricPoint]:
    at = report.as_of
    return [
        MetricPoint("EmailFailureRate", report.email_error_rate * PERCENT, "Percent", at),
        MetricPoint("SmsFailureRate", report.sms_error_rate * PERCENT, "Percent", at),
        MetricPoint("ErrorRate", report.error_rate * PERCENT, "Percent", at),
    ]


def health_metrics(report: HealthReport) -> list[MetricPoint]:
    """Backlog and unknown whenever the database was read (with it out of reach they are unknown:
    no point, rather than a 0 that reads as an empty queue); latency only when something was sent
    in the window."""
    at = report.as_of
    points: list[MetricPoint] = []
    if report.backlog is not None:
        points.append(MetricPoint("QueueBacklog", float(report.backlog), "Count", at))
    if report.unknown is not None:
        points.append(MetricPoint("UnknownDeliveries", float(report.unknown), "Count", at))
    if report.sent_in_window and report.avg_latency_s is not None:
        points.append(MetricPoint("DeliveryLatency", report.avg_latency_s, "Seconds", at))
    if report.sent_in_window and report.p95_latency_s is not None:
        points.append(MetricPoint("DeliveryLatencyP95", report.p95_latency_s, "Seconds", at))
    if report.workers is not None:
        online = sum(1 for worker in report.workers if worker.online)
        points.append(MetricPoint("WorkersOnline", float(online), "Count", at))
    return points


def publish(
    client: Any, settings: Settings, points: Iterable[MetricPoint], *, ad_hoc: bool = False
) -> int:
    """put_metric_data in batches; returns how many points were sent (0 when disabled). An ad hoc
    run's points carry the dimension Run=ad-hoc: the alarms, which read the metrics without
    dimensions, do not see them."""
    if not settings.cloudwatch_enabled:
        return 0
    data = [point.datum() for point in points]
    if ad_hoc:
        data = [{**datum, "Dimensions": [dict(AD_HOC_DIMENSION)]} for datum in data]
    for start in range(0, len(data), BATCH):
        batch = data[start : start + BATCH]
        client.put_metric_data(Namespace=settings.cloudwatch_namespace, MetricData=batch)
    return len(data)


@dataclass(frozen=True)
class AlarmSpec:
    """One runbook alarm: `<metric> <statistic over period> <comparison> <threshold>`."""

    name: str
    metric: str
    statistic: str
    period_s: int
    threshold: float
    description: str
    comparison: str = "GreaterThanThreshold"
    evaluation_periods: int = 1
    missing_data: str = "notBreaching"


def runbook_alarms(settings: Settings, *, work_pool: bool = True) -> list[AlarmSpec]:
    """The runbook's alarms, thresholds from settings and the escalation table; WorkerDown only
    with a work pool (`work_pool`): without one (`notifyops serve`) no WorkersOnline is ever
    published and the alarm, missing data breaching, would page for ever.

    No alarm sums: every metric is a level or a window's figure (a rate, a last-hour total, a
    backlog, a count online), so two publishes in one period (a `--publish` like the schedule's,
    a late scheduled run) must not add up. Rates and latency are averaged, levels and totals
    take the period's Maximum."""
    alarms = _alarms(settings)
    return [spec for spec in alarms if work_pool or spec.name != WORKER_DOWN]


def _alarms(settings: Settings) -> list[AlarmSpec]:
    rate = RUNBOOK.failure_rate_high * PERCENT
    return [
        AlarmSpec(
            "HighEmailFailureRate",
            "EmailFailureRate",
            "Average",
            3600,
            rate,
            "Email failure rate > 10% (runbook section 1: emails not sending)",
        ),
        AlarmSpec(
            "HighSMSCost",
            "SMSCost",
            "Maximum",  # already the last hour's total: summed, two runs in one hour double it
            3600,
            float(settings.sms_hourly_alarm_usd),
            f"SMS cost > {usd(settings.sms_hourly_alarm_usd)}/hour (runbook section 2)",
        ),
        AlarmSpec(
            "QueueBacklog",
            "QueueBacklog",
            "Maximum",
            300,
            float(RUNBOOK.backlog_alarm),
            "More than 1,000 notifications due and pending (runbook section 4)",
        ),
        AlarmSpec(
            "HighErrorRate",
            "ErrorRate",
            "Average",
            3600,
            rate,
            "Delivery error rate > 10% (runbook section 5)",
        ),
        AlarmSpec(
            "HighLatency",
            "DeliveryLatency",
            "Average",
            300,
            RUNBOOK.latency_alarm_s,
            "Average delivery latency > 30 s (runbook section 6)",
        ),
        AlarmSpec(
            WORKER_DOWN,
            "WorkersOnline",
            "Maximum",
            300,
            1.0,
            "No Prefect worker online for 10 minutes, or no health report (section 3)",
            comparison="LessThanThreshold",
            evaluation_periods=2,
            missing_data="breaching",
        ),
    ]


def install_alarms(client: Any, settings: Settings, *, work_pool: bool = True) -> list[str]:
    """Create or update (put_metric_alarm is idempotent by name) every runbook alarm (WorkerDown
    only with a work pool); the alarm actions page the SNS topic when
    settings.alert_sns_topic_arn is set. Returns the names."""
    actions = [settings.alert_sns_topic_arn] if settings.alert_sns_topic_arn else []
    names = []
    for spec in runbook_alarms(settings, work_pool=work_pool):
        client.put_metric_alarm(**_alarm_request(spec, settings.cloudwatch_namespace, actions))
        names.append(ALARM_PREFIX + spec.name)
    return names


def remove_worker_alarm(client: Any) -> bool:
    """Delete WorkerDown if an earlier install made it (it pages for ever without a work pool);
    whether there was one."""
    name = ALARM_PREFIX + WORKER_DOWN
    if not client.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
        return False
    client.delete_alarms(AlarmNames=[name])
    return True


def _alarm_request(spec: AlarmSpec, namespace: str, actions: Sequence[str]) -> dict[str, Any]:
    return {
        "AlarmName": ALARM_PREFIX + spec.name,
        "AlarmDescription": spec.description,
        "Namespace": namespace,
        "MetricName": spec.metric,
        "Statistic": spec.statistic,
        "Period": spec.period_s,
        "EvaluationPeriods": spec.evaluation_periods,
        "Threshold": spec.threshold,
        "ComparisonOperator": spec.comparison,
        "TreatMissingData": spec.missing_data,
        "ActionsEnabled": bool(actions),
        "AlarmActions": list(actions),
        "OKActions": list(actions),
    }
