"""Prefect tasks for the runbook actions: thin adapters over notify.actions, one transaction each.

No retries on the ones that change data: each is one transaction (all or nothing) and idempotent,
so a failed run is simply run again."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from notify.actions.acknowledge import AcknowledgeRequest, AcknowledgeResult, acknowledge_receipts
from notify.actions.audit_trail import Actor
from notify.actions.decide import DecideRequest, DecideResult, decide_unknown
from notify.actions.purge import PurgeRequest, PurgeResult, purge
from notify.actions.redrive import RedriveRequest, RedriveResult, redrive
from notify.actions.suppressions import MuteRequest, MuteResult, UnmuteRequest, UnmuteResult
from notify.actions.suppressions import mute as mute_recipient
from notify.actions.suppressions import unmute as unmute_recipient
from notify.db import transaction, utcnow
from tasks.resources import runtime


@task(name="purge-deliveries", cache_policy=NO_CACHE)
def run_purge(request: PurgeRequest, actor: Actor, apply: bool) -> PurgeResult:
    """Count (apply: purge) stale pending / pending_retry rows."""
    here = runtime()
    with transaction(here.engine()) as session:
        return purge(
            session=session,
            request=request,
            now=utcnow(),
            actor=actor,
            apply=apply,
            catalog=here.catalog(),
        )


@task(name="redrive-deliveries", cache_policy=NO_CACHE)
def run_redrive(request: RedriveRequest, actor: Actor, apply: bool) -> RedriveResult:
    """Count (apply: requeue) failed rows, once per redrive id."""
    here = runtime()
    with transaction(here.engine()) as session:
        return redrive(
            session=session,
            request=request,
            now=utcnow(),
            actor=actor,
            apply=apply,
            catalog=here.catalog(),
        )


@task(name="mute-recipient", cache_policy=NO_CACHE)
def run_mute(request: MuteRequest, actor: Actor, apply: bool) -> MuteResult:
    here = runtime()
    with transaction(here.engine()) as session:
        return mute_recipient(
            session=session,
            request=request,
            now=utcnow(),
            actor=actor,
            fallback=here.fallback_policy(),
            apply=apply,
        )


@task(name="unmute-recipient", cache_policy=NO_CACHE)
def run_unmute(request: UnmuteRequest, actor: Actor, apply: bool) -> UnmuteResult:
    with transaction(runtime().engine()) as session:
        return unmute_recipient(
            session=session, request=request, now=utcnow(), actor=actor, apply=apply
        )


@task(name="decide-unknown", cache_policy=NO_CACHE)
def run_decide(request: DecideRequest, actor: Actor, apply: bool) -> DecideResult:
    """Count (apply: decide) unknown rows, once per decision id."""
    here = runtime()
    with transaction(here.engine()) as session:
        return decide_unknown(
            session=session,
            request=request,
            now=utcnow(),
            actor=actor,
            apply=apply,
            catalog=here.catalog(),
        )


@task(name="acknowledge-receipts", cache_policy=NO_CACHE)
def run_acknowledge(request: AcknowledgeRequest, actor: Actor, apply: bool) -> AcknowledgeResult:
    """Count (apply: acknowledge) tagged receipts that match no row."""
    with transaction(runtime().engine()) as session:
        return acknowledge_receipts(
            session=session, request=request, now=utcnow(), actor=actor, apply=apply
        )
