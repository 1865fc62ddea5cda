"""Idempotent setup of what prefect.yaml cannot declare: the process work pool and the global
concurrency limits that pace SES and SNS across all workers.

    python -m deployments.setup            # against PREFECT_API_URL

Slot decay follows the configured rates (NOTIFY_SES_RATE, NOTIFY_SNS_RATE); with
NOTIFY_SES_RATE=auto the SES rate is the account's MaxSendRate from SES GetSendQuota.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

from notify.bootstrap import runtime
from notify.settings import Settings
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
    if not os.environ.get("PREFECT_API_URL"):
        problems.append("PREFECT_API_URL is not set: work pools and limits need a Prefect server")
    if settings.database_url.startswith("sqlite"):
        problems.append(
            "NOTIFY_DATABASE_URL is SQLite: workers on several machines need PostgreSQL"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    here = runtime()
    for line in checks(here.settings):
        print(f"warning: {line}", file=sys.stderr)
    print(ensure_work_pool())
    rates = here.provider_rates()
    for line in ensure_rate_limits(rates["email"], rates["sms"]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
