"""Alert routing by severity (default: P1 -> SNS topic (page), P2 -> Slack-compatible webhook,
P3-P4 -> log only; the flow's artifact shows them all). NOTIFY_ALERT_ROUTING changes it, read by
`parse_routing`.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from notify.alerts.store import RESOLVED, AlertNotice
from notify.errors import InputError, provider_text
from notify.settings import ALERT_ROUTES, Settings, routes_by_severity
from notify.severity import Severity

SNS, WEBHOOK, LOG = ALERT_ROUTES
DEFAULT_ROUTES: Mapping[Severity, tuple[str, ...]] = {
    Severity.P1: (SNS, LOG),
    Severity.P2: (WEBHOOK, LOG),
    Severity.P3: (LOG,),
    Severity.P4: (LOG,),
}
ROUTE_FIX = (
    "set NOTIFY_ALERT_SNS_TOPIC_ARN (sns) or NOTIFY_ALERT_WEBHOOK_URL (webhook), or route the "
    "severity elsewhere with NOTIFY_ALERT_ROUTING"
)
SUBJECT_MAX = 100
WEBHOOK_TIMEOUT_S = 5.0
logger = logging.getLogger("notify.alerts")


class AlertRoute(Protocol):
    def send(self, notice: AlertNotice) -> None: ...


class SnsTopicRoute:
    """Publishes to an SNS topic (the pager); `client` is a boto3 SNS client."""

    def __init__(self, client: Any, topic_arn: str) -> None:
        self.client, self.topic_arn = client, topic_arn

    def send(self, notice: AlertNotice) -> None:
        tag = "RESOLVED" if notice.state == RESOLVED else str(notice.severity)
        tag += " ad hoc" if notice.ad_hoc is not None else ""
        subject = f"[{tag}] notifyops {notice.key}"
        subject = subject.encode("ascii", "replace").decode()[:SUBJECT_MAX]
        self.client.publish(TopicArn=self.topic_arn, Subject=subject, Message=notice.text)


class WebhookRoute:
    """POSTs Slack-compatible JSON ({"text": ...}) with urllib."""

    def __init__(self, url: str, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        self.url, self.timeout_s = url, timeout_s

    def send(self, notice: AlertNotice) -> None:
        body = json.dumps({"text": notice.text}).encode()
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()


class LogRoute:
    def __init__(self, log: logging.Logger = logger) -> None:
        self.log = log

    def send(self, notice: AlertNotice) -> None:
        level = logging.ERROR if notice.severity.rank <= 2 else logging.WARNING
        level = logging.INFO if notice.state == RESOLVED else level
        self.log.log(level, "alert %s", notice.text)


def routes_from_settings(settings: Settings, *, sns_client: Any = None) -> dict[str, AlertRoute]:
    """The routes that are configured: sns (topic ARN and a client), webhook (URL), log."""
    routes: dict[str, AlertRoute] = {LOG: LogRoute()}
    if settings.alert_sns_topic_arn and sns_client is not None:
        routes[SNS] = SnsTopicRoute(sns_client, settings.alert_sns_topic_arn)
    if settings.alert_webhook_url:
        routes[WEBHOOK] = WebhookRoute(settings.alert_webhook_url)
    return routes


def parse_routing(text: str) -> dict[Severity, tuple[str, ...]]:
    """'P1=sns,webhook;P2=webhook' -> routing (unnamed severities keep the default)."""
    try:
        return {**DEFAULT_ROUTES, **routes_by_severity(text)}
    except ValueError as error:
        message = f"alert routing: {error}; accepted form P1=sns,webhook;P2=webhook"
        raise InputError(message) from None


@dataclass(frozen=True)
class Delivery:
    route: str
    ok: bool
    error: str | None = None

    @property
    def line(self) -> str:
        """`webhook: ok`, `webhook: route not configured`."""
        return f"{self.route}: {'ok' if self.ok else self.error}"


def unreached(deliveries: Iterable[Delivery]) -> tuple[str, ...]:
    """The routes that failed, each named once (`sns: route not configured`, however many alerts
    failed there; a route that failed in different ways lists each way once)."""
    errors: dict[str, dict[str, None]] = {}
    for delivery in deliveries:
        if not delivery.ok:
            errors.setdefault(delivery.route, {})[str(delivery.error)] = None
    return tuple(f"{route}: {'; '.join(ways)}" for route, ways in errors.items())


def reached(deliveries: Sequence[Delivery]) -> bool:
    """Whether one notice's routes (`dispatch`) reached someone: a route other than the log
    delivered it, or the log was all its severity asks for (P3-P4 by default). The log standing
    in for a route that failed reaches nobody."""
    if any(d.ok and d.route != LOG for d in deliveries):
        return True
    return bool(deliveries) and all(d.ok and d.route == LOG for d in deliveries)


def delivered(deliveries: Iterable[Delivery]) -> tuple[str, ...]:
    """The routes other than the log that delivered a notice, each named once (`sns`)."""
    return tuple(dict.fromkeys(d.route for d in deliveries if d.ok and d.route != LOG))


def nobody_alerted(lines: Sequence[str], delivered_on: Sequence[str] = ()) -> str:
    """One line for failed routes (`unreached`): what failed and the fix; NOBODY WAS ALERTED
    when no other route delivered (`delivered`), else which routes did (the pager may have been
    reached though the chat webhook failed)."""
    failed = ", ".join(lines)
    if delivered_on:
        return (
            f"ALERT ROUTES FAILED ({failed}); the others delivered "
            f"({', '.join(delivered_on)}): {ROUTE_FIX}"
        )
    return f"NOBODY WAS ALERTED ({failed}): {ROUTE_FIX}"


def dispatch(
    notice: AlertNotice,
    *,
    routes: Mapping[str, AlertRoute],
    routing: Mapping[Severity, Sequence[str]] = DEFAULT_ROUTES,
) -> list[Delivery]:
    """Send one notice on every route its severity names; failures are returned, not raised.

    A route that is named but not configured is reported (and the notice still goes to the log);
    so is a severity NOTIFY_ALERT_ROUTING gives no route (`P1=`): its alerts reach nobody."""
    names = route_names(notice, routing)
    results = [_send(name, routes.get(name), notice) for name in names] or [
        Delivery(
            "routing", ok=False, error=f"NOTIFY_ALERT_ROUTING names no route for {notice.severity}"
        )
    ]
    if any(not r.ok for r in results) and LOG not in names and LOG in routes:
        results.append(_send(LOG, routes[LOG], notice))
    return results


def route_names(notice: AlertNotice, routing: Mapping[Severity, Sequence[str]]) -> list[str]:
    """The routes of the notice's severity; a resolution's also those of the highest severity a
    notice of it reached (paged at P1, cleared at P3: the pager hears it is over), each once."""
    severities = [notice.severity]
    if notice.state == RESOLVED and notice.notified_severity is not None:
        severities.append(notice.notified_severity)
    names = [name for severity in severities for name in routing.get(severity, (LOG,))]
    return list(dict.fromkeys(names))


def _send(name: str, route: AlertRoute | None, notice: AlertNotice) -> Delivery:
    """One route's delivery. Whatever it raises (a URLError or 500, but also a webhook answering
    broken HTTP: BadStatusLine, IncompleteRead, InvalidURL, ValueError) is that route's failure,
    reported like a 500: the other routes still fire and the cooldown is still recorded."""
    if route is None:
        return Delivery(name, ok=False, error="route not configured")
    try:
        route.send(notice)
    except Exception as exc:  # any failure of one route is that route's alone
        logger.warning("alert route %s failed for %s: %s", name, notice.key, exc)
        return Delivery(name, ok=False, error=provider_text(f"{type(exc).__name__}: {exc}"))
    return Delivery(name, ok=True)
