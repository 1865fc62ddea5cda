"""The process runtime for tests: read again from the environment after a test changes NOTIFY_*."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from notify.bootstrap import Runtime, install, reset
from notify.settings import load_settings


def reload_runtime(
    *, now: datetime | None = None, clients: Mapping[str, Any] | None = None
) -> None:
    """Close the current runtime; the next command or task builds one from the environment. With
    `now` or `clients`, one is built at once from the environment with those pieces: checks that
    take `now` for the present (a run without `--as-of`, as the schedules run, on data crafted at
    a fixed time), fake AWS clients by service name."""
    reset()
    pieces: dict[str, Any] = {}
    if now is not None:
        pieces["clock"] = lambda: now
    if clients is not None:
        pieces["clients"] = clients
    if pieces:
        install(Runtime(load_settings(), **pieces))
