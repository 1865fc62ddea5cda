"""Settings: one pydantic-settings class, environment variables with the prefix NOTIFY_.

`load_settings()` validates at start; a bad value raises `SettingsError`, whose message names the
variable and the accepted form.
"""

from __future__ import annotations

import difflib
import json
import re
import socket
from collections.abc import Mapping
from decimal import Decimal
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from notify.json_objects import RepeatedKey, refuse_repeated_keys
from notify.masking import mask_url, mask_webhook
from notify.severity import Severity

ENV_PREFIX = "NOTIFY_"
ALERT_ROUTES = ("sns", "webhook", "log")  # notify.alerts.routing builds them
# us-east-1, us-gov-west-1, cn-north-1, eusc-de-east-1: the form of botocore's partitions' regions
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>.]+(\.[^@\s<>.]+)+")
_REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d+$")
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9.\-_/#: ]{1,255}$")


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"

    @property
    def rank(self) -> int:
        return list(Priority).index(self)


class SenderKind(StrEnum):
    aws = "aws"
    smtp = "smtp"
    memory = "memory"


# USD per SMS part, at most: AWS's dearest destinations cost under $1 a part, and a stored cost
# (price x parts, NUMERIC(12,6)) must fit its column
SMS_PRICE_MAX_USD = Decimal("100")


def _price(country: str, price: Any) -> Any:
    """A price as a Decimal, or ValueError naming its country."""
    if isinstance(price, Decimal) or (
        isinstance(price, int | float) and not isinstance(price, bool)
    ):
        return price
    if isinstance(price, str):
        try:
            return Decimal(price.strip())
        except ArithmeticError:
            pass
    raise ValueError(f"the price for {country} must be a number, not {price!r}")


