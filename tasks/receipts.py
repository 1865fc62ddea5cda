"""Prefect tasks for provider receipts: thin adapters over notify.receipts."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from notify.db import utcnow
from notify.metrics import publish
from notify.receipts import ReceiptsReport, poll_receipts
from notify.receipts.poll import ReceiptsNotSetUp, queue_url, sources_from
from notify.receipts.reputation import ReputationFinding, reputation_metrics
from tasks.resources import runtime


@task(name="poll-receipts", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def poll() -> ReceiptsReport:
    """Drain the SES events queue, read the SMS delivery logs, resolve crash rows, check the
    bounce and complaint rates (pausing email at P1)."""
    current = runtime()
    return poll_receipts(
        engine=current.engine(),
        sources=sources_from(current),
        settings=current.settings,
        clock=utcnow,
        fallback=current.fallback_policy(),
    )


def not_set_up() -> str | None:
    """Why no poll can run yet (`notifyops receipts setup` has not created the SQS queue), or
    None. Not a task: before set-up this is the expected outcome of every scheduled run, not a
    task failure with a traceback (and a retry) each minute; any other error is raised."""
    current = runtime()
    try:
        queue_url(current.aws_client("sqs", retries=True), current.settings.receipts_resources())
    except ReceiptsNotSetUp as missing:
        return str(missing)
    return None


@task(name="publish-reputation", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def publish_reputation(finding: ReputationFinding) -> int:
    """EmailBounceRate and EmailComplaintRate to CloudWatch."""
    current = runtime()
    client = current.aws_client("cloudwatch", retries=True)
    return publish(client, current.settings, reputation_metrics(finding, utcnow()))
