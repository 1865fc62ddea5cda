"""The benchmark's CPU accounting (bench/cpu.py): a run's CPU time goes to the part that used it,
the peer's process or the PostgreSQL backends of the benchmark's database, and a backend of
another database is not counted."""

from __future__ import annotations

import os
import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import PeerResult
from bench.cpu import SERVER_DATABASE, SERVER_PID, CpuMeter
from bench.report import cpu_line
from bench.suite import SuiteResult

WORK = text("SELECT sum(g) FROM generate_series(1, 3000000) AS g")


def _spin(cpu_s: float) -> None:
    until = time.process_time() + cpu_s
    while time.process_time() < until:
        pass


def test_the_peers_own_cpu_and_its_databases_backends_are_counted_apart(
    postgres_url: str,
) -> None:
    database = make_url(postgres_url).database or ""
    engine = create_engine(postgres_url)
    with engine.connect() as connection:  # open before the window: its backend is measured
        meter = CpuMeter(database, environ={}).start()
        connection.execute(WORK).scalar_one()
        _spin(0.3)
        used = meter.stop()
    engine.dispose()
    assert set(used) == {"peer", "postgres"}, "no Prefect server named: no server part"
    assert used["peer"] >= 0.25, used
    assert used["postgres"] >= 0.05, f"the query's backend did the work: {used}"


def test_a_backend_of_another_database_is_not_counted(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        meter = CpuMeter("no_such_database", environ={}).start()
        connection.execute(WORK).scalar_one()
        used = meter.stop()
    engine.dispose()
    assert used["postgres"] == 0.0, used


def test_a_prefect_server_named_in_the_environment_is_its_own_part(postgres_url: str) -> None:
    database = make_url(postgres_url).database or ""
    engine = create_engine(postgres_url)
    with engine.connect() as connection:  # stands in for the server's own database
        environ = {SERVER_PID: str(os.getpid()), SERVER_DATABASE: database}
        meter = CpuMeter("no_such_database", environ=environ).start()
        connection.execute(WORK).scalar_one()
        used = meter.stop()
    engine.dispose()
    assert used["prefect_server"] >= 0.05, f"the server's database backends count: {used}"
    assert used["postgres"] == 0.0, used


def test_the_report_shows_each_peers_cpu_by_part_and_per_message() -> None:
    used = {"peer": 1.0, "postgres": 1.25, "prefect_server": 0.25}
    flows = PeerResult(
        peer="notifyops_flows",
        scenario="zero",
        notifications=5000,
        messages=10_000,
        enqueue_s=0.5,
        e2e_s=2.0,
        extra={"cpu_s": used},
    )
    line = cpu_line(SuiteResult(results=[flows]))
    assert line is not None
    assert "its own processes 1.00 + PostgreSQL 1.25 + Prefect server 0.25 = 2.50 s" in line
    assert "1.2 cores busy" in line and "0.250 s per 1,000 messages" in line
    assert flows.as_json()["cpu_s"] == used
    flows.extra.pop("cpu_s")  # results saved before runs measured their CPU
    assert cpu_line(SuiteResult(results=[flows])) is None
