"""Idempotent setup of what prefect.yaml cannot declare: the process work pool, the global
concurrency limits that pace SES and SNS across all workers, deployment forms that refuse a
parameter they do not have (deployments/forms.py: `prefect deploy` registers them open, so run
this again after it), and the automation that marks a run whose process died Crashed
(deployments/zombies.py).

    python -m deployments.setup            # against PREFECT_API_URL

Slot decay follows the configured rates (NOTIFY_SES_RATE, NOTIFY_SNS_RATE); with
NOTIFY_SES_RATE=auto the SES rate is the account's MaxSendRate from SES GetSendQuota.
"""

from __future__ import annotations

import argparse
import math
import sys

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

from deployments.forms import close_deployed
from deployments.serve import load_deployments, load_flow
from deployments.zombies import ensure_zombie_automation
from notify.bootstrap import runtime
from notify.settings import Settings, SettingsError
from tasks.pacing import LIMIT_NAMES

WORK_POOL = "notifyops"


def ensure_work_pool(name: str = WORK_POOL) -> str:
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            return f"work pool {name!r} exists"
    return f"work pool {name!r} created (process)"


def ensure_rate_limits(ses_rate: float, sns_rate: float) -> list[str]:
    rates = {LIMIT_NAMES["email"]: ses_rate, LIMIT_NAMES["sms"]: sns_rate}
    done = []
    with get_client(sync_client=True) as client:
        for name, rate in rates.items():
            limit = max(1, math.ceil(rate))  # one second of burst
            client.upsert_global_concurrency_limit_by_name(name, limit, slot_decay_per_second=rate)
            done.append(f"rate limit {name!r}: {limit} slots, decay {rate}/s")
    return done


def checks(settings: Settings) -> list[str]:
    problems = []
    if settings.database_url.startswith("sqlite"):
        problems.append(
            "NOTIFY_DATABASE_URL is SQLite: workers on several machines need PostgreSQL"
        )
    return problems


NO_SERVER = (
    "PREFECT_API_URL is not set: the work pool and the rate limits would be made on a temporary "
    "Prefect API that is gone when this ends; start a server (`prefect server start "
    "--background`), export PREFECT_API_URL=http://127.0.0.1:4200/api and run this again"
)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the pool and the limits exist; 2 with one line saying why not (bad settings,
    SES's rate unreadable for `auto`, no Prefect server, one that does not answer)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        return _setup()
    except (SettingsError, SetupError) as problem:
        print(f"error: {problem}", file=sys.stderr)
    except httpx.HTTPError as problem:  # the server refused or did not answer
        print(
            f"error: the Prefect API at {PREFECT_API_URL.value()} did not answer as a Prefect "
            f"server ({type(problem).__name__}: {problem}); start it or fix PREFECT_API_URL",
            file=sys.stderr,
        )
    return 2


class SetupError(Exception):
    """Why nothing was set up, in one line."""


def _setup() -> int:
    here = runtime()
    if not PREFECT_API_URL.value():
        raise SetupError(NO_SERVER)
    for line in checks(here.settings):
        print(f"warning: {line}", file=sys.stderr)
    rates = here.provider_rates()  # before any change: NOTIFY_SES_RATE=auto may fail
    print(ensure_work_pool())
    for line in ensure_rate_limits(rates["email"], rates["sms"]):
        print(line)
    for line in close_forms():
        print(line)
    print(ensure_zombie_automation())
    return 0


def close_forms() -> list[str]:
    """Every deployment of prefect.yaml already registered: its form closed (forms.py)."""
    names = [(load_flow(spec["entrypoint"]).name, spec["name"]) for spec in load_deployments()]
    with get_client(sync_client=True) as client:
        return close_deployed(client, names)


if __name__ == "__main__":
    sys.exit(main())
