"""`notifyops demo`: the main job on embedded defaults, end to end.

A SQLite file in the working directory (unless NOTIFY_DATABASE_URL says otherwise), Prefect's
ephemeral API (unless PREFECT_API_URL is set), and moto in this process as the AWS stand-in
(unless AWS_ENDPOINT_URL is set): import a roster with a few bad rows, send a batch through the
dispatch-notifications flow, deliver it through SES and SNS, and show what happened.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from sqlalchemy import func, select

from notify.commands.flowrun import run_flow
from notify.console import out, table
from notify.database import open_database
from notify.db import DeliveryLog, Notification, transaction
from notify.migrate import upgrade_database
from notify.recipients import upsert_recipients
from notify.rendering import TemplateCatalog
from notify.roster import ParsedRoster, parse_roster_file
from notify.settings import SenderKind, Settings, get_settings
from notify.standin import LocalAws, start_local_aws, verify_sender

SAMPLE_ROSTER = Path(__file__).resolve().parents[1] / "samples" / "roster.csv"
WHY = (DeliveryLog.channel, DeliveryLog.status, DeliveryLog.decision, DeliveryLog.error_code)
DEMO_SENDS = (("repair_assigned", None), ("daily_schedule", None))


def demo(
    roster: Path = typer.Option(SAMPLE_ROSTER, help="Recipient file (CSV or JSON Lines)."),
) -> None:
    """Import a roster, send a batch through the dispatch flow, deliver it, show the outcome."""
    settings = get_settings()
    revision = upgrade_database(settings.database_url)
    out.print(f"database {settings.masked()['database_url']} (schema {revision})")
    aws = _aws_stand_in(settings)
    try:
        parsed = _import(roster, settings)
        recipients = [row.external_id for row in parsed.rows]
        request_ids = [_send(template, recipients, settings) for template, _ in DEMO_SENDS]
        _show(settings, request_ids, aws)
    finally:
        if aws is not None:
            aws.stop()


def _aws_stand_in(settings: Settings) -> LocalAws | None:
    if settings.sender is SenderKind.memory or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    aws = start_local_aws(settings.aws_region)
    verify_sender(settings.email_from, settings.aws_region)
    out.print(f"local AWS stand-in (moto) at {aws.url}; sender {settings.email_from} verified")
    return aws


def _import(roster: Path, settings: Settings) -> ParsedRoster:
    parsed = parse_roster_file(roster)
    with transaction(open_database(settings)) as session:
        counts = upsert_recipients(session=session, rows=parsed.rows)
    out.print(
        f"roster {roster.name}: {parsed.total} rows, {counts.created} new, {counts.updated} "
        f"updated, {len(parsed.errors)} rejected"
    )
    for error in parsed.errors:
        out.print(f"  line {error.line} {error.column}: {error.reason}", markup=False)
    return parsed


def _send(template: str, recipients: list[str], settings: Settings) -> str:
    context = TemplateCatalog(settings.templates_dir).info(template).sample_context
    request = {"template": template, "to": recipients, "context": context}
    summary = run_flow("flows.dispatch", "dispatch_notifications", request=request)
    out.print(f"flow dispatch-notifications: {template} to {len(recipients)} recipients")
    return str(summary.enqueue.request_id)


def _show(settings: Settings, request_ids: list[str], aws: LocalAws | None) -> None:
    query = (
        select(*WHY, func.count())
        .join(Notification, Notification.id == DeliveryLog.notification_id)
        .where(Notification.request_id.in_(request_ids))
        .group_by(*WHY)
        .order_by(DeliveryLog.channel, DeliveryLog.status, func.count().desc())
    )
    with transaction(open_database(settings)) as session:
        rows = [(c, s, n, d, e or "") for c, s, d, e, n in session.execute(query)]
    columns = ["channel", "status", "rows", "decision", "provider error"]
    out.print(table("What happened, per channel and status", columns, rows))
    if aws is not None:
        received = aws.sent()
        out.print(f"the AWS stand-in received {received['email']} emails and {received['sms']} SMS")
