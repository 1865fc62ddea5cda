"""Scale-out on one machine: a Prefect server (on PostgreSQL), the deployments of prefect.yaml, two
process workers, and SES played by moto. Both workers deliver; no message is sent twice.

Slow (about two minutes): runs in CI and with NOTIFY_TEST_SLOW=1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from notify.db import DeliveryLog, transaction
from tests.aws_fixtures import free_port, moto_sent
from tests.conftest import POSTGRES_ADMIN_URL, empty_tables, engine_for
from tests.test_dispatch import add_recipients, tech

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MESSAGES = 1_500
DELIVER_RUNS = 4


def wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def prefect_database() -> Iterator[str]:
    name = f"prefect_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def environment(
    postgres_url: str, prefect_database: str, aws_env: str, tmp_path: Path
) -> dict[str, str]:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NOTIFY_", "PREFECT_"))
    }
    env.update(
        PWD=str(ROOT),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_API_DATABASE_CONNECTION_URL=prefect_database,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",
        # no scheduled runs: deliver-pending's cron (every 5 min) falling inside the test sent
        # every message from one worker before the four runs under test began
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        NOTIFY_DATABASE_URL=postgres_url,
        NOTIFY_SENDER="aws",
        NOTIFY_SES_RATE="150",  # ~10 s of sending: every deliver run gets a share
        NOTIFY_BATCH_SIZE="100",
    )
    return env


def run(env: dict[str, str], *command: str, timeout: float = 180) -> str:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return done.stdout


def start(env: dict[str, str], log: Path, *command: str) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def run_deployments(env: dict[str, str], tmp_path: Path) -> None:
    """Enqueue through the dispatch deployment, then several deliver runs at once."""
    script = tmp_path / "trigger.py"
    script.write_text(
        "import sys\n"
        "from prefect.deployments import run_deployment\n"
        "request = {'template': 'repair_assigned', 'to': open(sys.argv[1]).read(),\n"
        "           'context': {'repair_id': 'R-7', 'unit_number': '12'}, 'deliver': False}\n"
        "run = run_deployment('dispatch-notifications/dispatch-notifications',\n"
        "                     parameters=request, timeout=240)\n"
        "assert run.state.is_completed(), run.state\n"
        f"runs = [run_deployment('deliver-pending/deliver-pending', timeout=0,\n"
        "         parameters={'params': {'batch_size': 100, 'max_batches': 6}})\n"
        f"        for _ in range({DELIVER_RUNS})]\n"
        "from prefect import get_client\n"
        "import time\n"
        "with get_client(sync_client=True) as client:\n"
        "    for _ in range(240):\n"
        "        states = [client.read_flow_run(r.id).state for r in runs]\n"
        "        if all(s.is_final() for s in states): break\n"
        "        time.sleep(1)\n"
        "assert all(s.is_completed() for s in states), states\n"
    )
    run(env, sys.executable, str(script), str(tmp_path / "to.txt"), timeout=400)


def test_two_workers_share_the_deliveries_without_duplicates(
    environment: dict[str, str], postgres_url: str, aws_env: str, tmp_path: Path
) -> None:
    engine: Engine = engine_for(postgres_url)
    empty_tables(engine)
    add_recipients(engine, [tech(n, receive_sms=False) for n in range(MESSAGES)])
    (tmp_path / "to.txt").write_text("\n".join(f"tech:{n}" for n in range(MESSAGES)))
    env = environment
    server = start(
        env,
        tmp_path / "server.log",
        str(BIN / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        env["PREFECT_SERVER_API_PORT"],
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(f"{env['PREFECT_API_URL']}/health", 120)
        run(env, sys.executable, "-m", "deployments.setup")
        run(env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
        run(env, sys.executable, "-m", "deployments.setup")  # again, as the README: closed forms
        for name in ("w1", "w2"):
            worker_env = {**env, "NOTIFY_WORKER_NAME": name}
            workers.append(
                start(
                    worker_env,
                    tmp_path / f"{name}.log",
                    str(BIN / "prefect"),
                    "worker",
                    "start",
                    "--pool",
                    "notifyops",
                    "--name",
                    name,
                    "--limit",  # at most 2 runs each: the 4 deliver runs must be shared
                    "2",
                )
            )
        run_deployments(env, tmp_path)
    finally:
        for process in [*workers, server]:
            stop(process)

    received = Counter(m["destinations"]["ToAddresses"][0] for m in moto_sent(aws_env)["email"])
    assert [address for address, n in received.items() if n > 1] == [], "no message sent twice"
    with transaction(engine) as session:
        statuses = dict(
            session.execute(
                select(DeliveryLog.status, func.count())
                .where(DeliveryLog.channel == "email")
                .group_by(DeliveryLog.status)
            )
            .tuples()
            .all()
        )
        owners = Counter(
            owner.split(":")[0]
            for owner in session.scalars(
                select(DeliveryLog.lease_owner).where(DeliveryLog.status == "sent")
            )
        )
    assert statuses == {"sent": MESSAGES}
    assert len(received) == MESSAGES
    logs = {name: (tmp_path / f"{name}.log").read_text()[-1500:] for name in ("w1", "w2")}
    assert set(owners) == {"w1", "w2"}, f"both workers delivered: {owners} {logs}"
