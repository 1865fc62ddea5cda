"""SES account state for the health check: sending enabled, sandbox or production, quotas, and
whether the configured sender (address or its domain) is verified.

SES v2 `GetAccount` answers everything at once; where it fails (moto answers 404) the SES v1 calls
`GetSendQuota` and `GetAccountSendingEnabled` fill in what they can and the mode is inferred from
the quota (the sandbox grants 200 a day at 1 per second). Every error is captured in `errors`,
except a call the endpoint does not offer (`not_offered`): answered with a bare HTTP 404, 405 or
501 or a body that is not AWS's (an AWS error always names its code) while other calls to it
answered as SES does. That is an endpoint standing in for SES (moto implements neither v2
`GetAccount` nor v1 `GetAccountSendingEnabled`), not an SES problem: it leaves the facts unknown
but raises no finding.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from pydantic import BaseModel, ConfigDict

from notify.errors import provider_text

SANDBOX_MAX_24H = 200.0
SANDBOX_RATE = 1.0
NOT_FOUND = ("NotFoundException", "404")
NO_SUCH_CALL = ("404", "405", "501")  # a bare HTTP status: the endpoint has no such route
ERROR_CHARS = 120  # an error of `errors` at most (a report's table cell)


class SesAccountState(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str | None = None  # "sesv2" (GetAccount) or "ses" (GetSendQuota), None: no answer
    sending_enabled: bool | None = None
    mode: str | None = None  # "sandbox" | "production"
    mode_inferred: bool = False  # True: guessed from the v1 quota
    max_24h_send: float | None = None
    max_send_rate: float | None = None
    sent_last_24h: float | None = None
    sender: str = ""
    sender_verified: bool | None = None
    errors: tuple[str, ...] = ()
    not_offered: tuple[str, ...] = ()  # calls the endpoint lacks ("sesv2.GetAccount"): a stand-in

    @property
    def unanswered(self) -> tuple[str, ...]:
        """What an error left unknown: the account's state (sending enabled, mode, quota: no
        call answered), whether sending is enabled (the quota answered, not that: a paused account
        would go unseen) and whether the sender is verified. A call its fallback answered for it
        leaves nothing unknown."""
        unknown = [
            what
            for what, missing in (
                ("account state", self.source is None),
                ("sending state", self.source is not None and self.sending_enabled is None),
                ("sender verification", bool(self.sender) and self.sender_verified is None),
            )
            if missing
        ]
        return tuple(unknown) if self.errors else ()

    @property
    def silent(self) -> bool:
        """SES answered none of the calls: out of reach, refusing our credentials, or down."""
        return bool(self.errors) and self.source is None and self.sender_verified is None


def check_ses_account(*, sender: str, sesv2: Any = None, ses: Any = None) -> SesAccountState:
    """Ask SES (v2 first, v1 as fallback) about the account and the sender; never raises."""
    errors: list[str] = []
    fields = _from_v2(sesv2, errors) if sesv2 is not None else None
    if fields is None and ses is not None:
        fields = _from_v1(ses, errors)
    verified = _sender_verified(sender, sesv2, ses, errors)
    answered = fields is not None or verified is not None
    absent = tuple(e.partition(":")[0] for e in errors if answered and _no_such_call(e))
    return SesAccountState(
        **(fields or {}),
        sender=sender,
        sender_verified=verified,
        errors=tuple(e for e in errors if e.partition(":")[0] not in absent),
        not_offered=absent,
    )


NOT_AWS = "not an AWS answer"  # an error whose body AWS's parser could not read


def _no_such_call(error: str) -> bool:
    """An `aws_call` error line saying the endpoint has no such call: a bare 404/405/501 (an
    AWS error names its code, `NotFoundException`), or a body that is not AWS's."""
    said = error.partition(": ")[2]
    return said.split(" ", 1)[0] in NO_SUCH_CALL or said.startswith(NOT_AWS)


