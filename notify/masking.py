"""Masked forms of phone numbers and email addresses for reports, artifacts and logs (PII)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

MASK = "***"


def mask_phone(phone: str | None) -> str | None:
    """The country code and the last digits only: '+15551234567' -> '+1***4567' (national numbers
    of 8 digits or more keep 4, shorter ones 2, very short ones none)."""
    if phone is None:
        return None
    value = phone.strip()
    country, national = _split_country(value)
    keep = 4 if len(national) >= 8 else 2 if len(national) >= 5 else 0
    return f"{country}{MASK}{national[len(national) - keep :] if keep else ''}"


def _split_country(value: str) -> tuple[str, str]:
    """('+1', '5551234567') for an E.164 number; ('', digits) when no country code is known."""
    import phonenumbers

    digits = "".join(ch for ch in value if ch.isdigit())
    if not value.startswith("+"):
        return "", digits
    try:
        code = str(phonenumbers.parse(value, None).country_code)
    except phonenumbers.NumberParseException:
        return "", digits
    return f"+{code}", digits[len(code) :]


def mask_email(address: str | None) -> str | None:
    """'alice@example.com' -> 'a***@example.com'; anything without '@' is fully masked."""
    if address is None:
        return None
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def mask_address(address: str | None) -> str | None:
    """Mask a phone (starts with '+' or a digit) or an email address, whichever it is."""
    if address is None:
        return None
    return mask_email(address) if "@" in address else mask_phone(address)


_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^\s/]*)(?=@)", re.I
)
_SECRET_KEYS = (
    r"password|passwd|pwd|secret|token|key|sig|signature|api_key|apikey|access_token"
    r"|aws_secret_access_key|secretaccesskey|aws_session_token|x-amz-signature"
    r"|x-amz-credential|x-amz-security-token"
)
# `password=x` in a query string or a libpq conninfo, `"SecretAccessKey": "x"` in JSON,
# `password: x` in YAML (but not an id such as `token:7`); the value ends at a separator, a quote,
# white space or `: ` (an error message going on after a URL).
_KEYED_SECRET = re.compile(
    rf"(?P<head>(?<![\w-])(?:{_SECRET_KEYS})"
    r"(?:\s*=\s*[\"']?|[\"']\s*:\s*[\"']?|\s*:\s+[\"']?))"
    r"(?P<secret>(?:[^&;,\s\"':]|:(?!\s|$))+)",
    re.I,
)
# Webhook URLs carry their credential in the path: keep the scheme and the host.
_WEBHOOK_URL = re.compile(
    r"(?P<head>\bhttps?://(?:hooks\.slack\.com|[^/\s'\"]*discord(?:app)?\.com"
    r"|[^/\s'\"]+(?=/\S*hook)))(?P<secret>/[^\s'\"]*)",
    re.I,
)


def mask_url(text: str, *, secrets: Iterable[str | None] = ()) -> str:
    """Hide secrets anywhere in `text` (a URL, an error message, a log line): the password of
    `scheme://user:pass@host`, `?password=` / `&token=` / `aws_secret_access_key=` values, the
    path of webhook URLs (Slack, Discord, any `.../hooks/...`), and each of `secrets` verbatim
    (the values of secret settings and credentials, however they turn up)."""
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _KEYED_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)
    return _WEBHOOK_URL.sub(lambda m: f"{m['head']}/{MASK}", text)


def mask_webhook(url: str | None) -> str | None:
    """Scheme and host only: 'https://hooks.slack.com/services/T/B/x' -> 'https://hooks.slack.com/***'."""
    if not url:
        return url
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/{MASK}"
