"""Error messages normalised so the same cause groups together, and the runbook's cause and fix.

Quoted values, URLs, ARNs, email addresses, phone numbers, ids and numbers are replaced by
placeholders; a list of one placeholder collapses to one ("<email>, <email>" -> "<email>").
"""

from __future__ import annotations

import re

from notify.errors import FIX_SEPARATOR, KNOWN_KINDS, UNKNOWN, ErrorKind, as_recorded, classify

MAX_CHARS = 200
_SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"\barn:[\w:/+=,.@*-]+"), "<arn>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`"), "'<value>'"),
    (re.compile(r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b"), "<id>"),
    (re.compile(r"\+\d[\d\s().-]{5,}\d"), "<phone>"),
    (re.compile(r"\b(?=(?:[\w-]*?\d){2})[A-Za-z0-9_-]{8,}\b"), "<id>"),  # 2+ digits
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "<n>"),
    (re.compile(r"(<\w+>)(?:\s*,\s*\1)+"), r"\1"),
    (re.compile(r"\s+"), " "),
)
_KIND_CODES = frozenset(kind.code for kind in KNOWN_KINDS if kind is not UNKNOWN)
_PHRASES: tuple[tuple[str, str], ...] = (
    ("rate exceeded", "Throttling"),
    ("daily message quota", "Throttling"),
    ("invalid email address", "InvalidAddress"),
    ("address not verified", "MessageRejected"),
    ("not verified", "MessageRejected"),
    ("opted out", "OptedOut"),
)


def normalise_error_message(message: str | None) -> str:
    """The message with variable parts replaced, whitespace collapsed, at most 200 characters."""
    text = (message or "").split(FIX_SEPARATOR)[0]  # the stored fix is not part of the cause
    for pattern, placeholder in _SUBSTITUTIONS:
        text = pattern.sub(placeholder, text)
    return text.strip()[:MAX_CHARS]


def kind_for(code: str | None, message: str | None, error_class: str | None = None) -> ErrorKind:
    """The known kind for a stored failure: by its code, else by a code or phrase in its text;
    with the class the deliverer recorded, where the text alone cannot tell (SES's "not
    verified" naming our sender, recorded as config, masked to `<email>` in the normalised
    message: `notify.errors.as_recorded`)."""
    return as_recorded(_kind_by_text(code, message), error_class)


def _kind_by_text(code: str | None, message: str | None) -> ErrorKind:
    text = message or ""
    kind = classify(code or "", text)
    if kind is not UNKNOWN:
        return kind
    for token in re.findall(r"[A-Za-z][A-Za-z0-9]+", text):
        if token in _KIND_CODES:
            return classify(token, text)
    lowered = text.lower()
    hint = next((c for phrase, c in _PHRASES if phrase in lowered), None)
    return classify(hint, text) if hint else UNKNOWN


def normalize_error(message: str) -> str:
    """What the outbox stores in delivery_logs.error_norm with a failure (the audits group by it):
    `normalise_error_message(message)`."""
    return normalise_error_message(message)
