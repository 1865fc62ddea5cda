"""The runbook's resolution steps as flows, run ad hoc from the Prefect UI (no schedules):

    purge-deliveries     stale pending / pending_retry rows become `purged` (dry run by default)
    redrive-deliveries   failed rows back in the queue, once per redrive id (dry run by default)
    mute-recipient       a time-limited suppression of one recipient's channel (dry run by default)
    unmute-recipient     end a recipient's active suppressions (dry run by default)
    decide-unknown       record an `unknown` row as sent or not sent, sending nothing (dry run
                         by default)
    acknowledge-receipts close receipts of ours matching no row once looked into (dry run by
                         default)

Each records who ran it (this flow run and its deployment, plus the form's `operator`) in
`operator_actions`, and leaves an artifact saying what was done and by which run.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.action_params import (
    AcknowledgeParams,
    DecideParams,
    MuteParams,
    PurgeParams,
    RedriveParams,
    UnmuteParams,
)
from flows.naming import rename
from notify.actions.acknowledge import AcknowledgeRequest, AcknowledgeResult
from notify.actions.decide import DecideRequest, DecideResult
from notify.actions.purge import PurgeRequest, PurgeResult
from notify.actions.redrive import RedriveRequest, RedriveResult
from notify.actions.suppressions import MuteRequest, MuteResult, UnmuteRequest, UnmuteResult
from notify.actions.view import action_markdown
from tasks.actions import (
    run_acknowledge,
    run_decide,
    run_mute,
    run_purge,
    run_redrive,
    run_unmute,
)
from tasks.run_info import run_actor

_FORM_ONLY = {"apply", "operator"}


def _artifact(key: str, title: str, body: dict[str, Any], notes: list[str]) -> None:
    """The action's artifact; its title also names the run (runs list: what it did, whether a
    dry run), and a tag says which (`dry-run` or `applied`)."""
    create_markdown_artifact(
        markdown=action_markdown(title, body, notes), key=key, description=title
    )
    rename(title, ["applied" if bool(body.get("applied")) else "dry-run"])


@flow(
    name="purge-deliveries",
    description="Emergency only: mark stale pending / pending_retry rows older than the given "
    "age `purged` (final, never sent), filtered by channel, template, priority, recipient. "
    "A dry run unless `apply`.",
)
def purge_flow(params: PurgeParams) -> PurgeResult:
    request = PurgeRequest.model_validate(params.model_dump(exclude=_FORM_ONLY))
    result = run_purge(request, run_actor(params.operator), params.apply)
    verb = "purged" if result.applied else "would purge (dry run)"
    title = (
        f"Purge: {verb} {result.matched} row(s) created before {result.cutoff:%Y-%m-%d %H:%M} UTC"
    )
    _artifact(
        "purge-deliveries",
        title,
        result.model_dump(mode="json"),
        _by(result.actor, result.action_id),
    )
    get_run_logger().info("%s; operator action %s", title, result.action_id)
    return result


@flow(
    name="redrive-deliveries",
    description="Put failed rows back in the queue, filtered by status, error class and code, "
    "channel, template, recipient and time; `unknown` only with allow_unknown (may send twice), "
    "`failed_permanent` only for named error codes. Once per redrive id. A dry run unless `apply`.",
)
def redrive_flow(params: RedriveParams) -> RedriveResult:
    request = RedriveRequest.model_validate(params.model_dump(exclude=_FORM_ONLY))
    result = run_redrive(request, run_actor(params.operator), params.apply)
    logger = get_run_logger()
    for warning in result.warnings:
        logger.warning(warning)
    verb = "redrove" if result.applied else "would redrive (dry run)"
    count = result.redriven if result.applied else result.matched
    title = f"Redrive {result.redrive_id}: {verb} {count} row(s)"
    notes = [*result.warnings, *_by(result.actor, result.action_id)]
    _artifact("redrive-deliveries", title, result.model_dump(mode="json"), notes)
    logger.info("%s (%d already redriven by this id)", title, result.already_redriven)
    return result


@flow(
    name="mute-recipient",
    description="Suppress one channel of one recipient for some hours (the same records loop "
    "detection's automatic mute writes); the enqueue policy skips a suppressed channel.",
)
def mute_flow(params: MuteParams) -> MuteResult:
    request = MuteRequest.model_validate(params.model_dump(exclude=_FORM_ONLY))
    result = run_mute(request, run_actor(params.operator), params.apply)
    s = result.suppression
    done = "already muted" if not result.created else "muted" if result.applied else "to be muted"
    done += "" if result.applied else " (dry run)"
    title = f"Mute: {request.recipient} {done} on {s.channel} until {s.until:%Y-%m-%d %H:%M} UTC"
    would = "skipped" if result.applied else "to be skipped"
    title += f"; {result.queued_skipped} queued message(s) {would}"
    _artifact(
        "mute-recipient", title, result.model_dump(mode="json"), _by(result.actor, result.action_id)
    )
    get_run_logger().info(title)
    return result


@flow(
    name="unmute-recipient",
    description="End the active suppressions of one recipient (one channel or both, optionally "
    "only one title's loop mute); nothing is deleted.",
)
def unmute_flow(params: UnmuteParams) -> UnmuteResult:
    request = UnmuteRequest.model_validate(params.model_dump(exclude=_FORM_ONLY))
    result = run_unmute(request, run_actor(params.operator), params.apply)
    verb = "lifted" if result.applied else "would be lifted (dry run)"
    title = f"Unmute: {len(result.lifted)} suppression(s) of {request.recipient} {verb}"
    _artifact(
        "unmute-recipient",
        title,
        result.model_dump(mode="json"),
        _by(result.actor, result.action_id),
    )
    get_run_logger().info(title)
    return result


@flow(
    name="decide-unknown",
    description="Record what the provider's logs showed about `unknown` rows, sending nothing: "
    "sent (the row becomes sent) or not_sent (failed, NotSent: redrive it to send). By ids or "
    "filters, with a reason; once per decision id. A dry run unless `apply`.",
)
def decide_flow(params: DecideParams) -> DecideResult:
    request = DecideRequest.model_validate(params.model_dump(exclude=_FORM_ONLY))
    result = run_decide(request, run_actor(params.operator), params.apply)
    verb = "decided" if result.applied else "would decide (dry run)"
    count = result.decided if result.applied else result.matched
    title = f"Decide {result.decision_id}: {verb} {count} unknown row(s) {result.outcome}"
    _artifact(
        "decide-unknown", title, result.model_dump(mode="json"), _by(result.actor, result.action_id)
    )
    get_run_logger().info("%s (%d already decided by this id)", title, result.already_decided)
    return result


@flow(
    name="acknowledge-receipts",
    description="Close receipts carrying our delivery id tag that match no row (health's P1 "
    "data-loss) once looked into: kept, state acknowledged with who and why. A dry run unless "
    "`apply`.",
)
def acknowledge_flow(params: AcknowledgeParams) -> AcknowledgeResult:
    request = AcknowledgeRequest.model_validate(params.model_dump(exclude=_FORM_ONLY))
    result = run_acknowledge(request, run_actor(params.operator), params.apply)
    verb = "acknowledged" if result.applied else "would acknowledge (dry run)"
    count = result.acknowledged if result.applied else result.matched
    title = f"Acknowledge: {verb} {count} receipt(s) with no row"
    _artifact(
        "acknowledge-receipts",
        title,
        result.model_dump(mode="json"),
        _by(result.actor, result.action_id),
    )
    get_run_logger().info(title)
    return result


def _by(actor: str, action_id: int) -> list[str]:
    return [f"run by {actor}; recorded as operator action {action_id}"]
