from __future__ import annotations

from decimal import Decimal

import pytest

from notify.settings import Priority, SenderKind, SettingsError, load_settings
from notify.severity import Severity


def test_defaults_follow_the_runbook(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_DATABASE_URL", "NOTIFY_SES_RATE", "NOTIFY_SENDER"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url == "sqlite:///notifyops.db"
    assert settings.ses_rate == 14.0
    assert settings.sms_daily_cap_usd == Decimal("100")
    assert settings.sms_hourly_alarm_usd == Decimal("20")
    assert settings.loop_threshold == 5
    assert settings.sms_min_priority is Priority.high
    assert settings.sender is SenderKind.aws


def test_postgres_url_is_accepted_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+psycopg2://app:secret@db.internal:5432/notify"
    monkeypatch.setenv("NOTIFY_DATABASE_URL", url)
    settings = load_settings()
    assert settings.database_url == url
    assert "secret" not in str(settings.masked())


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("NOTIFY_SES_RATE", "fast", "NOTIFY_SES_RATE"),
        ("NOTIFY_SES_RATE", "0", "NOTIFY_SES_RATE"),
        ("NOTIFY_SENDER", "ses", "NOTIFY_SENDER"),
        ("NOTIFY_DATABASE_URL", "mysql://x/y", "NOTIFY_DATABASE_URL"),
        ("NOTIFY_DATABASE_URL", "postgresql://x/y", "NOTIFY_DATABASE_URL"),
        ("NOTIFY_DATABASE_URL", "postgres://x/y", "NOTIFY_DATABASE_URL"),
        ("NOTIFY_DATABASE_URL", "postgresql+asyncpg://x/y", "NOTIFY_DATABASE_URL"),
        ("NOTIFY_DATABASE_URL", "sqlite+aiosqlite:///x.db", "NOTIFY_DATABASE_URL"),
        ("NOTIFY_DATABASE_URL", "sqlite://", "NOTIFY_DATABASE_URL"),
        ("NOTIFY_DATABASE_URL", "sqlite:///:memory:", "NOTIFY_DATABASE_URL"),
        ("NOTIFY_SMS_MIN_PRIORITY", "critical", "NOTIFY_SMS_MIN_PRIORITY"),
        ("NOTIFY_SMS_PRICES", "{not json", "NOTIFY_SMS_PRICES"),
        ("NOTIFY_LOOP_THRESHOLD", "-1", "NOTIFY_LOOP_THRESHOLD"),
        ("NOTIFY_AWS_REGION", "", "NOTIFY_AWS_REGION"),
        ("NOTIFY_AWS_REGION", "us-east1", "NOTIFY_AWS_REGION"),
        ("NOTIFY_AWS_REGION", "N. Virginia", "NOTIFY_AWS_REGION"),
        ("NOTIFY_AWS_REGION", "email.us-east-1.amazonaws.com", "NOTIFY_AWS_REGION"),
        ("NOTIFY_SES_RATE", "inf", "NOTIFY_SES_RATE"),
        # accepted at start, they failed a later poll with "a number or date is out of range",
        # naming no variable (the receipts' windows), or a stored cost (a price)
        ("NOTIFY_REPUTATION_WINDOW_DAYS", "1000000000", "NOTIFY_REPUTATION_WINDOW_DAYS"),
        ("NOTIFY_RECEIPTS_LOG_LOOKBACK_HOURS", "100000000000", "LOG_LOOKBACK_HOURS"),
        ("NOTIFY_RECEIPTS_LOG_OVERLAP_MINUTES", "100000000000000", "LOG_OVERLAP_MINUTES"),
        ("NOTIFY_RECEIPTS_UNKNOWN_HORIZON_MINUTES", "100000000000000", "UNKNOWN_HORIZON"),
        ("NOTIFY_SMS_PRICE_USD", "1e30", "NOTIFY_SMS_PRICE_USD"),
        ("NOTIFY_SMS_PRICES", '{"US": "1e30"}', "the price for US must be a number from 0"),
        ("NOTIFY_LOOP_THRESHOLD", "100000000000000000000", "NOTIFY_LOOP_THRESHOLD"),
        # accepted, then every email send failed on it as a configuration error
        ("NOTIFY_SES_CONFIGURATION_SET", "bad name!", "NOTIFY_SES_CONFIGURATION_SET"),
    ],
)
def test_a_bad_setting_names_the_variable_and_the_accepted_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert named in message
    assert "expected:" in message


