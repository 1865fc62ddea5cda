"""Prefect tasks for dispatch and delivery: thin adapters over notify/ (a task handles a batch),
and the delivery run's bookkeeping steps, which run in the flow (`retried`).

Their pieces (engine, templates, senders, pacers) come from the process's runtime
(notify.bootstrap), built once per process; their inputs are small values."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.runtime import task_run

from notify.db import database_unavailable, transaction, utcnow
from notify.delivery import BatchReport, Deliverer
from notify.digest import DigestsWhileClaiming, Gathered, follow_digests, gather_digests
from notify.due import has_work
from notify.enqueue import Attribution, EnqueueResult, SendRequest, enqueue
from notify.errors import NotifyError
from notify.outbox import Leftovers, RescueCounts, leftovers, waiting_later
from notify.recheck import Rechecked, recheck_queued
from notify.request_report import RequestReport, request_report
from notify.summaries import DeliverySummary
from tasks.resources import pacers, runtime, worker_name


def _retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """Bad input (unknown template, missing variable) fails at once; the rest is retried."""
    try:
        state.result()
    except NotifyError:
        return False
    except Exception:
        return True
    return True


STEP_ATTEMPTS = 3
STEP_RETRY_DELAY_S = 5.0

Value = TypeVar("Value")


def retried(name: str, step: Callable[[], Value], *, delay_s: float = STEP_RETRY_DELAY_S) -> Value:
    """A delivery run's bookkeeping step (rescue and digests before the first claim; leftovers
    and the request's rows after the last outcome), run in the flow rather than as a task run:
    each task run costs the Prefect server 25-75 ms of CPU to record (measured on 2 cores), beside
    the run's own work, and these add nothing to watch in the UI that the run's summary and
    artifact do not show. Retried as their tasks were (STEP_ATTEMPTS attempts, STEP_RETRY_DELAY_S
    apart), but on a lost, refused or busy database only (`notify.db.database_unavailable`): any
    other error is a defect, shown at once."""
    for attempt in range(1, STEP_ATTEMPTS + 1):
        try:
            return step()
        except Exception as error:  # database_unavailable says which errors are retried
            if attempt == STEP_ATTEMPTS or not database_unavailable(error):
                raise
            cause = getattr(error, "orig", None) or error  # the driver's error, when it has one
            _run_logger().warning(
                "%s: the database failed (%s); trying again in %g s (attempt %d of %d)",
                name,
                type(cause).__name__,
                delay_s,
                attempt + 1,
                STEP_ATTEMPTS,
            )
            time.sleep(delay_s)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger (its logs in the UI), or this module's outside a run."""
    try:
        return cast(logging.LoggerAdapter[logging.Logger], get_run_logger())
    except MissingContextError:
        return logging.getLogger(__name__)


@task(
    name="enqueue-notifications",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_unless_bad_input,
)
def enqueue_notifications(
    request: SendRequest, attribution: Attribution, part: tuple[int, int] | None = None
) -> EnqueueResult:
    """Render, decide and store a request, or the `part` (start, stop) of a keyed one, in one
    transaction (idempotent on its key: a retried part stores only what it had not stored)."""
    here = runtime()
    with transaction(here.engine()) as session:
        return enqueue(
            session=session,
            request=request,
            catalog=here.catalog(),
            settings=here.settings,
            now=utcnow(),
            attribution=attribution,
            part=range(*part) if part else None,
        )


@dataclass(frozen=True)
class Prepared:
    """What a delivery run did before its first claim."""

    rescued: RescueCounts
    gathered: Gathered
    rechecked: Rechecked


def prepare_delivery() -> Prepared:
    """Before any claim (a carried row is never due): expired claims back to pending, expired
    in-flight rows to unknown; due rows of a channel the recipient turned off or that a
    suppression now stops are skipped, due SMS inside the recipient's quiet hours are held to
    the window's end (notify.recheck); carried rows take their digest's outcome;
    the rows quiet hours held back for one recipient and channel, due now, become one digest row
    (unless NOTIFY_QUIET_HOURS_DIGEST is off). Idempotent, safe beside other deliverers. A step of
    the delivery run, not a task run (see `retried`)."""
    return retried("prepare-delivery", _prepare)


