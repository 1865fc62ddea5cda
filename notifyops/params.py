"""Flow parameters built from command-line values: a bad value is one line naming the option."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from notify.errors import InputError

Model = TypeVar("Model", bound=BaseModel)
_LEADING_FIELD = re.compile(r"(\w+): (.*)", re.DOTALL)  # "statuses: unknown needs ..."
_FIELD_IN_BACKTICKS = re.compile(r"`(\w+)`")  # "... needs `allow_unknown`"


def build(model: type[Model], options: Mapping[str, str] | None = None, **values: Any) -> Model:
    """`model(**values)`, or InputError: `--idempotency-key: String should have at most 150
    characters` (the field named as the command line spells it; `options` maps a field to its
    option where they differ, e.g. {"window_hours": "--window"})."""
    try:
        return model(**values)
    except ValidationError as error:
        raise InputError(describe(error, model, options)) from None


def describe(
    error: ValidationError, model: type[BaseModel], options: Mapping[str, str] | None = None
) -> str:
    """Each problem as `OPTION: message`. A model-level check names its field as its message's
    first word (`statuses: unknown needs ...`), which is read as its location, and the other
    fields it names in backticks (`allow_unknown`), which become their options (--allow-unknown):
    a form shows the field names, the command line the options one types."""
    problems = []
    for item in error.errors():
        location = [str(part) for part in item["loc"] if not isinstance(part, int)]
        message = str(item["msg"]).removeprefix("Value error, ")
        leading = _LEADING_FIELD.fullmatch(message)
        if not location and leading and leading.group(1) in model.model_fields:
            location, message = [leading.group(1)], leading.group(2)
        message = _options_named(message, model, options)
        if location:
            message = f"{option_for(location[0], options)}: {message}"
        problems.append(message)
    return "; ".join(dict.fromkeys(problems))


def _options_named(message: str, model: type[BaseModel], options: Mapping[str, str] | None) -> str:
    """The message with each model field it names in backticks spelt as its option."""

    def option(reference: re.Match[str]) -> str:
        field = reference.group(1)
        return option_for(field, options) if field in model.model_fields else reference.group()

    return _FIELD_IN_BACKTICKS.sub(option, message)


def option_for(field: str, options: Mapping[str, str] | None = None) -> str:
    """How the command line spells a model field: `options[field]` where the command names it
    otherwise (`{"statuses": "--status"}`, an argument `{"recipient": "recipient"}`), else
    `--field-name`."""
    return (options or {}).get(field, f"--{field.replace('_', '-')}")
