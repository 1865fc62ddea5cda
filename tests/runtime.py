"""The process runtime for tests: read again from the environment after a test changes NOTIFY_*."""

from __future__ import annotations

from notify.bootstrap import reset


def reload_runtime() -> None:
    """Close the current runtime; the next command or task builds one from the environment."""
    reset()
