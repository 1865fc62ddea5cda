"""Settings: one pydantic-settings class, environment variables with the prefix NOTIFY_.

`load_settings()` validates at start; a bad value raises `SettingsError`, whose message names the
variable and the accepted form.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveFloat, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

ENV_PREFIX = "NOTIFY_"


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
    aws_region: str = Field("us-east-1", description="AWS region for SES, SNS and CloudWatch")
    smtp_host: str = Field("email-smtp.us-east-1.amazonaws.com", description="SES SMTP endpoint")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (STARTTLS on 587)")
    smtp_username: str | None = Field(None, description="SES SMTP user name")
    smtp_password: SecretStr | None = Field(None, description="SES SMTP password (secret)")
    smtp_starttls: bool = Field(True, description="Require STARTTLS before AUTH")
    smtp_timeout_s: float = Field(10.0, gt=0, description="SMTP connect/command timeout, seconds")
    ses_rate: PositiveFloat | Literal["auto"] = Field(
        14.0, description="SES sends per second (token bucket), or auto (SES GetSendQuota)"
    )
    sns_rate: float = Field(20.0, gt=0, description="SNS SMS publishes per second (token bucket)")
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
        description="Consecutive provider-side failures (5xx, throttling, connection) on one "
        "channel that stop a delivery batch",
    )
    batch_size: int = Field(1000, ge=1, le=50_000, description="Rows claimed per delivery batch")
    lease_seconds: int = Field(300, ge=5, description="How long a claim is held before rescue")
    max_attempts: int = Field(5, ge=1, le=50, description="Attempts before a row becomes failed")
    retry_base_s: float = Field(30.0, gt=0, description="First retry delay; doubles each attempt")
    retry_max_s: float = Field(3600.0, gt=0, description="Longest retry delay")
    sms_min_priority: Priority = Field(Priority.high, description="Lowest priority sent by SMS")
    sms_daily_cap_usd: Decimal = Field(
        Decimal("100"), ge=0, description="Daily SMS spend cap (UTC day); over it email only"
    )
    sms_hourly_alarm_usd: Decimal = Field(
        Decimal("20"), ge=0, description="SMS cost per hour that raises the cost alarm"
    )
    sms_price_usd: Decimal = Field(
        Decimal("0.00645"), ge=0, description="Default price per SMS part (US reference)"
    )
    sms_prices: dict[str, Decimal] = Field(
        default_factory=dict,
        description='Price per SMS part by ISO country, JSON: {"US": "0.00645", "GB": "0.0395"}',
    )
    loop_threshold: int = Field(
        5,
        ge=1,
        description="More than this many of one title to one recipient+channel in 24 h is a loop",
    )
    loop_auto_mute: bool = Field(
        True, description="Loop detection adds a time-limited SMS suppression"
    )
    loop_mute_hours: int = Field(24, ge=1, description="How long an automatic loop mute lasts")
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
        60, ge=0, description="Repeat notice interval for one alert"
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg2://")
        return value

    @field_validator("sms_prices")
    @classmethod
    def _country_codes_upper(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        return {country.strip().upper(): price for country, price in value.items()}

    @field_validator("email_from")
    @classmethod
    def _plausible_address(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an email address such as alerts@example.com")
        return value

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets and passwords in URLs masked."""
        values = self.model_dump(mode="json")
        values["smtp_password"] = "********" if self.smtp_password else None
        values["database_url"] = _mask_url_password(self.database_url)
        return values


class SettingsError(Exception):
    """A NOTIFY_ variable has a value we cannot accept."""


def _mask_url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def _describe(error: ValidationError) -> str:
    problems: dict[str, str] = {}
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        if field in problems:  # one line per variable, even when a union reports twice
            continue
        accepted = (
            Settings.model_fields[field].description if field in Settings.model_fields else ""
        )
        given = f"={item['input']!r}" if isinstance(item.get("input"), str | int | float) else ""
        problems[field] = (
            f"{ENV_PREFIX}{field.upper()}{given}: {item['msg']} (expected: {accepted})"
        )
    return "; ".join(problems.values())


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own with load_settings)."""
    return load_settings()
