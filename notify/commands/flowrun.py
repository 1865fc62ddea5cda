"""Run a flow from the CLI as a real Prefect flow run (visible in the UI when a server is set).

Flows are imported by name at call time: notify/ never imports Prefect at module level, and the
dependency stays flows -> tasks -> notify.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# The same defaults pyproject.toml's [tool.prefect] gives inside the repo, for runs from anywhere:
# an ephemeral API that may start slowly under load, no telemetry, quiet logs on the terminal.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def run_flow(module: str, name: str, /, **parameters: Any) -> Any:
    for variable, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    flow = getattr(importlib.import_module(module), name)
    return flow(**parameters)