def _prepare() -> Prepared:
    # a deliverer: building it builds the senders and pacers the batches need, beside the
    # enqueue rather than in the first batch (a deployment run has no command to warm them)
    returned, unknown = deliverer("rescue").rescue()
    here = runtime()
    with transaction(here.engine()) as session:  # before the digests: none carries such a row
        rechecked = recheck_queued(
            session.connection(),
            now=utcnow(),
            fallback=here.fallback_policy(),
            settings=here.settings,
        )
    if rechecked.skipped:
        _run_logger().info(
            "skipped %d queued row(s) the recipient no longer wants: %d turned off in "
            "preferences, %d address removed, %d muted (%d email fallback(s))",
            rechecked.skipped,
            rechecked.turned_off,
            rechecked.unaddressed,
            rechecked.muted,
            rechecked.fallbacks,
        )
    if rechecked.readdressed:
        _run_logger().info(
            "%d queued row(s) go to their recipient's new phone number or email address",
            rechecked.readdressed,
        )
    if rechecked.held:
        _run_logger().info(
            "held back %d due SMS inside their recipient's quiet hours until the window ends",
            rechecked.held,
        )
    follow_digests(engine=here.engine(), now=utcnow())
    gathered = Gathered()
    if here.settings.quiet_hours_digest:
        gathered = gather_digests(
            engine=here.engine(), catalog=here.catalog(), settings=here.settings, now=utcnow()
        )
    return Prepared(RescueCounts(returned, unknown), gathered, rechecked)


@task(name="deliver-batch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def deliver_batch(owner_suffix: str, limit: int, skip: list[str] | None = None) -> BatchReport:
    """Claim up to `limit` due rows and deliver them, leaving the `skip` channels' rows queued
    (channels an earlier batch of the run stopped). A retried attempt is another lease owner,
    so it never keeps the failed attempt's rows alive with its heartbeat."""
    attempt = task_run.run_count or 1
    return deliverer(f"{owner_suffix}#{attempt}").deliver_batch(limit, skip or ())


@dataclass(frozen=True)
class Finished:
    """What a delivery run left, and a dispatch's own rows once every outcome is in."""

    left: Leftovers
    request: RequestReport | None = None


def finish_delivery(run_tag: str, follow: bool, request_id: str | None = None) -> Finished:
    """Rows a digest carries take the outcome this run gave the digest row (when `follow`); then
    rows still due, rows this run's batches still hold (a batch died), `unknown` rows; and, for
    a dispatch (`request_id`), its request's own rows. A step of the delivery run, not a task
    run (see `retried`)."""
    return retried("finish-delivery", lambda: _finish(run_tag, follow, request_id))


def _finish(run_tag: str, follow: bool, request_id: str | None) -> Finished:
    if follow:
        follow_digests(engine=runtime().engine(), now=utcnow())
    with transaction(runtime().engine()) as session:
        left = leftovers(session=session, run_tag=run_tag, now=utcnow())
        own = request_report(session=session, request_id=request_id) if request_id else None
    return Finished(left, own)


def deliverer(owner_suffix: str) -> Deliverer:
    here = runtime()
    return Deliverer(
        engine=here.engine(),
        senders=here.senders(),
        settings=here.settings,
        owner=worker_name(owner_suffix),
        clock=utcnow,
        pacers=pacers(),
        fallback=here.fallback_policy(),
        interrupted=here.interrupted,
        digests=(
            DigestsWhileClaiming(here.catalog(), here.settings)
            if here.settings.quiet_hours_digest
            else None
        ),
    )


@task(name="request-rows", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def request_rows(request_id: str) -> RequestReport:
    """The request's own delivery rows by channel, status, decision and deliverer (a dispatch
    that delivers reads them in `finish-delivery`)."""
    with transaction(runtime().engine()) as session:
        return request_report(session=session, request_id=request_id)


def idle() -> DeliverySummary | None:
    """Nothing due and no lease expired: what an idle run reports (the rows waiting for a later
    time), else None. Two indexed queries, no task run (the cheap path of a scheduled
    deliver-pending)."""
    now = utcnow()
    with transaction(runtime().engine()) as session:
        if has_work(session=session, now=now):
            return None
        waiting, first = waiting_later(session=session, now=now)
    return DeliverySummary(waiting_later=waiting, next_due_at=first)
