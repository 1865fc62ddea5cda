"""The template catalogue (built-ins plus NOTIFY_TEMPLATES_DIR) as the dispatch form shows it,
read once when the flow module is imported: `prefect deploy` stores it in the deployment's
parameter schema (a list to choose from), so a new template appears after the next deploy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from notify.errors import NotifyError
from tasks.resources import runtime


def template_variables() -> dict[str, tuple[str, ...]]:
    """Each template's variables (those the request's context must give), by name."""
    try:
        catalog = runtime().catalog()
        names = catalog.names()
    except NotifyError:
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for name in names:
        try:
            found[name] = catalog.info(name).context_variables
        except NotifyError:  # a broken template is reported when it is used, not here
            found[name] = ()
    return found


VARIABLES = template_variables()

if TYPE_CHECKING:
    TemplateName = str
else:
    TemplateName: Any = Literal.__getitem__(tuple(VARIABLES)) if VARIABLES else str


def described() -> str:
    """`repair_assigned: repair_id, unit_number; test_message: sent_at` for the form."""
    return "; ".join(f"{name}: {', '.join(v) or '(none)'}" for name, v in VARIABLES.items())
