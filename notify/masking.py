"""Masked forms of phone numbers and email addresses for reports, artifacts and logs (PII)."""

from __future__ import annotations

import re

MASK = "***"
_PHONE_HEAD = 5  # "+1555"
_PHONE_TAIL = 4  # "4567"


def mask_phone(phone: str | None) -> str | None:
    """'+15551234567' -> '+1555***4567'; short numbers keep at most a third at each end."""
    if phone is None:
        return None
    value = phone.strip()
    if len(value) > _PHONE_HEAD + _PHONE_TAIL:
        return f"{value[:_PHONE_HEAD]}{MASK}{value[-_PHONE_TAIL:]}"
    keep = len(value) // 3
    return f"{value[:keep]}{MASK}{value[len(value) - keep :]}" if keep else MASK


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
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?=@)", re.I
)
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|key|sig|signature)=)(?P<secret>[^&;\s]+)",
    re.I,
)


def mask_url(text: str) -> str:
    """Hide passwords in URLs anywhere in `text`: `user:pass@` and `?password=` / `&token=`."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)
