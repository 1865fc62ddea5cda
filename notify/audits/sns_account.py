"""The SNS account's SMS spend limit, for the SMS cost audit.

`MonthlySpendLimit` (an SMS attribute, US dollars per calendar month) is AWS's backstop: once the
account's SMS spend crosses it, SNS stops sending SMS within minutes while `publish` still answers
with a MessageId, so our rows say `sent` and nothing arrives (the delivery-status logs say "No
quota left for account"). New accounts start at $1.00. The audit compares the month's spend in the
delivery log with it. Every error is captured in `error`; an attribute SNS does not return is
unknown, not assumed.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict

from notify.audits.ses_account import aws_call

SPEND_LIMIT = "MonthlySpendLimit"
NOT_RETURNED = (
    f"sns.GetSMSAttributes answered without {SPEND_LIMIT}: the limit is unknown here (a new "
    "account's is $1.00 a month); see it in the SNS console, Text messaging (SMS)"
)


class SnsSpendLimit(BaseModel):
    model_config = ConfigDict(frozen=True)

    limit_usd: Decimal | None = None  # None: not answered
    error: str | None = None

    @property
    def failed(self) -> str | None:
        """The error when SNS did not answer the question (out of reach, a refused permission,
        an answer that is no number); None when it answered, without the attribute included
        (an account that never set one, or a stand-in that has none)."""
        return self.error if self.error != NOT_RETURNED else None


def sms_spend_limit(sns: Any) -> SnsSpendLimit:
    """Ask SNS for the account's monthly SMS spend limit; never raises."""
    errors: list[str] = []
    answer = aws_call(
        errors, "sns.GetSMSAttributes", lambda: sns.get_sms_attributes(attributes=[SPEND_LIMIT])
    )
    if answer is None:
        return SnsSpendLimit(error=errors[-1] if errors else None)
    raw = answer.get("attributes", {}).get(SPEND_LIMIT)
    if raw in (None, ""):  # answered without it: unknown here, never assumed
        return SnsSpendLimit(error=NOT_RETURNED)
    try:
        return SnsSpendLimit(limit_usd=Decimal(str(raw)))
    except InvalidOperation:
        return SnsSpendLimit(error=f"sns.GetSMSAttributes: {SPEND_LIMIT} {raw!r} is not a number")
