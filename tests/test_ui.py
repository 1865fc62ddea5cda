"""The Prefect UI tells the truth, driven in headless Chromium (Debian's chromium and
chromium-driver, selenium) against a Prefect server on PostgreSQL, `prefect deploy --all` and a
process worker, with SES and SNS played by moto and the sender left unverified.

Asserts what an on-call engineer sees: the dispatch form lists the templates with `template` and
`to` first and required; a dispatch submitted from the form ends Failed (`Stopped`) with the fix
in its state message and its logs; a P1 health run ends Failed (`P1`); the dispatch run's artifact
shows its own rows including a deferred SMS; run names carry the template. Screenshots go to
test-output/ui/ (gitignored). Slow (about two minutes): runs in CI and with NOTIFY_TEST_SLOW=1.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import empty_tables, engine_for
from tests.test_dispatch import add_recipients, tech
from tests.test_flows import quiet_now
from tests.test_scale_out import (  # noqa: F401 (fixtures)
    BIN,
    ROOT,
    environment,
    prefect_database,
    run,
    start,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,2000",
]
SHOTS = ROOT / "test-output" / "ui"
CONTEXT = '{"repair_id": "R-9", "unit_number": "77"}'


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.load(answer)

    def deployment_id(self, name: str) -> str:
        found = self.post("/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
        return str(found[0]["id"])

    def event_names(self) -> set[str]:
        """The notifyops.* events the server received (for automations)."""
        filters = {"event": {"prefix": ["notifyops."]}}
        found = self.post("/events/filter", {"filter": filters, "limit": 50})
        return {event["event"] for event in found["events"]}

    def final_run(self, deployment: str, timeout_s: float = 120) -> dict[str, Any]:
        """The deployment's first run, once it reached a final state."""
        filters = {"deployments": {"id": {"any_": [self.deployment_id(deployment)]}}}
        filters["flow_runs"] = {"state": {"type": {"not_any_": ["SCHEDULED"]}}}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = self.post("/flow_runs/filter", filters)
            done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
            if done:
                return dict(done[0])
            time.sleep(2)
        raise AssertionError(f"{deployment}: no final run in {timeout_s} s")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("apt-get install -y chromium chromium-driver (scripts/test does in CI)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(20)
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    try:
        yield driver
    finally:
        driver.quit()


def page(driver: Any, url: str | None, shot: str, expect: str, timeout_s: float = 30) -> str:
    """Open `url` (None: stay), wait until `expect` is on the page, screenshot, return its text."""
    from selenium.webdriver.common.by import By

    if url is not None:
        driver.get(url)
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element(By.TAG_NAME, "body").text
        if expect in text:
            break
        time.sleep(1)
    driver.save_screenshot(str(SHOTS / f"{shot}.png"))
    assert expect in text, f"{shot}: {expect!r} not on {url}: {text[:800]}"
    return str(text)


def fill_and_submit_dispatch(driver: Any, ui: str, deployment_id: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    page(driver, f"{ui}/deployments/deployment/{deployment_id}/run", "1-form", "test_message")
    labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".schema-form-property__label")]
    assert labels[:2] == ["template", "to"], labels
    assert all(label.endswith("(Optional)") for label in labels[2:]), labels
    select = driver.find_element(By.CSS_SELECTOR, "select.p-native-select__control")
    options = [o.get_attribute("value") for o in Select(select).options]
    assert {"repair_assigned", "repair_completed", "test_message"} <= set(options)
    Select(select).select_by_value("repair_assigned")
    recipients = ".schema-form-property-any-of-input textarea"
    driver.find_element(By.CSS_SELECTOR, recipients).send_keys("tech:1,\ntech:2")
    context = driver.find_element(By.CSS_SELECTOR, ".schema-form-property-kind-json textarea")
    context.send_keys(Keys.CONTROL, "a")
    context.send_keys(Keys.DELETE)
    context.send_keys(CONTEXT)
    driver.save_screenshot(str(SHOTS / "2-filled.png"))
    buttons = driver.find_elements(By.TAG_NAME, "button")
    next(b for b in buttons if b.text.strip() == "Submit").click()
    page(driver, None, "3-submitted", "scheduled to start")


def test_the_ui_tells_the_truth(
    environment: dict[str, str],  # noqa: F811
    postgres_url: str,
    tmp_path: Path,
    browser: Any,
) -> None:
    engine = engine_for(postgres_url)
    empty_tables(engine)
    add_recipients(engine, [tech(1), quiet_now(2)])  # tech:2's SMS is deferred (quiet hours)
    port = environment["PREFECT_SERVER_API_PORT"]
    ui = f"http://127.0.0.1:{port}"
    env = {
        **environment,
        "PREFECT_UI_API_URL": environment["PREFECT_API_URL"],
        "NOTIFY_EMAIL_FROM": "unverified@example.com",  # moto: a sender nobody verified
    }
    server = start(env, tmp_path / "server.log", str(BIN / "prefect"), "server", "start",
                   "--host", "127.0.0.1", "--port", port)  # fmt: skip
    worker = None
    try:
        wait_for(f"{env['PREFECT_API_URL']}/health", 120)
        run(env, sys.executable, "-m", "deployments.setup")
        run(env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
        run(env, sys.executable, "-m", "deployments.setup")  # again, as the README: closed forms
        worker = start(env, tmp_path / "worker.log", str(BIN / "prefect"), "worker", "start",
                       "--pool", "notifyops", "--name", "ui-worker")  # fmt: skip
        api = Api(env["PREFECT_API_URL"])
        fill_and_submit_dispatch(browser, ui, api.deployment_id("dispatch-notifications"))
        run(env, str(BIN / "prefect"), "deployment", "run", "health/health")
        dispatch = api.final_run("dispatch-notifications")
        health = api.final_run("health")
        logs = (tmp_path / "worker.log").read_text()[-3000:]

        assert (dispatch["state_type"], dispatch["state_name"]) == ("FAILED", "Stopped"), logs
        assert "Verify the sender" in dispatch["state"]["message"]
        assert dispatch["name"].startswith("repair_assigned · ")
        assert {"template:repair_assigned", "priority:high"} <= set(dispatch["tags"])
        assert (health["state_type"], health["state_name"]) == ("FAILED", "P1"), logs
        assert health["name"].startswith("health P1: ses-sender")

        run_page = f"{ui}/runs/flow-run/{dispatch['id']}"
        shown = page(browser, run_page, "4-dispatch-run", "Verify the sender")
        assert "Stopped" in shown and "repair_assigned" in shown
        page(browser, f"{ui}/artifacts/key/dispatch-request", "5-artifacts", "waiting")
        made = api.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["dispatch-request"]}}})
        artifact_page = f"{ui}/artifacts/artifact/{made[0]['id']}"
        own = page(browser, artifact_page, "6-dispatch-request", "sms: deferred to")
        assert "waiting until" in own and "this run" in own and "pending_retry" in own
        page(browser, f"{ui}/runs/flow-run/{health['id']}", "7-health-run", "P1")
        runs = page(browser, f"{ui}/runs", "8-runs", "repair_assigned")
        assert "health P1" in runs
        expected = {"notifyops.alert.P1", "notifyops.delivery.stopped"}
        for _ in range(20):  # the server stores events shortly after they arrive
            if expected <= api.event_names():
                break
            time.sleep(1)
        assert expected <= api.event_names(), "events for automations"
    finally:
        for process in [p for p in (worker, server) if p is not None]:
            stop(process)
