"""Flow parameters as pydantic models: the Prefect UI renders them as forms with these
descriptions and bounds, and rejects bad values before a run starts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from notify.enqueue import SendRequest
from notify.roster import ID_SEPARATORS, read_recipient_file
from notify.settings import Priority
from notify.validation import refuse_unstorable

LISTED_MAX = 50  # recipients a run's parameters list one by one; more go as one text


def split_recipients(value: Any) -> list[str]:
    """Recipients pasted as one text (comma, semicolon, newline or space separated) or a list."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part for item in items for part in ID_SEPARATORS.split(str(item)) if part]


class DispatchParams(BaseModel):
    """One send request: a template, its context and who gets it."""

    template: str = Field(
        ..., min_length=1, max_length=100, description="Template name, e.g. repair_assigned"
    )
    to: list[Annotated[str, Field(max_length=128)]] = Field(
        default_factory=list,
        description="Recipient external ids, e.g. technician:123 (a list, or one text separated "
        "by commas or newlines)",
    )
    to_file: str | None = Field(
        None, description="File with one external id per line (or a CSV with external_id column)"
    )
    context: dict[str, Any] = Field(
        default_factory=dict, description='Template variables, e.g. {"repair_id": "R-1"}'
    )
    priority: Priority | None = Field(None, description="low, normal, high or urgent")
    idempotency_key: str | None = Field(
        None, max_length=150, description="The same key again is a no-op answering the first ids"
    )
    skip_unknown: bool = Field(False, description="Send to the known recipients, report the rest")
    deliver: bool = Field(True, description="Deliver right after enqueueing")

    @field_validator("to", mode="before")
    @classmethod
    def _split(cls, value: Any) -> list[str]:
        return split_recipients(value)

    @field_validator("idempotency_key")
    @classmethod
    def _trimmed_key(cls, value: str | None) -> str | None:
        """Spaces around a key are not part of it: a key pasted with a trailing space would
        otherwise be another key, and send the request again. A key of spaces only is refused."""
        if value is None or not value:
            return value
        key = value.strip()
        if not key:
            raise ValueError("is blank (only spaces): give a key, or leave the option out")
        return key

    @model_validator(mode="after")
    def _someone(self) -> DispatchParams:
        if not self.to and not self.to_file:
            raise ValueError(
                "to: give at least one recipient id (on the command line: --to ID or "
                "--to-file FILE)"
            )
        refuse_unstorable(
            {
                "template": self.template,
                "to": self.to,
                "context": self.context,
                "idempotency_key": self.idempotency_key,
            }
        )
        return self

    def recipients(self) -> tuple[str, ...]:
        """`to` and the ids in `to_file` (read here, once), in order, without repeats."""
        listed = list(self.to)
        if self.to_file:
            listed += read_recipient_file(Path(self.to_file))
        return tuple(dict.fromkeys(listed))

    def resolved(self) -> DispatchParams:
        """The same request with `to_file` read into `to` (so it is read once, where it is)."""
        if not self.to_file:
            return self
        return self.model_copy(update={"to": list(self.recipients()), "to_file": None})

    def flow_parameters(self) -> dict[str, Any]:
        """The dispatch flow's parameters for this request (`to_file` read here, where it is).

        More than LISTED_MAX recipients go as one text, an id per line (the flow splits it, as
        it does a text pasted in the UI): Prefect walks a list parameter item by item when it
        serializes, stores and resolves the run's parameters (0.15-0.2 s per 10,000 measured)."""
        request = self.resolved()
        return {
            "template": request.template,
            "to": list(request.to) if len(request.to) <= LISTED_MAX else "\n".join(request.to),
            "context": request.context,
            "priority": request.priority,
            "idempotency_key": request.idempotency_key,
            "skip_unknown": request.skip_unknown,
            "deliver": request.deliver,
        }

    def send_request(self, default_key: str | None = None) -> SendRequest:
        """The library's request; `default_key` makes a retried run idempotent without a key."""
        return SendRequest(
            template=self.template,
            to=self.recipients(),
            context=self.context,
            priority=self.priority,
            idempotency_key=self.idempotency_key or default_key,
            skip_unknown=self.skip_unknown,
        )


class DeliverParams(BaseModel):
    """How much a delivery run may do (a key it does not know is refused, naming it)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int | None = Field(
        None, ge=1, le=50_000, description="Rows per claim (default NOTIFY_BATCH_SIZE)"
    )
    max_batches: int = Field(
        1_000, ge=1, le=100_000, description="Stop after this many claims (the rest waits)"
    )
    parallel_batches: int = Field(
        2, ge=1, le=8, description="Claims delivered at once by this run (capped thread pool)"
    )
