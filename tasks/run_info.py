"""Which flow run and deployment this code runs under, read from the run's context.

`prefect.runtime.deployment.name` asks the API for the flow run whenever it is called (its own
context lookup misses), so an ad hoc run paid a round trip to learn that it has no deployment;
the run's context already says so."""

from __future__ import annotations

from prefect.context import FlowRunContext
from prefect.runtime import deployment, flow_run

from notify.actions.audit_trail import Actor


def flow_run_id() -> str | None:
    run = flow_run.id
    return str(run) if run else None


def deployment_name() -> str | None:
    """This run's deployment, or None for an ad hoc run (no API call for those)."""
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    if run is not None and run.deployment_id is None:
        return None
    name = deployment.name
    return str(name) if name else None


def run_actor(operator: str | None) -> Actor:
    """Who acts, for the audit trail: this flow run (and its deployment), for `operator`."""
    return Actor.from_flow(
        flow_run_id=flow_run_id(), deployment_name=deployment_name(), operator=operator
    )
