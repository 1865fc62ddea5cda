"""What a parameter form sends for an optional field left empty.

The Prefect UI sends a cleared text field as `""`, not as null; for an optional field whose
description says empty means "any" or "now", that empty text must mean left out, or the run fails
on it (a time) or filters on it (a title no notification has, a template nothing has).
"""

from __future__ import annotations

from typing import Any


def empty_is_none(value: Any) -> Any:
    """`""` (or spaces) means left out; anything else is validated as given."""
    return None if isinstance(value, str) and not value.strip() else value
