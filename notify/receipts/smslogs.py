"""Read SNS SMS delivery-status logs from CloudWatch Logs in batched time ranges.

Never one call per message (GSA#1465: per-message lookups get throttled): `filter_log_events`
over [checkpoint - overlap, now] for each of the two log groups, a slice of at most SLICE at a
time, every page stored and applied, then the checkpoint moves to the slice's end. Re-reading
the overlap is harmless (receipts are kept once) and catches lines CloudWatch ingested late.

A poll that reads a log group (one that exists) also records when the logs were first read
(`SMS_LOGS_SINCE`, never moved) and until when they have been read (`SMS_LOGS_UNTIL`): an SMS
sent before the first read (a database from before receipts, logging only now set up) can have
no receipt, so the 72 h rule (notify.receipts.crash) leaves it `sent`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from notify.db import RECEIPTS, transaction
from notify.marks import advance_mark, read_mark, set_mark
from notify.receipts.events import MalformedReceipt, ReceiptEvent, Source
from notify.receipts.parse import malformed_key, parse_sms_log
from notify.receipts.store import ApplyReport, keep_receipts

SLICE = timedelta(hours=1)
PAGE_LIMIT = 10_000  # filter_log_events maximum
SUCCESS_GROUP = "DirectPublishToPhoneNumber"
SMS_LOGS_SINCE = "sms-logs-read-since"  # the first poll that read an SMS delivery-log group
SMS_LOGS_UNTIL = "sms-logs-read-until"  # the end of the latest read


def sms_log_groups(region: str, account_id: str) -> tuple[str, str]:
    """The success and failure log groups SNS writes SMS delivery status to."""
    base = f"sns/{region}/{account_id}/{SUCCESS_GROUP}"
    return base, f"{base}/Failure"


@dataclass
class SmsLogReport:
    report: ApplyReport = field(default_factory=ApplyReport)
    lines: int = 0
    calls: int = 0
    missing_groups: list[str] = field(default_factory=list)
    # since when every SMS delivery-log line is read (None: never), and whether this poll began it
    read_since: datetime | None = None
    began: bool = False


def read_sms_logs(
    *,
    logs: Any,
    engine: Engine,
    groups: tuple[str, ...],
    now: datetime,
    overlap: timedelta,
    lookback: timedelta,
) -> SmsLogReport:
    result = SmsLogReport()
    read_before = False  # a checkpoint from an earlier poll (or an earlier version's)
    read_now = False
    for group in groups:
        checkpoint = _checkpoint(engine, group)
        read_before = read_before or checkpoint is not None
        start = (checkpoint - overlap) if checkpoint else now - lookback
        try:
            for slice_start, slice_end in _slices(start, now):
                _read_slice(logs, engine, group, slice_start, slice_end, now, result)
        except logs.exceptions.ResourceNotFoundException:
            result.missing_groups.append(group)  # no SMS logged yet, or logging not set up
        else:
            read_now = True
    with transaction(engine) as session:
        if read_now:
            result.read_since, result.began = note_logs_read(
                session, now=now, read_before=read_before
            )
        else:
            result.read_since = sms_logs_read(session)[0]
    return result


def note_logs_read(session: Session, *, now: datetime, read_before: bool) -> tuple[datetime, bool]:
    """Record that the SMS delivery logs were read up to `now`; returns since when they have been
    read and whether this read is the first. A database whose logs an earlier version read (a
    checkpoint, `read_before`) has read them since its first SMS receipt at the latest."""
    advance_mark(session, SMS_LOGS_UNTIL, now, now=now)
    since = read_mark(session, SMS_LOGS_SINCE)
    if since is not None and since[0] is not None:
        return since[0], False
    first = _first_sms_receipt(session) if read_before else None
    moment = min(first, now) if first is not None else now
    note = "SMS sent before then can have no delivery-status log line"
    set_mark(session, SMS_LOGS_SINCE, moment, now=now, note=note)
    return moment, True


def sms_logs_read(session: Session) -> tuple[datetime | None, datetime | None]:
    """(since, until): the span over which SMS delivery-status logs have been read (None: never)."""
    since, until = read_mark(session, SMS_LOGS_SINCE), read_mark(session, SMS_LOGS_UNTIL)
    return (since[0] if since else None), (until[0] if until else None)


def _first_sms_receipt(session: Session) -> datetime | None:
    query = select(func.min(RECEIPTS.c.received_at)).where(RECEIPTS.c.source == Source.sms.value)
    found: datetime | None = session.scalar(query)
    return found


def _checkpoint(engine: Engine, group: str) -> datetime | None:
    with transaction(engine) as session:
        mark = read_mark(session, _mark_name(group))
    return mark[0] if mark else None


def _mark_name(group: str) -> str:
    return f"sms-log:{group}"[:200]


def _slices(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    while start < end:
        stop = min(start + SLICE, end)
        yield start, stop
        start = stop


def _read_slice(
    logs: Any,
    engine: Engine,
    group: str,
    start: datetime,
    end: datetime,
    now: datetime,
    result: SmsLogReport,
) -> None:
    for page in _pages(logs, group, start, end, result):
        events, malformed = _parse_page(page)
        result.lines += len(page)
        result.report.add(keep_receipts(engine=engine, events=events, malformed=malformed, now=now))
    with transaction(engine) as session:
        set_mark(session, _mark_name(group), end, now=now)


def _pages(
    logs: Any, group: str, start: datetime, end: datetime, result: SmsLogReport
) -> Iterator[list[dict[str, Any]]]:
    request: dict[str, Any] = {
        "logGroupName": group,
        "startTime": _ms(start),
        "endTime": _ms(end),
        "limit": PAGE_LIMIT,
    }
    while True:
        response = logs.filter_log_events(**request)
        result.calls += 1
        yield response.get("events") or []
        token = response.get("nextToken")
        if not token or token == request.get("nextToken"):
            return
        request["nextToken"] = token


def _parse_page(
    page: list[dict[str, Any]],
) -> tuple[list[ReceiptEvent], list[tuple[str, str, str]]]:
    events: list[ReceiptEvent] = []
    malformed: list[tuple[str, str, str]] = []
    for item in page:
        message = str(item.get("message", ""))
        try:
            events.append(parse_sms_log(message, logged_at=_logged_at(item)))
        except MalformedReceipt as problem:
            malformed.append((malformed_key(message), Source.sms.value, str(problem)))
    return events, malformed


def _logged_at(item: dict[str, Any]) -> datetime | None:
    """When CloudWatch Logs took the line (None when its timestamp is not one)."""
    try:
        return datetime.fromtimestamp(int(item.get("timestamp", 0)) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