class Settings(BaseSettings):
    """Every knob of notifyops. Field descriptions double as the README's variable reference."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = Field(
        "sqlite:///notifyops.db",
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg2://user@host:5432/db",
    )
    sender: SenderKind = Field(
        SenderKind.aws, description="aws (SES + SNS), smtp (SES SMTP + SNS) or memory"
    )
    email_from: str = Field(
        "notifications@example.com", description="Verified SES sender address (From:)"
    )
    aws_region: str = Field(
        "us-east-1", description="AWS region code for SES, SNS and CloudWatch, such as us-east-1"
    )
    smtp_host: str = Field(
        "",
        description="SES SMTP endpoint (default: email-smtp.<NOTIFY_AWS_REGION>.amazonaws.com, "
        "where SMTP credentials of that region work)",
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (STARTTLS on 587)")
    smtp_username: str | None = Field(None, description="SES SMTP user name")
    smtp_password: SecretStr | None = Field(None, description="SES SMTP password (secret)")
    smtp_starttls: bool = Field(True, description="Require STARTTLS before AUTH")
    smtp_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="SMTP connect/command timeout, seconds"
    )
    email_failover_after_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="With NOTIFY_SENDER=aws and SMTP credentials set: after the SES API has "
        "refused sends (throttling, 5xx, unreachable) for this many seconds, email goes through "
        "SES SMTP until the API recovers; 0 turns the failover off",
    )
    email_failover_probe_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="While email goes through SMTP, one send every this many seconds tries the "
        "SES API first; its success switches email back to the API",
    )
    ses_rate: Annotated[float, Field(gt=0, le=100_000)] | Literal["auto"] = Field(
        14.0, description="SES sends per second (token bucket), or auto (SES GetSendQuota)"
    )
    sns_rate: float = Field(
        20.0, gt=0, le=100_000, description="SNS SMS publishes per second (token bucket)"
    )
    send_concurrency: int = Field(8, ge=1, le=256, description="Messages in flight per deliverer")
    send_window: int = Field(
        512,
        ge=1,
        le=10_000,
        description="Most rows one deliverer holds in `sending` (the most a crash leaves unknown)",
    )
    breaker_failures: int = Field(
        10,
        ge=1,
        le=100_000,
        description="Consecutive provider-side failures (5xx, throttling, connection) on one "
        "channel that stop a delivery batch",
    )
    batch_size: int = Field(
        5000, ge=1, le=50_000, description="Rows claimed per delivery batch (one task each)"
    )
    enqueue_part: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="Recipients a dispatch stores per committed part (the first part is "
        "delivered while the next is stored)",
    )
    worker_name: str | None = Field(
        None,
        min_length=1,
        description="Names this worker in delivery_logs.lease_owner (default: the host name); "
        "set one per Prefect worker to see which worker sent what",
    )
    lease_seconds: int = Field(
        300, ge=5, le=86_400, description="How long a claim is held before rescue"
    )
    max_attempts: int = Field(5, ge=1, le=50, description="Attempts before a row becomes failed")
    retry_base_s: float = Field(
        30.0, gt=0, le=86_400, description="First retry delay; doubles each attempt"
    )
    retry_max_s: float = Field(3600.0, gt=0, le=7 * 86_400, description="Longest retry delay")
    sms_min_priority: Priority = Field(Priority.high, description="Lowest priority sent by SMS")
    sms_daily_cap_usd: Decimal = Field(
        Decimal("100"),
        ge=0,
        le=1_000_000_000,
        description="Daily SMS spend cap (UTC day); over it email only",
    )
    sms_hourly_alarm_usd: Decimal = Field(
        Decimal("20"),
        ge=0,
        le=1_000_000_000,
        description="SMS cost per hour that raises the cost alarm",
    )
    sms_price_usd: Decimal = Field(
        Decimal("0.00645"),
        ge=0,
        le=SMS_PRICE_MAX_USD,
        description="Default price per SMS part (US reference)",
    )
    sms_prices: Annotated[dict[str, Decimal], NoDecode] = Field(
        default_factory=dict,
        description='Price per SMS part by ISO country, JSON: {"US": "0.00645", "GB": "0.0395"}',
    )
    quiet_hours_digest: bool = Field(
        True,
        description="SMS held back by quiet hours go out as one digest per recipient when the "
        'window ends (templates with "digest": false on their own)',
    )
    loop_threshold: int = Field(
        5,
        ge=1,
        le=1_000_000_000,
        description="More than this many of one title to one recipient+channel in 24 h is a loop",
    )
    loop_auto_mute: bool = Field(
        True, description="Loop detection adds a time-limited SMS suppression"
    )
    loop_mute_hours: int = Field(
        24, ge=1, le=24 * 365, description="How long an automatic loop mute lasts"
    )
    templates_dir: Path | None = Field(
        None, description="Extra template directory (overrides built-ins)"
    )
    cloudwatch_namespace: str = Field(
        "RS_Systems/Notifications", description="CloudWatch namespace for published metrics"
    )
    cloudwatch_enabled: bool = Field(
        True, description="Publish metrics to CloudWatch from the audits"
    )
    alert_sns_topic_arn: str | None = Field(None, description="SNS topic paged for P1 alerts")
    alert_webhook_url: str | None = Field(
        None, description="Slack-compatible webhook for P2 alerts"
    )
    alert_cooldown_minutes: int = Field(
        60, ge=0, le=60 * 24 * 365, description="Repeat notice interval for one alert"
    )
    alert_routing: str = Field(
        "P1=sns,log;P2=webhook,log;P3=log;P4=log",
        description="Where each severity goes: P1=sns,log;P2=webhook,log (routes: sns, webhook, "
        "log; an unnamed severity keeps its default)",
    )
    receipts_name: str = Field(
        "notifyops-receipts",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Name of the SES configuration set, SNS topic and SQS queue for receipts",
    )
    ses_configuration_set: str | None = Field(
        None, description="SES configuration set on every send (receipts setup creates it)"
    )
    sms_delivery_log_role_arn: str | None = Field(
        None, description="IAM role SNS uses to write SMS delivery-status logs to CloudWatch"
    )
    receipts_max_messages: int = Field(
        2000, ge=10, le=1_000_000, description="SQS messages read per receipts poll, at most"
    )
    receipts_wait_s: int = Field(
        2, ge=0, le=20, description="SQS long-poll wait per receive, seconds"
    )
    receipts_log_overlap_minutes: int = Field(
        15,
        ge=0,
        le=24 * 60,
        description="SMS delivery logs re-read before the checkpoint (late ingestion)",
    )
    receipts_log_lookback_hours: int = Field(
        24,
        ge=1,
        le=24 * 365,
        description="SMS delivery logs read on the first poll (no checkpoint yet)",
    )
    receipts_unknown_horizon_minutes: int = Field(
        15,
        ge=1,
        le=7 * 24 * 60,
        description="Send receipts this much newer than an unknown email row: not sent",
    )
    reputation_window_days: int = Field(
        7,
        ge=1,
        le=365,
        description="Window for the bounce and complaint rates (SES review window)",
    )
    reputation_min_sends: int = Field(
        200,
        ge=1,
        le=100_000_000,
        description="Emails in the window before the bounce/complaint rates count",
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        url = value.strip()
        # the drivers installed with notifyops; a bare postgresql:// is SQLAlchemy's default
        # driver (psycopg 3 since 2.1), which is not, and would fail at the first connection
        if url.partition("://")[0] not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg2"):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg2://")
        if url.startswith("sqlite") and url.partition("://")[2].split("?")[0] in ("", "/:memory:"):
            raise ValueError(
                "a SQLite database in memory is gone when the command ends (db upgrade cannot "
                "create it for the next one): name a file, sqlite:///path.db"
            )
        return url

    @field_validator("aws_region")
    @classmethod
    def _region_code(cls, value: str) -> str:
        region = value.strip().lower()
        if not _REGION.match(region):
            raise ValueError(
                "must be an AWS region code such as us-east-1 or eu-west-1 (the code, not the "
                "region's name or an endpoint)"
            )
        return region

    @field_validator("ses_rate", mode="before")
    @classmethod
    def _auto_in_any_case(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        return value

    @field_validator("alert_sns_topic_arn", "sms_delivery_log_role_arn")
    @classmethod
    def _arn(cls, arn: str | None, info: ValidationInfo) -> str | None:
        if arn is None:
            return None
        if info.field_name == "alert_sns_topic_arn" and not _TOPIC_ARN.match(arn):
            raise ValueError(
                "must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:oncall "
                "(the topic's ARN, not its name: SNS console > Topics)"
            )
        if info.field_name == "sms_delivery_log_role_arn" and not _ROLE_ARN.match(arn):
            raise ValueError(
                "must be an IAM role ARN such as arn:aws:iam::123456789012:role/sns-sms-logs "
                "(the role's ARN, not its name: IAM console > Roles)"
            )
        return arn

    @field_validator("cloudwatch_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        namespace = value.strip()
        if not _NAMESPACE.match(namespace) or namespace.startswith((":", "AWS/")):
            raise ValueError(
                "must be a CloudWatch namespace of 1-255 characters (letters, digits and . - _ "
                "/ # : space, not starting with ':' or 'AWS/', which AWS keeps for itself), such "
                "as RS_Systems/Notifications"
            )
        return namespace

    @field_validator("sms_prices", mode="before")
    @classmethod
    def _prices_as_given(cls, value: Any) -> Any:
        """NOTIFY_SMS_PRICES is read here, not by the settings loader's json.loads: a country
        named twice (in any case) is refused where the last one silently won, and a price that
        is not a number is named with its country (the error quoted the bare value)."""
        try:
            if isinstance(value, str):
                value = json.loads(
                    value, object_pairs_hook=refuse_repeated_keys, parse_float=Decimal
                )
            if not isinstance(value, dict):
                return value  # the type check says what it is
            refuse_repeated_keys((str(country).strip().upper(), None) for country in value)
        except RepeatedKey as repeated:  # as given, or once in another case
            raise ValueError(f"names {repeated.key!r} twice") from None
        except json.JSONDecodeError as error:
            raise ValueError(
                f'must be a JSON object such as {{"US": "0.00645"}} ({error.msg})'
            ) from None
        return {country: _price(country, price) for country, price in value.items()}

    @field_validator("sms_prices")
    @classmethod
    def _country_prices(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        prices = {country.strip().upper(): price for country, price in value.items()}
        if prices:
            from notify.pricing import country_code_problem  # phonenumbers: only when needed

            for country in prices:
                if problem := country_code_problem(country):
                    raise ValueError(problem)
        for country, price in prices.items():
            if not price.is_finite() or price < 0 or price > SMS_PRICE_MAX_USD:
                raise ValueError(
                    f"the price for {country} must be a number from 0 to {SMS_PRICE_MAX_USD}, "
                    f"not {price}"
                )
        return prices

    @field_validator("email_from")
    @classmethod
    def _plausible_address(cls, value: str) -> str:
        """An address (a display name allowed: `Ops <ops@example.com>`): one @ between a local
        part and a dotted domain, no spaces; SES refuses anything else at every send."""
        text = value.strip()
        _, address = parseaddr(text)
        if not _ADDRESS.fullmatch(address) or (address != text and not text.endswith(">")):
            raise ValueError(
                "must be an email address such as alerts@example.com (or Ops <alerts@example.com>)"
            )
        return text

    @field_validator(
        "smtp_username",
        "templates_dir",
        "alert_sns_topic_arn",
        "sms_delivery_log_role_arn",
        "alert_webhook_url",
        "worker_name",
        "ses_configuration_set",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """An empty value (`NOTIFY_SMTP_USERNAME=`, or spaces only) is unset, not a user name of
        nothing, the current directory or a worker named by spaces; the spaces around any other
        value are dropped."""
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("smtp_password")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty: set the SES SMTP password or unset the variable")
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _web_url(cls, url: str | None) -> str | None:
        """An http(s) URL the alert can be posted to, checked now: a port that is no number, a
        bracket left open or a space in the path passed, then failed the check that raised the
        alert (InvalidURL, naming no setting)."""
        if url is None:
            return None
        example = "an http(s) URL such as https://hooks.slack.com/services/..."
        if not re.match(r"^https?://[^/\s]+", url) or any(c.isspace() or ord(c) < 32 for c in url):
            raise ValueError(f"must be {example}")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises for a port that is no number or out of range)
        except ValueError as problem:
            raise ValueError(f"must be {example} ({problem})") from None
        if not parts.hostname:
            raise ValueError(f"must be {example} (no host)")
        return url

    @field_validator("ses_configuration_set")
    @classmethod
    def _configuration_set(cls, name: str | None) -> str | None:
        """SES's rule for a configuration set's name (letters, digits, _ and -, at most 64):
        another name failed every email send, each as a configuration error."""
        if name is None:
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError(
                "must be an SES configuration set name: letters, digits, _ and -, at most 64"
            )
        return name

    @field_validator("alert_routing")
    @classmethod
    def _known_routes(cls, value: str) -> str:
        routes_by_severity(value)
        return value.strip()

    @field_validator("smtp_host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        host = value.strip()
        if host and not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]", host):
            raise ValueError(
                "must be a host name such as email-smtp.eu-west-1.amazonaws.com (no scheme, no "
                "port: the port is NOTIFY_SMTP_PORT)"
            )
        return host

    @model_validator(mode="after")
    def _smtp_host_of_our_region(self) -> Settings:
        """SES SMTP credentials work in the region they were made for: the endpoint follows
        NOTIFY_AWS_REGION unless NOTIFY_SMTP_HOST names one."""
        if not self.smtp_host:
            object.__setattr__(self, "smtp_host", f"email-smtp.{self.aws_region}.amazonaws.com")
        return self

    @model_validator(mode="after")
    def _smtp_credentials(self) -> Settings:
        """SES SMTP credentials are a pair: one without the other left the failover silently
        off; NOTIFY_SENDER=smtp needs them (it failed only at the first send)."""
        has_user, has_password = bool(self.smtp_username), self.smtp_password is not None
        if has_user != has_password:
            given, missing = (
                ("NOTIFY_SMTP_USERNAME", "NOTIFY_SMTP_PASSWORD")
                if has_user
                else ("NOTIFY_SMTP_PASSWORD", "NOTIFY_SMTP_USERNAME")
            )
            raise ValueError(
                f"{given} is set but {missing} is not: SES SMTP credentials are a user name and "
                "a password from the SES console (set both, or neither for no SMTP)"
            )
        if self.sender is SenderKind.smtp and not has_user:
            raise ValueError(
                "NOTIFY_SENDER=smtp needs NOTIFY_SMTP_USERNAME and NOTIFY_SMTP_PASSWORD (SES SMTP "
                "credentials from the SES console)"
            )
        return self

    @model_validator(mode="after")
    def _delays_and_window(self) -> Settings:
        """Retry delays grow from NOTIFY_RETRY_BASE_S up to NOTIFY_RETRY_MAX_S; a deliverer
        holds at most NOTIFY_SEND_WINDOW rows in flight, so it cannot keep more calls going."""
        if self.retry_base_s > self.retry_max_s:
            raise ValueError(
                f"NOTIFY_RETRY_BASE_S={self.retry_base_s:g} is more than NOTIFY_RETRY_MAX_S="
                f"{self.retry_max_s:g}: the first retry delay cannot exceed the longest"
            )
        if self.send_window < self.send_concurrency:
            raise ValueError(
                f"NOTIFY_SEND_WINDOW={self.send_window} is less than NOTIFY_SEND_CONCURRENCY="
                f"{self.send_concurrency}: a deliverer cannot have more calls in flight than rows "
                "it holds in sending (at least 4 times the concurrency keeps the pipeline full)"
            )
        return self

    @model_validator(mode="after")
    def _topic_in_our_region(self) -> Settings:
        """SNS publishes to a topic only through its own region's endpoint, and a CloudWatch
        alarm pages only a topic of its region: both use NOTIFY_AWS_REGION."""
        arn = self.alert_sns_topic_arn
        if arn and arn.split(":")[3] != self.aws_region:
            raise ValueError(
                f"NOTIFY_ALERT_SNS_TOPIC_ARN is a topic in {arn.split(':')[3]}, but SNS and the "
                f"CloudWatch alarms are used in NOTIFY_AWS_REGION={self.aws_region}: create the "
                "topic in that region or set NOTIFY_AWS_REGION to the topic's"
            )
        return self

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets masked: the SMTP password, the password in the
        database URL (`user:pass@` and `?password=`), the webhook URL's path (its credential).
        The worker name is the one in effect (the host name when NOTIFY_WORKER_NAME is unset)."""
        values = self.model_dump(mode="json")
        values["smtp_password"] = "********" if self.smtp_password else None
        values["database_url"] = mask_url(self.database_url)
        values["alert_webhook_url"] = mask_webhook(self.alert_webhook_url)
        values["worker_name"] = self.worker_label()
        return values

    def sender_address(self) -> str:
        """NOTIFY_EMAIL_FROM's address, without its display name: the identity SES verifies."""
        return parseaddr(self.email_from)[1]

    def receipts_resources(self) -> str:
        """The name of the configuration set, SNS topic and SQS queue receipts travel through:
        the sends' configuration set when NOTIFY_SES_CONFIGURATION_SET is set (SES publishes a
        send's events through the set the send names), else NOTIFY_RECEIPTS_NAME. `receipts
        setup` creates them and the poll reads them under this one name."""
        return self.ses_configuration_set or self.receipts_name

    def worker_label(self) -> str:
        """What names this worker in lease owners: NOTIFY_WORKER_NAME, else the host name."""
        return self.worker_name or socket.gethostname()

    def secret_values(self) -> tuple[str, ...]:
        """The secret values themselves, for hiding them wherever they might turn up."""
        password = self.smtp_password.get_secret_value() if self.smtp_password else None
        found = [password, self.alert_webhook_url, *_url_passwords(self.database_url)]
        return tuple(value for value in found if value)


