"""The template catalogue (built-ins plus NOTIFY_TEMPLATES_DIR) as the dispatch form shows it,
read once when the flow module is imported: `prefect deploy` stores it in the deployment's
parameter schema (a list to choose from), so a new template appears after the next deploy. An
internal template (meta.json `"internal": true`: the deliverer's `digest`) is not offered, and a
run naming it anyway is refused saying why (notify.enqueue refuses it too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator

from notify.errors import NotifyError
from notify.rendering import TemplateCatalog, internal_refusal
from tasks.resources import runtime


def _catalog() -> TemplateCatalog | None:
    try:
        return runtime().catalog()
    except NotifyError:
        return None


def _names(catalog: TemplateCatalog) -> list[str]:
    try:
        return catalog.names()
    except NotifyError:
        return []


def internal_templates(catalog: TemplateCatalog, names: list[str]) -> frozenset[str]:
    """Of `names`, the templates the deliverer makes (meta.json `"internal": true`): never in
    the form."""
    return frozenset(name for name in names if catalog.is_internal(name))


def template_variables(catalog: TemplateCatalog, names: list[str]) -> dict[str, tuple[str, ...]]:
    """Each of `names` (the templates a request may name) with its variables (those the
    request's context must give), by name."""
    found: dict[str, tuple[str, ...]] = {}
    for name in names:
        try:
            found[name] = catalog.info(name).context_variables
        except NotifyError:  # a broken template is reported when it is used, not here
            found[name] = ()
    return found


def refuse_internal(value: Any) -> Any:
    """A run naming an internal template is refused saying so (not only "Input should be ...")."""
    if isinstance(value, str) and value in INTERNAL:
        raise ValueError(internal_refusal(value))
    return value


_CATALOG = _catalog()
_NAMES = _names(_CATALOG) if _CATALOG is not None else []  # the catalogue's directories, read once
INTERNAL = internal_templates(_CATALOG, _NAMES) if _CATALOG is not None else frozenset()
VARIABLES = (
    template_variables(_CATALOG, [name for name in _NAMES if name not in INTERNAL])
    if _CATALOG is not None
    else {}
)

if TYPE_CHECKING:
    TemplateName = str
else:
    TemplateName: Any = (
        Annotated[Literal.__getitem__(tuple(VARIABLES)), BeforeValidator(refuse_internal)]
        if VARIABLES
        else str
    )


def described() -> str:
    """`repair_assigned: repair_id, unit_number; test_message: sent_at` for the form."""
    return "; ".join(f"{name}: {', '.join(v) or '(none)'}" for name, v in VARIABLES.items())
