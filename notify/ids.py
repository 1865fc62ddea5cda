"""The notification ids a request answers with, as one value rather than a tuple of ints.

An orchestrator that receives a task's or a flow's return value walks every list, tuple and
dataclass in it looking for things to resolve: 2.8 us an id, measured (0.28 s for a request of
100,000 recipients, and again for each part's answer and for the run's summary, several seconds
for 1,000,000). `NotificationIds` is a read-only sequence of ints that such a walk treats as one
leaf. To pydantic (the summaries, `send --json`) it is a list of ints, in and out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any, overload

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


class NotificationIds(Sequence[int]):
    """Notification ids in request order (immutable; equal to another sequence of the same
    ids, a tuple or a list included)."""

    __slots__ = ("_ids",)

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self._ids: tuple[int, ...] = ids._ids if isinstance(ids, NotificationIds) else tuple(ids)

    @classmethod
    def joined(cls, parts: Iterable[NotificationIds]) -> NotificationIds:
        """The ids of several parts, one after another (no per-id Python loop)."""
        return cls(chain.from_iterable(part._ids for part in parts))

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> NotificationIds: ...

    def __getitem__(self, index: int | slice) -> int | NotificationIds:
        if isinstance(index, slice):
            return NotificationIds(self._ids[index])
        return self._ids[index]

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NotificationIds):
            return self._ids == other._ids
        if isinstance(other, (tuple, list)):
            return self._ids == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._ids)

    def __repr__(self) -> str:
        shown = ", ".join(map(str, self._ids[:5])) + (", ..." if len(self._ids) > 5 else "")
        return f"NotificationIds([{shown}], {len(self._ids)} ids)"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        ints = core_schema.list_schema(core_schema.int_schema())
        from_list = core_schema.no_info_after_validator_function(cls, ints)
        return core_schema.union_schema(
            [core_schema.is_instance_schema(cls), from_list],
            serialization=core_schema.plain_serializer_function_ser_schema(
                _as_list, return_schema=ints
            ),
        )


def _as_list(ids: Sequence[int]) -> list[int]:
    return list(ids)