@pytest.mark.parametrize(
    ("given", "region"),
    [
        ("us-east-1", "us-east-1"),
        (" eu-west-1\n", "eu-west-1"),
        ("US-GOV-WEST-1", "us-gov-west-1"),
        ("cn-north-1", "cn-north-1"),
        ("eusc-de-east-1", "eusc-de-east-1"),
    ],
)
def test_a_region_code_is_taken_in_any_case_without_spaces(
    monkeypatch: pytest.MonkeyPatch, given: str, region: str
) -> None:
    """Before, a region botocore cannot use was taken: with spaces every AWS call failed
    (InvalidRegionError), with a typo (us-east1) every send failed to connect and was retried
    for ever as a network problem."""
    monkeypatch.setenv("NOTIFY_AWS_REGION", given)
    assert load_settings().aws_region == region


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("NOTIFY_ALERT_SNS_TOPIC_ARN", "notifyops-oncall", "SNS topic ARN"),
        ("NOTIFY_ALERT_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:123:oncall", "SNS topic ARN"),
        ("NOTIFY_SMS_DELIVERY_LOG_ROLE_ARN", "sns-sms-delivery-logs", "IAM role ARN"),
        (
            "NOTIFY_SMS_DELIVERY_LOG_ROLE_ARN",
            "arn:aws:iam::123456789012:user/ops",
            "IAM role ARN",
        ),
        ("NOTIFY_CLOUDWATCH_NAMESPACE", "", "CloudWatch namespace"),
        ("NOTIFY_CLOUDWATCH_NAMESPACE", "AWS/Notifications", "CloudWatch namespace"),
    ],
)
def test_an_aws_name_that_aws_would_refuse_stops_at_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    """Before, these were taken and failed late: the P1 page (SNS publish), `alarms install`,
    every metric publish, `receipts setup`."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"{variable}=.*{reason}"):
        load_settings()


def test_a_p1_topic_in_another_region_than_notify_aws_region_stops_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_AWS_REGION", "us-east-1")
    monkeypatch.setenv("NOTIFY_ALERT_SNS_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:oncall")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith("NOTIFY_ALERT_SNS_TOPIC_ARN is a topic in eu-west-1")
    assert "NOTIFY_AWS_REGION=us-east-1" in str(raised.value)
    monkeypatch.setenv("NOTIFY_AWS_REGION", "eu-west-1")
    assert load_settings().alert_sns_topic_arn == "arn:aws:sns:eu-west-1:123456789012:oncall"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NOTIFY_ALERT_SNS_TOPIC_ARN", " arn:aws:sns:us-east-1:123456789012:oncall "),
        ("NOTIFY_SMS_DELIVERY_LOG_ROLE_ARN", "arn:aws:iam::123456789012:role/sns/sms-logs"),
        ("NOTIFY_ALERT_SNS_TOPIC_ARN", ""),
    ],
)
def test_arns_are_taken_without_spaces_and_empty_is_unset(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    name = variable.removeprefix("NOTIFY_").lower()
    assert getattr(load_settings(), name) == (value.strip() or None)


def test_the_smtp_endpoint_follows_the_region_unless_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, it was us-east-1's whatever NOTIFY_AWS_REGION said: SES SMTP credentials made in
    eu-west-1 were refused there (535), and the failover stopped email with the fix
    'regenerate SMTP credentials'."""
    monkeypatch.delenv("NOTIFY_SMTP_HOST", raising=False)
    monkeypatch.setenv("NOTIFY_AWS_REGION", "eu-west-1")
    assert load_settings().smtp_host == "email-smtp.eu-west-1.amazonaws.com"
    monkeypatch.setenv("NOTIFY_SMTP_HOST", " smtp.example.net ")
    assert load_settings().smtp_host == "smtp.example.net"


