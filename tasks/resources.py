"""What tasks take from the process's runtime (notify.bootstrap): settings, the engine, templates,
senders, pacers, built once per process, so a task's inputs stay ids and small values."""

from __future__ import annotations

import os
from collections.abc import Mapping

from notify.bootstrap import Runtime, runtime
from notify.pacing import Pacer
from tasks.pacing import pacers_for  # imported with the flows, not inside the first delivery

__all__ = ["Runtime", "pacers", "runtime", "worker_name"]


OWNER_MAX_CHARS = 100  # delivery_logs.lease_owner's width (notify/db.py; a test compares)


def worker_name(suffix: str) -> str:
    """A lease owner unique to this host, process and task run (NOTIFY_WORKER_NAME, when a
    Prefect worker sets it for its runs, says which worker). A long name is shortened, never the
    process and task run that follow it: owners that differ stay different."""
    label = runtime().settings.worker_label()
    tail = f":{os.getpid()}:{suffix}"[-OWNER_MAX_CHARS:]  # what tells two owners of one host apart
    return label[: OWNER_MAX_CHARS - len(tail)] + tail


def pacers() -> Mapping[str, Pacer]:
    """Provider pacing shared by every task in this process: Prefect global rate limits when a
    server has them, local token buckets otherwise."""
    return runtime().pacers(pacers_for)
