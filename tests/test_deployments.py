"""prefect.yaml is the one list of deployments: every entrypoint imports and is a flow, its
parameters validate, and the UI forms explain themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect import Flow
from prefect.utilities.callables import parameter_schema

from deployments.serve import load_deployments, load_flow, scheduled, to_served
from notify.errors import InputError

SPECS = load_deployments()
EXPECTED = {
    "dispatch-notifications",
    "deliver-pending",
    "sms-cost-audit",
    "loop-detection",
    "failure-summary",
    "health",
    "purge-deliveries",
    "redrive-deliveries",
    "mute-recipient",
    "unmute-recipient",
    "decide-unknown",
    "acknowledge-receipts",
    "receipts",
}
AD_HOC = {
    "dispatch-notifications",
    "purge-deliveries",
    "redrive-deliveries",
    "mute-recipient",
    "unmute-recipient",
    "decide-unknown",
    "acknowledge-receipts",
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
        ("flows/deliver.py:deliver_pending", "DeliverParams"),
        ("flows/monitoring.py:sms_cost_audit_flow", "CheckParams"),
        ("flows/monitoring.py:loop_detection_flow", "LoopParams"),
        ("flows/monitoring.py:failure_summary_flow", "FailureParams"),
        ("flows/monitoring.py:health_flow", "HealthParams"),
        ("flows/actions.py:purge_flow", "PurgeParams"),
        ("flows/actions.py:redrive_flow", "RedriveParams"),
        ("flows/actions.py:mute_flow", "MuteParams"),
        ("flows/actions.py:unmute_flow", "UnmuteParams"),
        ("flows/actions.py:decide_flow", "DecideParams"),
        ("flows/actions.py:acknowledge_flow", "AcknowledgeParams"),
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
        dispatch.validate_parameters({"to": ["t:1"]})
    with pytest.raises(Exception, match="to"):
        dispatch.validate_parameters({"template": "test_message", "to": " "})


def test_the_dispatch_form_refuses_a_blank_key_and_recipients_of_separators_at_submit() -> None:
    """A key of spaces and `to` of only separators passed the form, then the run failed on a
    block of pydantic text ending in a link; the server now refuses them as it validates the
    form (its schema), naming the field, and what only the flow can check is one line."""
    from prefect.utilities.schema_tools import validate

    dispatch = load_flow("flows/dispatch.py:dispatch_notifications")
    schema = parameter_schema(dispatch).model_dump_for_openapi()

    def refused(parameters: dict[str, Any]) -> str:
        errors = validate(parameters, schema, raise_on_error=False, preprocess=True)
        return " ".join(str(error) for error in errors)

    assert "'to'" in refused({"template": "test_message", "to": ", ,"})
    key = {"template": "test_message", "to": "t:1", "idempotency_key": "   "}
    assert "'idempotency_key'" in refused(key)
    assert refused({"template": "test_message", "to": "t:1", "idempotency_key": " k "}) == ""
    with pytest.raises(InputError) as problem:
        dispatch.fn(template="test_message", to="x" * 200)
    assert str(problem.value) == "to.0: String should have at most 128 characters"


def test_the_dispatch_form_an_on_call_engineer_can_fill() -> None:
    """Top-level parameters (a Postgres-backed server keeps only their `position`): template
    chosen from the catalogue, `to` required and pasteable as text or a list, each template's
    variables described, advanced options last."""
    schema = parameter_schema(load_flow("flows/dispatch.py:dispatch_notifications")).model_dump()
    fields = schema["properties"]
    order = sorted(fields, key=lambda name: fields[name]["position"])
    assert order[:2] == ["template", "to"] and schema["required"] == ["template", "to"]
    assert order[-3:] == ["skip_unknown", "deliver", "delivery"]
    assert all(fields[name]["description"] for name in order)
    assert all(fields[name]["description"].startswith("Advanced.") for name in order[-3:])
    assert {"repair_assigned", "test_message"} <= set(fields["template"]["enum"])
    text, listed = fields["to"]["anyOf"]
    assert text["type"] == "string" and text["minLength"] == 1
    assert listed["type"] == "array" and listed["minItems"] == 1
    assert "repair_assigned: repair_id, unit_number" in fields["context"]["description"]
    assert "to_file" not in fields, "a path on the worker's machine is the CLI's business"
    dispatch = load_flow("flows/dispatch.py:dispatch_notifications")
    pasted = dispatch.validate_parameters({"template": "test_message", "to": "t:1,\nt:2"})
    assert pasted["to"] == "t:1,\nt:2", "split by the flow: one text or a list"


def test_the_dispatch_form_does_not_offer_the_deliverers_digest() -> None:
    """The form listed `digest`, which the deliverer makes when quiet hours end: chosen, it sent
    a technician "0 updates from your quiet hours". Internal templates are not offered."""
    schema = parameter_schema(load_flow("flows/dispatch.py:dispatch_notifications")).model_dump()
    fields = schema["properties"]
    assert "digest" not in fields["template"]["enum"]
    assert "repair_assigned" in fields["template"]["enum"]
    assert "digest:" not in fields["context"]["description"]


def test_serve_builds_every_deployment_with_its_schedules_and_a_closed_form() -> None:
    """Served, the ad hoc deployments (dispatch, purge, redrive, mute, unmute) were missing from
    the UI of a one-machine set-up; each form refuses a parameter it does not have."""
    served = [to_served(spec) for spec in SPECS]
    assert {d.name for d in served} == EXPECTED
    assert {d.name for d in served if not d.schedules} == AD_HOC
    for deployment in served:
        schema = deployment._parameter_openapi_schema.model_dump(exclude_unset=True)
        assert schema["additionalProperties"] is False, deployment.name
        assert schema["properties"], deployment.name
    served = [to_served(spec) for spec in scheduled(SPECS)]
    digest = next(d for d in served if d.name == "failure-summary")
    assert len(digest.schedules) == 2
    assert {s.parameters["params"]["digest"] for s in digest.schedules} == {True, False}


@pytest.mark.parametrize("spec", [s for s in SPECS if s["name"] in AD_HOC], ids=lambda s: s["name"])
def test_actions_are_ad_hoc_and_change_data_only_when_asked(spec: dict[str, Any]) -> None:
    assert not spec.get("schedules"), "actions run from the UI or the CLI, never on a schedule"
    schema = parameter_schema(load_flow(spec["entrypoint"])).model_dump()
    for model in schema.get("definitions", {}).values():
        if "apply" in model.get("properties", {}):
            assert model["properties"]["apply"]["default"] is False, "a dry run by default"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///{tmp}/missing.db", "does not exist"),
        ("postgresql+psycopg2://notify@127.0.0.1:1/notifyops", "cannot open the database"),
    ],
)
def test_serve_without_a_usable_database_says_so_and_serves_nothing(
    url: str, expected: str, tmp_path: Path
) -> None:
    """Served, every scheduled run would fail on the database with its traceback, for ever."""
    done = _run_alone(
        [str(Path(sys.executable).parent / "notifyops"), "serve"],
        tmp_path,
        NOTIFY_DATABASE_URL=url.format(tmp=tmp_path),
        NOTIFY_STANDBY="off",
        PREFECT_API_URL="http://127.0.0.1:9/api",  # never reached: it stops before Prefect
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "being served" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "nothing served" in lines[0], lines


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "PREFECT_API_URL is not set: the work pool and the rate limits would be made on a"),
        ({"NOTIFY_SES_RATE": "fast"}, "NOTIFY_SES_RATE='fast'"),
        (
            {"PREFECT_API_URL": "http://127.0.0.1:9/api"},
            "the Prefect API at http://127.0.0.1:9/api did not answer as a Prefect server",
        ),
    ],
    ids=["no server", "bad setting", "server down"],
)
def test_setup_that_cannot_set_up_says_why_in_one_line(
    variables: dict[str, str], expected: str, tmp_path: Path
) -> None:
    """Each printed a traceback (15 to 79 lines); without a server it made the pool and the
    limits on a temporary API, gone when it ended, and exited 0."""
    done = _run_alone(
        [sys.executable, "-m", "deployments.setup"],
        tmp_path,
        NOTIFY_DATABASE_URL=f"sqlite:///{tmp_path}/unused.db",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        **variables,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def _run_alone(command: list[str], tmp_path: Path, **variables: str) -> Any:
    """`command` in `tmp_path` with none of this process's NOTIFY_ or PREFECT_ variables, a
    Prefect home of its own and `variables`; its completed process (output captured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), **variables)
    return subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_a_run_with_a_parameter_its_form_does_not_have_is_refused_at_submit(
    prefect_harness: None,
) -> None:
    """`contxt` for `context`: the server took the run, and the worker's process failed to call
    the flow, so the run ended Crashed under a random name with "Process exited with status code:
    1". `prefect deploy` registers the form open; the set-up closes it (served ones are closed
    before they are registered), and the server refuses the run, naming the key."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    from deployments.forms import close_deployed

    spec = next(s for s in SPECS if s["name"] == "dispatch-notifications")
    flow = load_flow(spec["entrypoint"])
    opened = flow.to_deployment(name="open-form-check")  # as `prefect deploy` registers it
    deployment_id = opened.apply()
    bad = {"template": "test_message", "to": "technician:101", "contxt": {}}
    with get_client(sync_client=True) as client:
        assert close_deployed(client, [(flow.name, "open-form-check")]) == [
            "deployment 'open-form-check': its form now refuses unknown parameters"
        ]
        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(deployment_id, parameters=bad)
        assert refused.value.response.status_code == 409
        assert "contxt" in refused.value.response.text
        assert close_deployed(client, [(flow.name, "open-form-check")]) == [
            "deployment 'open-form-check': its form refuses unknown parameters"
        ]
        assert close_deployed(client, [(flow.name, "never-deployed")]) == [
            "deployment 'never-deployed': not deployed yet (run this again after deploy)"
        ]


def test_a_run_whose_process_died_is_marked_crashed_not_left_running(
    prefect_harness: None,
) -> None:
    """A worker killed mid-run left its run Running for good (8 minutes later and on). The work
    pool's runs send heartbeats, and the set-up creates once the automation that marks a run
    Crashed when they stop."""
    from prefect.client.orchestration import get_client

    from deployments.zombies import HEARTBEAT_VARIABLE, NAME, SILENCE_S, ensure_zombie_automation

    for spec in SPECS:  # every deployment runs on the pool, whose runs send heartbeats
        assert spec["work_pool"]["job_variables"]["env"][HEARTBEAT_VARIABLE] == "30"
    assert ensure_zombie_automation().endswith("created (runs silent for 120 s become Crashed)")
    assert ensure_zombie_automation() == f"automation {NAME!r} exists"
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(name=NAME)
    trigger = automation.trigger.model_dump()
    assert trigger["posture"] == "Proactive" and trigger["after"] == {"prefect.flow-run.heartbeat"}
    assert trigger["within"].total_seconds() == SILENCE_S
    [action] = automation.actions
    assert action.model_dump()["state"] == "CRASHED"


def test_serve_refuses_deployments_a_work_pool_runs_on_the_same_server(
    prefect_harness: None,
) -> None:
    """`notifyops serve` against a server where `prefect deploy` had registered the same
    deployments on the work pool: they kept the pool and lost their code path, and every run it
    took crashed ('FileNotFoundError: .../None'). It now says so and serves nothing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from deployments.serve import on_a_work_pool

    spec = next(s for s in SPECS if s["name"] == "receipts")
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="pool-check", type="process"))
    assert on_a_work_pool([to_served(spec)]) is None  # nothing registered yet
    pooled = load_flow(spec["entrypoint"]).to_deployment(name="receipts")
    deployment_id = pooled.apply(work_pool_name="pool-check")
    try:
        said = on_a_work_pool([to_served(spec)])
    finally:  # the session's server is shared: other tests serve `receipts`
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
            client.delete_work_pool("pool-check")
    assert said is not None and "'receipts/receipts' are registered on the work pool" in said
    assert "'pool-check'" in said and "prefect deployment delete" in said


def test_the_scheduled_checks_that_alert_or_publish_look_at_the_windows_the_live_alerts_own() -> (
    None
):
    """notify.check_params.SCHEDULED_WINDOW_HOURS is the window of every schedule that alerts or
    publishes, so a run like the schedule's can be told from an ad hoc one."""
    from flows.monitoring import CHECK_FLOWS
    from notify.check_params import SCHEDULED_WINDOW_HOURS, ad_hoc_run, check_params

    checks = {flow.name: check for check, flow in CHECK_FLOWS.items()}
    seen = set()
    for spec in SPECS:
        if spec["name"] not in checks:
            continue
        check = checks[spec["name"]]
        for schedule in spec["schedules"]:
            values = {**(spec.get("parameters") or {}), **schedule.get("parameters", {})}
            params = check_params(check).model_validate(values["params"])
            if params.alert or params.publish_metrics:
                assert params.window_hours == SCHEDULED_WINDOW_HOURS[check], spec["name"]
                assert ad_hoc_run(check, window_hours=params.window_hours, as_of=None) is None
                seen.add(check)
    assert seen == set(CHECK_FLOWS)
