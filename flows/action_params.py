"""Parameter forms of the runbook action flows: the library's requests plus what a UI run adds
(`apply`, off by default: every action form is a dry run until ticked, and the operator's name
for the audit trail)."""

from __future__ import annotations

from pydantic import Field

from notify.actions.acknowledge import AcknowledgeRequest
from notify.actions.decide import DecideRequest
from notify.actions.purge import PurgeRequest
from notify.actions.redrive import RedriveRequest
from notify.actions.suppressions import MuteRequest, UnmuteRequest

OPERATOR = Field(None, max_length=100, description="Your name, recorded in the audit trail")


class PurgeParams(PurgeRequest):
    apply: bool = Field(False, description="Purge for real (off: a dry run that only counts)")
    operator: str | None = OPERATOR


class RedriveParams(RedriveRequest):
    apply: bool = Field(False, description="Redrive for real (off: a dry run that only counts)")
    operator: str | None = OPERATOR


class MuteParams(MuteRequest):
    apply: bool = Field(False, description="Mute for real (off: say what would be muted)")
    operator: str | None = OPERATOR


class UnmuteParams(UnmuteRequest):
    apply: bool = Field(False, description="Unmute for real (off: list what would be lifted)")
    operator: str | None = OPERATOR


class DecideParams(DecideRequest):
    apply: bool = Field(False, description="Decide for real (off: a dry run that only counts)")
    operator: str | None = OPERATOR


class AcknowledgeParams(AcknowledgeRequest):
    apply: bool = Field(
        False, description="Acknowledge for real (off: list what would be acknowledged)"
    )
    operator: str | None = OPERATOR
