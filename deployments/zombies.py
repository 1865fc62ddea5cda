"""Runs whose process died show as Crashed, not Running for good.

A worker (or a `notifyops serve`) killed mid-run leaves its run in Running: nothing tells the
server the process is gone, so the UI shows a delivery still under way hours later, while the
next delivery run's rescue has already made the rows it held `unknown`. Deployment runs send a
heartbeat every HEARTBEAT_S (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set for the work pool's runs in
prefect.yaml and by serve); this automation, created once by `python -m deployments.setup` and
by serve, marks a run Crashed when its heartbeats stop for SILENCE_S without a final state. A
command's own runs (`notifyops send`, `deliver`) send no heartbeat (they need none: the command
is there to see), and an automation that waits for a heartbeat first never touches them.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

NAME = "notifyops: crash runs whose heartbeats stopped"
HEARTBEAT_S = 30  # Prefect's smallest
SILENCE_S = 120  # four heartbeats missed
HEARTBEAT_VARIABLE = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
MESSAGE = (
    "Crashed: this run's process stopped sending heartbeats (killed, or its machine died); the "
    "rows it was sending become `unknown` at the next delivery run's rescue (see that run and "
    "`notifyops health`)"
)


def zombie_automation() -> AutomationCore:
    return AutomationCore(
        name=NAME,
        description="Marks a deployment run Crashed when its heartbeats stop",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=SILENCE_S),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=MESSAGE)],
    )


def ensure_zombie_automation() -> str:
    """Create the automation unless one of its name exists; a line saying which."""
    with get_client(sync_client=True) as client:
        if client.read_automations_by_name(name=NAME):
            return f"automation {NAME!r} exists"
        client.create_automation(zombie_automation())
    return f"automation {NAME!r} created (runs silent for {SILENCE_S} s become Crashed)"
