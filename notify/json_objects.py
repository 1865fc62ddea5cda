"""JSON objects read strictly: a key given twice is refused, where json.loads keeps the last value
silently (a roster line, NOTIFY_SMS_PRICES). No imports beyond the standard library: settings
read it at start-up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class RepeatedKey(ValueError):
    """A JSON object names one key twice; `key` is that key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def refuse_repeated_keys(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The pairs as a dict (json.loads' `object_pairs_hook`); RepeatedKey for a key given twice."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise RepeatedKey(key)
        found[key] = value
    return found
