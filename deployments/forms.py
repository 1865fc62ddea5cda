"""Deployment forms that refuse a parameter they do not have.

Prefect builds a deployment's parameter schema from the flow's signature without
`additionalProperties: false`, so the server takes a run with a misspelt top-level parameter
(`contxt`, `parms`): the worker's process then fails to call the flow before the run starts and
the run ends Crashed ("Process exited with status code: 1"), under a random name, the cause only
in the worker's log. With the schema closed, the server refuses such a run at submit (409),
naming the key, as it already refuses an unknown key inside `params` or `delivery`.

`prefect deploy` writes the schema as Prefect builds it, so `python -m deployments.setup` closes
the schemas of the deployments already registered (run it again after `prefect deploy`);
`notifyops serve` closes those it serves before registering them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.exceptions import ObjectNotFound
from prefect.utilities.callables import ParameterSchema
from pydantic import ConfigDict


class _ClosedSchema(ParameterSchema):
    """Prefect's parameter schema with `additionalProperties` kept (its model drops unknown
    keys, and this is the one it needs)."""

    model_config = ConfigDict(extra="allow")


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, refusing properties it does not name."""
    return {**schema, "additionalProperties": False}


def close_served(deployment: Any) -> Any:
    """A deployment `notifyops serve` registers (a RunnerDeployment), its form closed."""
    schema = deployment._parameter_openapi_schema.model_dump(exclude_unset=True)
    deployment._parameter_openapi_schema = _ClosedSchema(**closed(schema))
    return deployment


def close_deployed(client: SyncPrefectClient, names: Sequence[tuple[str, str]]) -> list[str]:
    """For each (flow name, deployment name) registered, its form closed; a line each."""
    done = []
    for flow_name, name in names:
        try:
            deployment = client.read_deployment_by_name(f"{flow_name}/{name}")
        except ObjectNotFound:
            done.append(f"deployment {name!r}: not deployed yet (run this again after deploy)")
            continue
        schema = dict(deployment.parameter_openapi_schema or {})
        if schema.get("additionalProperties") is False:
            done.append(f"deployment {name!r}: its form refuses unknown parameters")
            continue
        client.update_deployment(
            deployment.id, DeploymentUpdate(parameter_openapi_schema=closed(schema))
        )
        done.append(f"deployment {name!r}: its form now refuses unknown parameters")
    return done
