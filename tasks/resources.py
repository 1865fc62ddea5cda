"""What tasks resolve inside themselves: settings, the engine, templates, senders (cached per
process, so a task's inputs stay ids and small values)."""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from sqlalchemy import Engine

from notify.database import open_database
from notify.pacing import Pacer
from notify.rendering import TemplateCatalog
from notify.settings import Settings, get_settings


def settings() -> Settings:
    return get_settings()


def engine() -> Engine:
    return open_database(get_settings())


@lru_cache(maxsize=4)
def _catalog(extra_dir: str | None) -> TemplateCatalog:
    from pathlib import Path

    return TemplateCatalog(Path(extra_dir) if extra_dir else None)


def catalog() -> TemplateCatalog:
    configured = get_settings().templates_dir
    return _catalog(str(configured) if configured else None)


def worker_name(suffix: str) -> str:
    """A lease owner unique to this host, process and task run (NOTIFY_WORKER_NAME, when a
    Prefect worker sets it for its runs, says which worker)."""
    label = os.environ.get("NOTIFY_WORKER_NAME") or socket.gethostname()
    return f"{label}:{os.getpid()}:{suffix}"[:100]


@lru_cache(maxsize=1)
def _pacers() -> dict[str, Pacer]:
    from tasks.pacing import pacers_for

    return pacers_for(get_settings())


def pacers() -> dict[str, Pacer]:
    """Token buckets shared by every task in this process."""
    return _pacers()
