"""Read SNS SMS delivery-status logs from CloudWatch Logs in batched time ranges.

Never one call per message (GSA#1465: per-message lookups get throttled): `filter_log_events`
over [checkpoint - overlap, now] for each of the two log groups, a slice of at most SLICE at a
time, every page stored and applied, then the checkpoint moves to the slice's end. Re-reading
the overlap is harmless (receipts are kept once) and catches lines CloudWatch ingested late.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from notify.db import transaction
from notify.marks import read_mark, set_mark
from notify.receipts.events import MalformedReceipt, ReceiptEvent, Source
from notify.receipts.parse import malformed_key, parse_sms_log
from notify.receipts.store import ApplyReport, keep_receipts

SLICE = timedelta(hours=1)
PAGE_LIMIT = 10_000  # filter_log_events maximum
SUCCESS_GROUP = "DirectPublishToPhoneNumber"


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
    for group in groups:
        checkpoint = _checkpoint(engine, group)
        start = (checkpoint - overlap) if checkpoint else now - lookback
        try:
            for slice_start, slice_end in _slices(start, now):
                _read_slice(logs, engine, group, slice_start, slice_end, now, result)
        except logs.exceptions.ResourceNotFoundException:
            result.missing_groups.append(group)  # no SMS logged yet, or logging not set up
    return result


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