@pytest.mark.parametrize(
    "host", ["smtp://email-smtp.us-east-1.amazonaws.com", "email-smtp.us-east-1.amazonaws.com:587"]
)
def test_an_smtp_host_with_a_scheme_or_port_stops_at_load(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """Before, it was taken and every SMTP connection failed on DNS, retried for ever."""
    monkeypatch.setenv("NOTIFY_SMTP_HOST", host)
    with pytest.raises(SettingsError, match=r"NOTIFY_SMTP_HOST=.*NOTIFY_SMTP_PORT"):
        load_settings()


@pytest.mark.parametrize("given", ["auto", "AUTO", " Auto "])
def test_ses_rate_auto_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    monkeypatch.setenv("NOTIFY_SES_RATE", given)
    assert load_settings().ses_rate == "auto"


@pytest.mark.parametrize(
    ("routing", "entry", "reason"),
    [
        ("P1=sms,log", "'P1=sms,log'", "'sms' is not a route (routes: sns, webhook, log)"),
        ("P1=sns,log;P2=slack", "'P2=slack'", "'slack' is not a route (routes: sns, webhook, log)"),
        ("P9=sns", "'P9=sns'", "names no severity P1-P4"),
        ("P1;P2=log", "'P1'", "is not SEVERITY=ROUTES"),
        ("P1=sns;p1=log", "'p1=log'", "gives P1 again (first 'P1=sns')"),
    ],
)
def test_an_unknown_alert_route_or_severity_stops_at_load_naming_the_entry(
    monkeypatch: pytest.MonkeyPatch, routing: str, entry: str, reason: str
) -> None:
    monkeypatch.setenv("NOTIFY_ALERT_ROUTING", routing)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("NOTIFY_ALERT_ROUTING=")
    assert f"entry {entry}" in message and reason in message


def test_a_route_named_twice_is_routed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """'P1=sns,log,SNS' sent the P1 page twice."""
    from notify.alerts import parse_routing

    monkeypatch.setenv("NOTIFY_ALERT_ROUTING", "P1=sns,log,SNS; P2=webhook,webhook")
    routing = parse_routing(load_settings().alert_routing)
    assert (routing[Severity.P1], routing[Severity.P2]) == (("sns", "log"), ("webhook",))


def test_alert_routing_accepts_every_route_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_ALERT_ROUTING", " p1 = SNS, webhook ,log ; P3=webhook; ")
    assert load_settings().alert_routing == "p1 = SNS, webhook ,log ; P3=webhook;"


def test_smtp_password_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SMTP_USERNAME", "AKIAEXAMPLESMTPUSER")
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "hunter2")
    settings = load_settings()
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "hunter2"
    assert "hunter2" not in str(settings.masked())
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "reason_part"),
    [
        ("NOTIFY_SMS_PRICES", '{"US": "-0.01"}', "from 0 to 100"),
        ("NOTIFY_SMS_PRICES", '{"USA": "0.01"}', "two-letter"),
        ("NOTIFY_SMS_PRICES", '{"GB": "NaN"}', "finite"),
        # the last of a country named twice won, without a word
        ("NOTIFY_SMS_PRICES", '{"GB": 0.1, "GB": 0.2}', "names 'GB' twice"),
        ("NOTIFY_SMS_PRICES", '{"GB": 0.1, "gb": 0.2}', "names 'GB' twice"),
        # the error quoted the bare value, NOTIFY_SMS_PRICES='abc'
        ("NOTIFY_SMS_PRICES", '{"GB": "abc"}', "the price for GB must be a number, not 'abc'"),
        ("NOTIFY_SMS_PRICES", '{"GB": true}', "the price for GB must be a number, not True"),
        ("NOTIFY_SMS_PRICE_USD", "-0.00645", "greater than or equal to 0"),
        ("NOTIFY_SMTP_PASSWORD", "", "must not be empty"),
        ("NOTIFY_SMTP_PASSWORD", "   ", "must not be empty"),
        ("NOTIFY_ALERT_WEBHOOK_URL", "hooks.slack.com/services/x", "http(s) URL"),
        # passed, then failed the check raising the alert (InvalidURL), naming no setting
        ("NOTIFY_ALERT_WEBHOOK_URL", "http://127.0.0.1:abc/x", "Port could not be cast"),
        ("NOTIFY_ALERT_WEBHOOK_URL", "http://[::1/x", "Invalid IPv6 URL"),
        ("NOTIFY_ALERT_WEBHOOK_URL", "https://hooks.slack.com/ser vices/x", "http(s) URL"),
        ("NOTIFY_ALERT_WEBHOOK_URL", "http://:80/x", "no host"),
    ],
)
def test_bad_prices_passwords_and_webhooks_are_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason_part: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert variable in str(raised.value) and reason_part in str(raised.value)


