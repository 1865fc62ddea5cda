"""loop-detection (every 15 min): notification loops, who caused them, and an automatic mute."""

from __future__ import annotations

from typing import cast

from prefect import flow

from flows.monitoring import run_check
from flows.params import LoopParams
from notify.audits import LoopReport
from notify.checks import Check
from tasks.resources import settings


@flow(
    name="loop-detection",
    description="The same title to the same recipient and channel more than "
    "NOTIFY_LOOP_THRESHOLD times in 24 h, with the template and flow run that created it; "
    "mutes SMS for it when NOTIFY_LOOP_AUTO_MUTE is on.",
)
def loop_detection(params: LoopParams | None = None) -> LoopReport:
    params = params or LoopParams()
    mute = settings().loop_auto_mute if params.mute is None else params.mute
    return cast(LoopReport, run_check(Check.loops, params, mute=mute))


if __name__ == "__main__":
    print(loop_detection().model_dump_json(indent=2))