def aws_call(errors: list[str], name: str, call: Callable[[], Any]) -> Any:
    """`call()`'s answer, or None with its error appended to `errors` as one short line."""
    try:
        return call()
    except ResponseParserError:  # not BotoCoreError; an HTML page where AWS answers XML or JSON
        errors.append(f"{name}: {NOT_AWS} (ResponseParserError)")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, said = str(error.get("Code", "error")), provider_text(str(error.get("Message", "")))
        text = said if said.startswith(code) else f"{code} {said}"  # "404 Not Found": no 404 404
        errors.append(provider_text(f"{name}: {text}", ERROR_CHARS))  # one line, not a page
    except (BotoCoreError, OSError) as exc:
        errors.append(f"{name}: {type(exc).__name__}")
    return None


def _from_v2(client: Any, errors: list[str]) -> dict[str, Any] | None:
    account = aws_call(errors, "sesv2.GetAccount", client.get_account)
    if account is None:
        return None
    quota = account.get("SendQuota", {})
    production = account.get("ProductionAccessEnabled")
    return {
        "source": "sesv2",
        "sending_enabled": account.get("SendingEnabled"),
        "mode": None if production is None else ("production" if production else "sandbox"),
        **_quota(quota),
    }


def _from_v1(client: Any, errors: list[str]) -> dict[str, Any] | None:
    quota = aws_call(errors, "ses.GetSendQuota", client.get_send_quota)
    enabled = aws_call(errors, "ses.GetAccountSendingEnabled", client.get_account_sending_enabled)
    if quota is None and enabled is None:
        return None
    fields = _quota(quota or {})
    return {
        "source": "ses",
        "sending_enabled": None if enabled is None else enabled.get("Enabled"),
        "mode": _inferred_mode(fields["max_24h_send"], fields["max_send_rate"]),
        "mode_inferred": quota is not None,
        **fields,
    }


def _quota(quota: dict[str, Any]) -> dict[str, float | None]:
    def number(key: str) -> float | None:
        return float(quota[key]) if key in quota else None

    return {
        "max_24h_send": number("Max24HourSend"),
        "max_send_rate": number("MaxSendRate"),
        "sent_last_24h": number("SentLast24Hours"),
    }


def _inferred_mode(max_24h: float | None, rate: float | None) -> str | None:
    if max_24h is None or rate is None:
        return None
    return "sandbox" if max_24h <= SANDBOX_MAX_24H and rate <= SANDBOX_RATE else "production"


def _identities(sender: str) -> list[str]:
    domain = sender.rpartition("@")[2]
    return [sender, domain] if domain and domain != sender else [sender]


def _sender_verified(sender: str, sesv2: Any, ses: Any, errors: list[str]) -> bool | None:
    if not sender:
        return None
    if ses is not None:
        return _verified_v1(ses, _identities(sender), errors)
    if sesv2 is not None:
        return _verified_v2(sesv2, _identities(sender), errors)
    return None


def _verified_v1(client: Any, identities: list[str], errors: list[str]) -> bool | None:
    answer = aws_call(
        errors,
        "ses.GetIdentityVerificationAttributes",
        lambda: client.get_identity_verification_attributes(Identities=identities),
    )
    if answer is None:
        return None
    attributes = answer.get("VerificationAttributes", {})
    return any(attributes.get(i, {}).get("VerificationStatus") == "Success" for i in identities)


def _verified_v2(client: Any, identities: list[str], errors: list[str]) -> bool | None:
    for identity in identities:
        answer = aws_call(
            errors, "sesv2.GetEmailIdentity", partial(_identity_or_empty, client, identity)
        )
        if answer is None:
            return None
        if answer.get("VerifiedForSendingStatus") or answer.get("VerificationStatus") == "SUCCESS":
            return True
    return False


def _identity_or_empty(client: Any, identity: str) -> Any:
    """The identity's attributes; {} when SES does not know it (not verified, not an error)."""
    try:
        return client.get_email_identity(EmailIdentity=identity)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
            return {}
        raise