@pytest.mark.parametrize(
    ("prices", "said"),
    [
        (
            '{"UK": "0.0395"}',
            "'UK' is not a two-letter ISO country code that phone numbers have: use GB",
        ),
        ('{"ZZ": "0.01"}', "'ZZ' is not a two-letter ISO country code"),
        ('{"+44": "0.0395"}', "use GB"),
        ('{"USA": "0.01"}', "use US"),
    ],
)
def test_a_price_key_no_phone_number_has_stops_at_load_with_the_right_code(
    monkeypatch: pytest.MonkeyPatch, prices: str, said: str
) -> None:
    """A key like UK would load and leave every British number (GB) at the default price, so
    the daily cap and hourly alarm would undercount."""
    monkeypatch.setenv("NOTIFY_SMS_PRICES", prices)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith("NOTIFY_SMS_PRICES") and said in str(raised.value)


def test_price_keys_are_countries_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SMS_PRICES", '{"gb": "0.0395", " XK ": "0.05", "US": "0.00645"}')
    prices = load_settings().sms_prices
    assert prices == {"GB": Decimal("0.0395"), "XK": Decimal("0.05"), "US": Decimal("0.00645")}


def test_a_refused_value_is_never_echoed_with_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_DATABASE_URL", "mysql://app:hunter2@db/notify?password=hunter3")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "NOTIFY_DATABASE_URL" in message and "mysql://app:***@db" in message
    assert "hunter2" not in message and "hunter3" not in message


def test_masked_hides_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "NOTIFY_DATABASE_URL", "postgresql+psycopg2://app@db/notify?sslmode=require&password=pw9"
    )
    monkeypatch.setenv("NOTIFY_ALERT_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/tok3n")
    monkeypatch.setenv("NOTIFY_SMTP_USERNAME", "AKIAEXAMPLESMTPUSER")
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "hunter2")
    settings = load_settings()
    shown = settings.masked()
    assert shown["database_url"].endswith("password=***")
    assert shown["alert_webhook_url"] == "https://hooks.slack.com/***"
    assert shown["smtp_password"] == "********"
    for secret in ("pw9", "tok3n", "hunter2"):
        assert secret not in str(shown)
    assert {"hunter2", "pw9"} <= set(settings.secret_values())


@pytest.mark.parametrize("value", ["@", "ops@", "ops@localhost", "a b@example.com", "Ops <ops>"])
def test_a_sender_address_ses_would_refuse_at_every_send_stops_at_load(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NOTIFY_EMAIL_FROM", value)
    with pytest.raises(SettingsError, match=r"NOTIFY_EMAIL_FROM=.*must be an email address"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "taken"),
    [(" ops@example.com ", "ops@example.com"), ("Ops <ops@example.com>", "Ops <ops@example.com>")],
)
def test_a_sender_address_is_taken_with_a_display_name_and_without_spaces(
    monkeypatch: pytest.MonkeyPatch, value: str, taken: str
) -> None:
    monkeypatch.setenv("NOTIFY_EMAIL_FROM", value)
    assert load_settings().email_from == taken


