"""What a parameter form sends for an optional field left empty.

The Prefect UI sends a cleared text field as `""`, not as null; for an optional field whose
description says empty means "any" or "now", that empty text must mean left out, or the run fails
on it (a time) or filters on it (a title no notification has, a template nothing has).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def empty_is_none(value: Any) -> Any:
    """`""` (or spaces) means left out; anything else is validated as given."""
    return None if isinstance(value, str) and not value.strip() else value


def field_errors(error: ValidationError) -> str:
    """A form's bad values as one line, each `field: message` (pydantic's own text is a block
    of lines ending in a link, shown whole as a run's failure)."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(dict.fromkeys(problems))
