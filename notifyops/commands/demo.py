"""`notifyops demo`: the main job on embedded defaults, end to end.

A SQLite file in the working directory (unless NOTIFY_DATABASE_URL says otherwise), Prefect's
ephemeral API (unless PREFECT_API_URL is set), and moto in this process as the AWS stand-in
(unless AWS_ENDPOINT_URL is set): import a roster with a few bad rows, send a batch through the
dispatch-notifications flow, deliver it through SES and SNS, and show what happened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from notifyops.console import out, table

if TYPE_CHECKING:
    from notify.bootstrap import Runtime
    from notify.roster import ParsedRoster
    from notify.standin import LocalAws

SAMPLE_ROSTER = Path(__file__).resolve().parents[2] / "notify" / "samples" / "roster.csv"
DEMO_TEMPLATES = ("repair_assigned", "daily_schedule")


def demo(
    roster: Path = typer.Option(SAMPLE_ROSTER, help="Recipient file (CSV or JSON Lines)."),
) -> None:
    """Import a roster, send a batch through the dispatch flow, deliver it, show the outcome."""
    from notify.bootstrap import runtime
    from notify.migrate import upgrade_database

    here = runtime()
    settings = here.settings
    revision = upgrade_database(settings.database_url)
    out.print(f"database {settings.masked()['database_url']} (schema {revision})")
    aws = _aws_stand_in(here)
    try:
        parsed = _import(roster, here)
        recipients = [row.external_id for row in parsed.rows]
        if not recipients:
            from notify.errors import InputError

            raise InputError(
                f"--roster {roster.name}: no valid row to send to ({len(parsed.errors)} "
                "rejected, listed above): fix them, or give another roster"
            )
        request_ids = [_send(template, recipients, here) for template in DEMO_TEMPLATES]
        _show(here, request_ids, aws)
    finally:
        if aws is not None:
            aws.stop()


def _aws_stand_in(here: Runtime) -> LocalAws | None:
    from notify.settings import SenderKind
    from notify.standin import start_local_aws, verify_sender

    settings = here.settings
    if settings.sender is SenderKind.memory or os.environ.get("AWS_ENDPOINT_URL"):
        return None
    aws = start_local_aws(settings.aws_region)
    verify_sender(here.aws_client("ses", retries=True), settings.sender_address())
    out.print(f"local AWS stand-in (moto) at {aws.url}; sender {settings.email_from} verified")
    return aws


def _import(roster: Path, here: Runtime) -> ParsedRoster:
    from notify.db import transaction
    from notify.recipients import upsert_recipients
    from notify.roster import parse_roster_file

    parsed = parse_roster_file(roster)
    with transaction(here.engine()) as session:
        counts = upsert_recipients(session=session, rows=parsed.rows)
    out.print(
        f"roster {roster.name}: {parsed.total} rows, {counts.created} new, {counts.updated} "
        f"updated, {len(parsed.errors)} rejected"
    )
    for error in parsed.errors:
        out.print(f"  line {error.line} {error.column}: {error.reason}")
    return parsed


def _send(template: str, recipients: list[str], here: Runtime) -> str:
    from flows.dispatch import dispatch_notifications
    from flows.params import DispatchParams
    from flows.states import result_of
    from notifyops.prefect_env import run_flow

    context = here.catalog().info(template).sample_context
    request = DispatchParams(template=template, to=recipients, context=context)
    state = run_flow(
        dispatch_notifications,
        warm_senders=True,
        return_state=True,
        **request.flow_parameters(),
    )
    summary = result_of(state)
    out.print(f"flow dispatch-notifications: {template} to {len(recipients)} recipients")
    return str(summary.enqueue.request_id)


def _show(here: Runtime, request_ids: list[str], aws: LocalAws | None) -> None:
    from sqlalchemy import func, select

    from notify.db import DeliveryLog, Notification, transaction

    why = (DeliveryLog.channel, DeliveryLog.status, DeliveryLog.decision, DeliveryLog.error_code)
    query = (
        select(*why, func.count())
        .join(Notification, Notification.id == DeliveryLog.notification_id)
        .where(Notification.request_id.in_(request_ids))
        .group_by(*why)
        .order_by(DeliveryLog.channel, DeliveryLog.status, func.count().desc())
    )
    with transaction(here.engine()) as session:
        rows = [(c, s, n, d, e or "") for c, s, d, e, n in session.execute(query)]
    columns = ["channel", "status", "rows", "decision", "provider error"]
    out.print(table("What happened, per channel and status", columns, rows))
    if aws is not None:
        received = aws.sent()
        out.print(f"the AWS stand-in received {received['email']} emails and {received['sms']} SMS")