@pytest.mark.parametrize(
    ("environment", "said"),
    [
        (
            {"NOTIFY_SMTP_PASSWORD": "secret"},
            "NOTIFY_SMTP_PASSWORD is set but NOTIFY_SMTP_USERNAME is not",
        ),
        (
            {"NOTIFY_SMTP_USERNAME": "AKIAUSER", "NOTIFY_SMTP_PASSWORD": "secret"}
            | {"NOTIFY_SMTP_USERNAME": "  "},
            "NOTIFY_SMTP_PASSWORD is set but NOTIFY_SMTP_USERNAME is not",
        ),
        (
            {"NOTIFY_SMTP_USERNAME": "AKIAUSER"},
            "NOTIFY_SMTP_USERNAME is set but NOTIFY_SMTP_PASSWORD",
        ),
        ({"NOTIFY_SENDER": "smtp"}, "NOTIFY_SENDER=smtp needs NOTIFY_SMTP_USERNAME"),
        (
            {"NOTIFY_RETRY_BASE_S": "7200"},
            "NOTIFY_RETRY_BASE_S=7200 is more than NOTIFY_RETRY_MAX_S=3600",
        ),
        (
            {"NOTIFY_SEND_WINDOW": "4"},
            "NOTIFY_SEND_WINDOW=4 is less than NOTIFY_SEND_CONCURRENCY=8",
        ),
    ],
    ids=["password-alone", "blank-user", "user-alone", "smtp-sender", "retry-delays", "window"],
)
def test_settings_that_do_not_go_together_stop_at_load(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], said: str
) -> None:
    """Before, these were taken: SMTP credentials missing one half left the email failover
    silently off, NOTIFY_SENDER=smtp failed at the first send, a first retry delay over the
    longest and a window smaller than the calls in flight were used as given."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=said):
        load_settings()


def test_an_empty_templates_dir_or_smtp_user_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """NOTIFY_TEMPLATES_DIR= read the current directory as a template directory."""
    monkeypatch.setenv("NOTIFY_TEMPLATES_DIR", "")
    monkeypatch.setenv("NOTIFY_SMTP_USERNAME", " ")
    settings = load_settings()
    assert (settings.templates_dir, settings.smtp_username) == (None, None)


def test_a_misspelt_notify_variable_is_named_with_the_setting_it_likely_means() -> None:
    """NOTIFY_SEND_CONCURENCY=3 left the default of 8 in force, without a word."""
    from notify.settings import unknown_variables

    environ = {
        "NOTIFY_SEND_CONCURENCY": "3",
        "notify_loop_treshold": "9",
        "NOTIFY_FOO": "x",
        "NOTIFY_SEND_CONCURRENCY": "3",  # a setting
        "NOTIFY_TEST_SLOW": "1",  # read by the tests, not a setting: known
        "PATH": "/bin",
    }
    assert unknown_variables(environ) == [
        "NOTIFY_FOO is not a notifyops setting and is ignored",
        "NOTIFY_SEND_CONCURENCY is not a notifyops setting and is ignored "
        "(did you mean NOTIFY_SEND_CONCURRENCY?)",
        "notify_loop_treshold is not a notifyops setting and is ignored "
        "(did you mean NOTIFY_LOOP_THRESHOLD?)",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("NOTIFY_ALERT_WEBHOOK_URL", "", "alert_webhook_url", None),  # refused, an ARN was not
        ("NOTIFY_ALERT_WEBHOOK_URL", "  ", "alert_webhook_url", None),
        ("NOTIFY_WORKER_NAME", "  ", "worker_name", None),  # named every lease owner "  "
        ("NOTIFY_WORKER_NAME", " worker-2 ", "worker_name", "worker-2"),
        ("NOTIFY_SES_CONFIGURATION_SET", " ops_set-1 ", "ses_configuration_set", "ops_set-1"),
        ("NOTIFY_SES_CONFIGURATION_SET", "", "ses_configuration_set", None),
    ],
)
def test_an_optional_setting_set_empty_is_unset_and_spaces_around_a_value_are_dropped(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: str | None
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), field) == expected
