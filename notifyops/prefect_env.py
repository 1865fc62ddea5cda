"""Prefect defaults for runs started from the command line, set before Prefect is imported.

The same defaults pyproject.toml's [tool.prefect] gives inside the repository, for runs from
anywhere: an ephemeral API that may start slowly under load, no telemetry, quiet logs on the
terminal. A variable already set wins."""

from __future__ import annotations

import os

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def apply_defaults() -> None:
    for variable, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(variable, value)
