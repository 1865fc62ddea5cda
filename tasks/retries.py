"""When a task's failed attempt is worth another one."""

from __future__ import annotations

from typing import Any

from notify.db import database_unavailable


def retry_if_database_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """A `retry_condition_fn`: try again when the database could not be used just now (a lost,
    refused or busy connection); a defect (a statement the schema refuses, a bug) fails at once
    instead of waiting out the retries to fail the same way."""
    try:
        state.result()
    except Exception as error:
        return database_unavailable(error)
    return False
