"""The daily SMS cap counts what an SMS really cost once its receipt says so."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Engine, update

from notify.conditions import sms_spend_since
from notify.db import DELIVERY_LOGS, transaction
from tests.factories import AS_OF, Rows


def test_the_cap_uses_the_receipt_price_where_known_and_the_estimate_otherwise(
    engine: Engine,
) -> None:
    rows = Rows()
    tech = rows.recipient("technician:1")
    estimated = rows.delivery(tech, created_at=AS_OF - timedelta(hours=1), cost=Decimal("0.01"))
    priced = rows.delivery(tech, created_at=AS_OF - timedelta(hours=1), cost=Decimal("0.01"))
    rows.insert(engine)
    with engine.begin() as connection:
        connection.execute(
            update(DELIVERY_LOGS)
            .where(DELIVERY_LOGS.c.id == priced)
            .values(actual_cost=Decimal("0.0387"))
        )
    with transaction(engine) as session:
        spent = sms_spend_since(session=session, since=AS_OF - timedelta(days=1))
    assert spent == Decimal("0.0487"), (estimated, priced)
