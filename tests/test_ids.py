"""A request's notification ids: one value to the orchestrator, a list of ints to everyone else."""

from __future__ import annotations

import pickle

from prefect.utilities.collections import visit_collection

from notify.enqueue import EnqueueResult
from notify.ids import NotificationIds
from notify.summaries import DispatchSummary
from notifyops.console import to_jsonable


def _answer(count: int) -> EnqueueResult:
    return EnqueueResult("req", NotificationIds(range(1, count + 1)), False, (), {})


def test_the_ids_read_like_the_tuple_they_replace() -> None:
    ids = NotificationIds([5, 7, 9])
    assert ids == (5, 7, 9) and ids == [5, 7, 9] and ids == NotificationIds((5, 7, 9))
    assert ids != (5, 7) and list(ids) == [5, 7, 9] and len(ids) == 3
    assert ids[0] == 5 and ids[-1] == 9 and ids[1:] == (7, 9)
    (first, *rest) = ids
    assert first == 5 and rest == [7, 9]
    assert pickle.loads(pickle.dumps(ids)) == ids


def test_the_ids_of_parts_are_joined_in_order() -> None:
    parts = [_answer(3), EnqueueResult("req", NotificationIds([10, 11]), False, (), {})]
    assert EnqueueResult.merged(parts).notification_ids == (1, 2, 3, 10, 11)


def test_send_json_still_shows_the_ids_as_a_list_of_ints() -> None:
    summary = DispatchSummary(enqueue=_answer(3))
    assert summary.model_dump(mode="json")["enqueue"]["notification_ids"] == [1, 2, 3]
    again = DispatchSummary.model_validate_json(summary.model_dump_json())
    assert again.enqueue.notification_ids == (1, 2, 3)
    assert to_jsonable(_answer(2))["notification_ids"] == [1, 2]


def test_the_orchestrator_walks_a_large_answer_in_as_many_steps_as_a_small_one() -> None:
    def steps(summary: DispatchSummary) -> int:
        seen: list[object] = []
        visit_collection(summary, visit_fn=seen.append, return_data=False)
        return len(seen)

    assert steps(DispatchSummary(enqueue=_answer(100_000))) == steps(
        DispatchSummary(enqueue=_answer(1))
    )
