"""Alerts: stored (deduplicated, cooled down, auto-resolved) and routed by severity.

A check run: `sync = sync_alerts(session=..., check="health", findings=report.findings, now=...,
cooldown=timedelta(minutes=settings.alert_cooldown_minutes))`, then
`dispatch(notice, routes=routes_from_settings(settings, sns_client=...))` for every notice in
`sync.to_notify + sync.resolved`.
"""

from notify.alerts.routing import (
    DEFAULT_ROUTES,
    LOG,
    ROUTE_FIX,
    SNS,
    WEBHOOK,
    AlertRoute,
    Delivery,
    LogRoute,
    SnsTopicRoute,
    WebhookRoute,
    dispatch,
    nobody_alerted,
    parse_routing,
    routes_from_settings,
    unreached,
)
from notify.alerts.store import (
    OPEN,
    RESOLVED,
    AlertDecision,
    AlertNotice,
    AlertSync,
    raise_or_refresh,
    resolve_cleared,
    sync_alerts,
)

__all__ = [
    "DEFAULT_ROUTES",
    "LOG",
    "OPEN",
    "RESOLVED",
    "ROUTE_FIX",
    "SNS",
    "WEBHOOK",
    "AlertDecision",
    "AlertNotice",
    "AlertRoute",
    "AlertSync",
    "Delivery",
    "LogRoute",
    "SnsTopicRoute",
    "WebhookRoute",
    "dispatch",
    "nobody_alerted",
    "parse_routing",
    "raise_or_refresh",
    "resolve_cleared",
    "routes_from_settings",
    "sync_alerts",
    "unreached",
]
