"""A deliverer's lease owner names its worker, process and task run within the column's width:
a long NOTIFY_WORKER_NAME is shortened, never the part that tells two owners apart (a retried
batch is another owner, so its heartbeat never keeps the failed attempt's rows)."""

from __future__ import annotations

import os
import socket

import pytest
from sqlalchemy import String

from notify.db import DeliveryLog
from notify.settings import load_settings
from tasks.resources import OWNER_MAX_CHARS, worker_name
from tests.runtime import reload_runtime


def test_a_long_worker_name_keeps_owners_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_WORKER_NAME", "w" * 150)
    reload_runtime()
    first, retried = worker_name("run-1#b0#1"), worker_name("run-1#b0#2")
    assert first != retried
    assert len(first) == len(retried) == OWNER_MAX_CHARS
    assert first.startswith("w" * 10) and first.endswith(f":{os.getpid()}:run-1#b0#1")


def test_a_short_worker_name_is_kept_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_WORKER_NAME", "worker-a")
    reload_runtime()
    assert worker_name("run-1#b0#1") == f"worker-a:{os.getpid()}:run-1#b0#1"


def test_an_owner_fits_the_lease_owner_column() -> None:
    column = DeliveryLog.__table__.c.lease_owner.type
    assert isinstance(column, String) and column.length == OWNER_MAX_CHARS


def test_the_worker_name_is_a_setting_config_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """`notifyops config` lists what is in effect; NOTIFY_WORKER_NAME was read beside the
    settings and missing there."""
    monkeypatch.setenv("NOTIFY_WORKER_NAME", "worker-b")
    assert load_settings().worker_name == "worker-b"
    monkeypatch.setenv("NOTIFY_WORKER_NAME", "")  # set but empty: unset, as the other
    assert load_settings().worker_label() == socket.gethostname()  # optional settings are


def test_config_shows_the_host_name_when_no_worker_name_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README gives the host name as the default; `config` showed an empty value."""
    import socket

    monkeypatch.delenv("NOTIFY_WORKER_NAME", raising=False)
    assert load_settings().masked()["worker_name"] == socket.gethostname()
    monkeypatch.setenv("NOTIFY_WORKER_NAME", "worker-b")
    assert load_settings().masked()["worker_name"] == "worker-b"
