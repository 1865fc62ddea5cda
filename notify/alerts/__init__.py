"""Alerts: stored (deduplicated, cooled down, auto-resolved) and routed by severity.

A check run: `sync = sync_alerts(session=..., check="health", findings=report.findings, now=...,
cooldown=timedelta(minutes=settings.alert_cooldown_minutes))`, then
`dispatch(notice, routes=routes_from_settings(settings, sns_client=...))` for every notice in
`sync.to_notify + sync.resolved`, then `record_notices(session=..., reached={key: reached(...)},
now=...)`: the cooldown starts only for an alert that reached someone.
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
    delivered,
    dispatch,
    nobody_alerted,
    parse_routing,
    reached,
    routes_from_settings,
    unreached,
)
from notify.alerts.store import (
    AD_HOC,
    OPEN,
    RESOLVED,
    AlertDecision,
    AlertNotice,
    AlertSync,
    ad_hoc_notice,
    raise_or_refresh,
    record_notices,
    resolve_cleared,
    sync_alerts,
    unstored_notice,
)

__all__ = [
    "AD_HOC",
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
    "ad_hoc_notice",
    "delivered",
    "dispatch",
    "nobody_alerted",
    "parse_routing",
    "raise_or_refresh",
    "reached",
    "record_notices",
    "resolve_cleared",
    "routes_from_settings",
    "sync_alerts",
    "unreached",
    "unstored_notice",
]