def routes_by_severity(text: str) -> dict[Severity, tuple[str, ...]]:
    """'P1=sns,log;P2=webhook' -> the routes of each severity it names (the others keep their
    default), a route named twice in one entry once ('P1=sns,SNS' pages once); ValueError
    naming the entry with no severity P1-P4, a route that does not exist, or a severity given
    twice ('P1=sns;P1=log' kept only the last: P1 stopped paging)."""
    routing: dict[Severity, tuple[str, ...]] = {}
    entries: dict[Severity, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        name, equals, targets = entry.partition("=")
        if not equals:
            raise ValueError(f"entry {entry!r} is not SEVERITY=ROUTES (e.g. P1=sns,log)")
        if name.strip().upper() not in Severity.__members__:
            raise ValueError(f"entry {entry!r} names no severity P1-P4 (e.g. P1=sns,log)")
        severity = Severity(name.strip().upper())
        if severity in entries:
            raise ValueError(
                f"entry {entry!r} gives {severity} again (first {entries[severity]!r}): "
                f"name each severity once, with all its routes (e.g. {severity}=sns,log)"
            )
        entries[severity] = entry
        named = (route.strip().lower() for route in targets.split(","))
        routes = tuple(dict.fromkeys(route for route in named if route))
        unknown = [route for route in routes if route not in ALERT_ROUTES]
        if unknown:
            raise ValueError(
                f"entry {entry!r}: {', '.join(map(repr, unknown))} is not a route "
                f"(routes: {', '.join(ALERT_ROUTES)})"
            )
        routing[severity] = routes
    return routing


class SettingsError(Exception):
    """A NOTIFY_ variable has a value we cannot accept."""


def _url_passwords(url: str) -> list[str]:
    """The password of `user:pass@` and of `?password=` (a query value may repeat)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return []
    query = parsed.query.get("password")
    listed = [query] if isinstance(query, str) else list(query or ())
    return [str(value) for value in (parsed.password, *listed) if value]


def _message(text: str) -> str:
    return mask_url(str(text).removeprefix("Value error, "))


def _describe(error: ValidationError) -> str:
    problems: dict[str, str] = {}
    for item in error.errors():
        if not item["loc"]:  # a check across variables: its message names them
            problems[_message(item["msg"])] = _message(item["msg"])
            continue
        field = str(item["loc"][0])
        if field in problems:  # one line per variable, even when a union reports twice
            continue
        accepted = (
            Settings.model_fields[field].description if field in Settings.model_fields else ""
        )
        given = _shown_input(field, item.get("input"))
        problems[field] = (
            f"{ENV_PREFIX}{field.upper()}{given}: {_message(item['msg'])} (expected: {accepted})"
        )
    return "; ".join(problems.values())


SECRET_FIELDS = frozenset({"smtp_password"})
URL_FIELDS = frozenset({"database_url"})
WEBHOOK_FIELDS = frozenset({"alert_webhook_url"})


def _shown_input(field: str, value: Any) -> str:
    """`=<the value given>` for the error message, never a secret: masked URLs, no passwords."""
    if field in SECRET_FIELDS or not isinstance(value, str | int | float):
        return ""
    text = str(value)
    if field in WEBHOOK_FIELDS:
        text = mask_webhook(text) or ""
    text = mask_url(text)
    if len(text) > 80:
        text = text[:80] + "…"
    return f"={text!r}"


# NOTIFY_* variables that are not settings: read by the command line's standby, the tests and
# the benchmark
OTHER_VARIABLES = frozenset(
    {
        "NOTIFY_STANDBY",
        "NOTIFY_STANDBY_SOCKET",
        "NOTIFY_TEST_POSTGRES_URL",
        "NOTIFY_TEST_SLOW",
        "NOTIFY_BENCH_POSTGRES_URL",
    }
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line for each NOTIFY_* variable of `environ` that nothing reads, with the setting it
    likely means (`NOTIFY_SEND_CONCURENCY is not a notifyops setting and is ignored (did you mean
    NOTIFY_SEND_CONCURRENCY?)`): a misspelt setting is not an error to the settings loader, which
    left the default in force without a word."""
    settings = sorted(f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields)
    known = set(settings) | OTHER_VARIABLES
    found = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), settings, n=1, cutoff=0.8)
        meant = f" (did you mean {close[0]}?)" if close else ""
        found.append(f"{name} is not a notifyops setting and is ignored{meant}")
    return found


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the environment; raise SettingsError naming the bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
    except PydanticSettingsError as error:  # unparsable JSON in a complex variable
        found = re.search(r'field "(\w+)"', str(error))
        name = found.group(1) if found else "?"
        accepted = Settings.model_fields[name].description if name in Settings.model_fields else ""
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}: not valid JSON (expected: {accepted})"
        ) from None
