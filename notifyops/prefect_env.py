"""Prefect defaults for runs started from the command line, set before Prefect is imported.

The same defaults pyproject.toml's [tool.prefect] gives inside the repository, for runs from
anywhere: an ephemeral API that may start slowly under load, no telemetry, quiet logs on the
terminal. A variable already set wins."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

Result = TypeVar("Result")

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def apply_defaults() -> None:
    for variable, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(variable, value)


def run_flow(flow: Callable[..., Result], /, **parameters: Any) -> Result:
    """Call `flow` as a flow run of this process (shown in the UI when PREFECT_API_URL is set).

    A command's run lives as long as the command: the crash-detection heartbeat thread, which
    makes every run wait up to a second for it at the end, is off for it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return flow(**parameters)
