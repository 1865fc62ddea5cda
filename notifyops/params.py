"""Flow parameters built from command-line values: a bad value is one line naming the option."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from notify.errors import InputError

Model = TypeVar("Model", bound=BaseModel)


def build(model: type[Model], options: Mapping[str, str] | None = None, **values: Any) -> Model:
    """`model(**values)`, or InputError: `--idempotency-key: String should have at most 150
    characters` (the option named as the command line spells it; `options` maps a field to its
    option where they differ, e.g. {"window_hours": "--window"})."""
    try:
        return model(**values)
    except ValidationError as error:
        raise InputError(describe(error, options)) from None


def describe(error: ValidationError, options: Mapping[str, str] | None = None) -> str:
    problems = []
    for item in error.errors():
        location = [str(part) for part in item["loc"] if not isinstance(part, int)]
        message = str(item["msg"]).removeprefix("Value error, ")
        if location:
            option = (options or {}).get(location[0], f"--{location[0].replace('_', '-')}")
            message = f"{option}: {message}"
        problems.append(message)
    return "; ".join(dict.fromkeys(problems))
