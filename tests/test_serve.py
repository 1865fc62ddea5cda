"""`notifyops serve` serves every scheduled deployment of prefect.yaml and stops cleanly.

Slow (the ephemeral Prefect API starts inside it): runs in CI and with NOTIFY_TEST_SLOW=1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.serve import load_deployments, scheduled

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_lists_the_scheduled_deployments_and_stops_on_sigterm(
    db_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "PREFECT_"))}
    env.update(
        NOTIFY_DATABASE_URL=db_url,
        NOTIFY_SENDER="memory",
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(BIN / "notifyops"), "serve"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 180
            while "being served" not in log.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()[-2000:]
                time.sleep(1)
            output = log.read_text()
            for spec in scheduled(load_deployments()):
                assert f"{spec['name']}/{spec['name']}" in output
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) in (0, -signal.SIGTERM, 143)
        finally:
            if process.poll() is None:
                process.kill()
