"""prefect.yaml is the one list of deployments: every entrypoint imports and is a flow, its
parameters validate, and the UI forms explain themselves."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import Flow
from prefect.utilities.callables import parameter_schema

from deployments.serve import load_deployments, load_flow, scheduled, to_served

SPECS = load_deployments()
EXPECTED = {
    "dispatch-notifications",
    "deliver-pending",
    "sms-cost-audit",
    "loop-detection",
    "failure-summary",
    "health",
    "receipts",
}


def test_every_deployment_is_listed() -> None:
    assert {spec["name"] for spec in SPECS} == EXPECTED
    assert all(spec["work_pool"]["name"] == "notifyops" for spec in SPECS)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
def test_entrypoint_is_a_flow_whose_parameters_validate(spec: dict[str, Any]) -> None:
    flow = load_flow(spec["entrypoint"])
    assert isinstance(flow, Flow)
    assert flow.name == spec["name"]
    assert spec.get("description")
    if spec.get("schedules"):  # scheduled runs start with these parameters and nothing else
        flow.validate_parameters(spec.get("parameters") or {})
    for schedule in spec.get("schedules", []):
        flow.validate_parameters(
            {**(spec.get("parameters") or {}), **schedule.get("parameters", {})}
        )


def _properties(schema: dict[str, Any], model: str) -> dict[str, Any]:
    return schema["definitions"][model]["properties"]


@pytest.mark.parametrize(
    ("entrypoint", "model"),
    [
        ("flows/dispatch.py:dispatch_notifications", "DispatchParams"),
        ("flows/deliver.py:deliver_pending", "DeliverParams"),
        ("flows/monitoring.py:sms_cost_audit_flow", "CheckParams"),
        ("flows/monitoring.py:loop_detection_flow", "LoopParams"),
        ("flows/monitoring.py:failure_summary_flow", "FailureParams"),
        ("flows/monitoring.py:health_flow", "CheckParams"),
    ],
)
def test_parameter_forms_have_descriptions_and_bounds(entrypoint: str, model: str) -> None:
    schema = parameter_schema(load_flow(entrypoint)).model_dump()
    fields = _properties(schema, model)
    assert fields and all(field.get("description") for field in fields.values())
    if "window_hours" in fields:
        assert fields["window_hours"]["exclusiveMinimum"] == 0
    if "batch_size" in fields:
        assert fields["batch_size"]["anyOf"][0]["maximum"] == 50_000


def test_bad_parameters_are_refused_with_the_field_named() -> None:
    flow = load_flow("flows/monitoring.py:sms_cost_audit_flow")
    with pytest.raises(Exception, match="window_hours"):
        flow.validate_parameters({"params": {"window_hours": -1}})
    dispatch = load_flow("flows/dispatch.py:dispatch_notifications")
    with pytest.raises(Exception, match="template"):
        dispatch.validate_parameters({"request": {"to": ["t:1"]}})


def test_serve_builds_every_scheduled_deployment_with_its_schedules() -> None:
    served = [to_served(spec) for spec in scheduled(SPECS)]
    assert {d.name for d in served} == EXPECTED - {"dispatch-notifications"}
    digest = next(d for d in served if d.name == "failure-summary")
    assert len(digest.schedules) == 2
    assert {s.parameters["params"]["digest"] for s in digest.schedules} == {True, False}
