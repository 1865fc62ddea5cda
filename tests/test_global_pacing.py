"""Provider pacing shared through Prefect global rate limits (tasks/pacing.py), on the session's
Prefect API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client

from notify.bootstrap import Runtime
from notify.settings import load_settings
from tasks.pacing import LIMIT_NAMES, GlobalRateLimitPacer, pacers_for


@pytest.fixture
def limits_of_one_slot(prefect_harness: None) -> Iterator[None]:
    """`ses-send` and `sns-sms` as `deployments.setup` makes them for a rate of 1/s (NOTIFY_SES_RATE
    =auto on a sandbox account), decaying fast so that the test does not wait."""
    with get_client(sync_client=True) as client:
        for name in LIMIT_NAMES.values():
            client.upsert_global_concurrency_limit_by_name(name, 1, slot_decay_per_second=50.0)
    yield
    with get_client(sync_client=True) as client:
        for name in LIMIT_NAMES.values():
            client.delete_global_concurrency_limit_by_name(name)


def test_a_shared_limit_smaller_than_a_bulk_take_paces_instead_of_failing_every_send(
    limits_of_one_slot: None,
) -> None:
    """This worker's rate is 14/s, the limits' 1 slot: a take of 7 slots was refused by the
    server (422, slots requested greater than the limit), and every email failed as a transient
    error with an attempt counted. A take now asks for at most the limit's slots."""
    settings = load_settings(database_url="sqlite:///unused.db", sender="memory", ses_rate=14.0)
    here = Runtime(settings)
    pacers = pacers_for(here)
    for channel in ("email", "sms"):
        pacer = pacers[channel]
        assert isinstance(pacer, GlobalRateLimitPacer) and pacer.bulk == 1
        for _ in range(3):
            pacer.acquire()
