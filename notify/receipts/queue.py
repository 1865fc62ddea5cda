"""Read SES events from the receipts SQS queue: long-poll in batches of 10, store and apply a
chunk in one transaction, then delete those messages (only after the commit).

A crash between the commit and the delete redelivers the messages; their receipts are already
kept, so the second pass changes nothing and deletes them. A message we cannot read is kept in
`receipts` as malformed (and deleted from the queue), and so is one the database refuses
(`store.keep_receipts`); if the database is away nothing is deleted and SQS redelivers the chunk
(after maxReceiveCount it goes to the dead-letter queue).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from notify.receipts.events import MalformedReceipt, ReceiptEvent, Source
from notify.receipts.parse import malformed_key, parse_sqs_body
from notify.receipts.store import ApplyReport, keep_receipts

RECEIVE_MAX = 10  # SQS ReceiveMessage limit
DELETE_MAX = 10  # SQS DeleteMessageBatch limit
CHUNK_RECEIVES = 10  # receives folded into one transaction (up to 100 messages)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class QueueMessage:
    receipt_handle: str
    body: str


def poll_queue(
    *,
    sqs: Any,
    queue_url: str,
    engine: Engine,
    clock: Clock,
    max_messages: int,
    wait_s: int,
    after_commit: Callable[[Sequence[QueueMessage]], None] | None = None,
) -> ApplyReport:
    """Drain the queue until it is empty or `max_messages` were read."""
    report = ApplyReport()
    read = 0
    while read < max_messages:
        chunk = _receive_chunk(sqs, queue_url, wait_s, max_messages - read)
        if not chunk:
            break
        read += len(chunk)
        report.add(store_and_apply(engine=engine, bodies=[m.body for m in chunk], now=clock()))
        if after_commit is not None:  # tests: a crash between the commit and the delete
            after_commit(chunk)
        delete_messages(sqs, queue_url, chunk)
    return report


def _receive_chunk(sqs: Any, queue_url: str, wait_s: int, room: int) -> list[QueueMessage]:
    chunk: list[QueueMessage] = []
    for _ in range(CHUNK_RECEIVES):
        want = min(RECEIVE_MAX, room - len(chunk))
        if want <= 0:
            break
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=want, WaitTimeSeconds=wait_s
        )
        messages = response.get("Messages") or []
        chunk.extend(QueueMessage(m["ReceiptHandle"], m.get("Body", "")) for m in messages)
        if len(messages) < want:
            break
    return chunk


def store_and_apply(*, engine: Engine, bodies: Sequence[str], now: datetime) -> ApplyReport:
    """Parse bodies, keep them (malformed ones with their reason), apply: one transaction."""
    events: list[ReceiptEvent] = []
    malformed: list[tuple[str, str, str]] = []
    for body in bodies:
        try:
            events.append(parse_sqs_body(body))
        except MalformedReceipt as problem:
            malformed.append((malformed_key(body), Source.ses.value, str(problem)))
    return keep_receipts(engine=engine, events=events, malformed=malformed, now=now)


def delete_messages(sqs: Any, queue_url: str, messages: Sequence[QueueMessage]) -> None:
    for start in range(0, len(messages), DELETE_MAX):
        batch = messages[start : start + DELETE_MAX]
        entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch)]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
