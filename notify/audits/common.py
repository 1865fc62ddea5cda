"""What every audit shares: the window, money, rates, and the report header (`Report` lives in
notify/reports.py, so the flows that show a report need not load every audit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from notify.errors import InputError
from notify.money import MICRO
from notify.money import money as money  # re-exported: the audits' money
from notify.reports import Report as Report  # re-exported: the audits build on it
from notify.severity import Assessment

RATE_DIGITS = 4


@dataclass(frozen=True)
class Window:
    """The half-open interval (start, end]: a row exactly at `start` is out, one at `end` is in."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        return round((self.end - self.start).total_seconds() / 3600, 6)


def resolve_window(as_of: datetime, window: timedelta) -> Window:
    """(as_of - window, as_of] in UTC; `as_of` may be in any zone but must be aware."""
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise InputError(f"as_of {as_of.isoformat()} has no time zone (accepted: an aware time)")
    if window <= timedelta(0):
        raise InputError(f"window {window} must be positive (accepted: e.g. 24h)")
    end = as_of.astimezone(UTC)
    return Window(start=end - window, end=end)


def usd_from_micros(micros: Any) -> Decimal:
    """Exact dollars from a SUM of micro-dollars (an int, a float that holds one, or None)."""
    return (Decimal(int(micros or 0)) * MICRO).quantize(MICRO)


def rate(part: int, whole: int) -> float:
    """part / whole rounded to 4 digits; 0.0 for an empty whole."""
    return round(part / whole, RATE_DIGITS) if whole else 0.0


def seconds(value: Any) -> float:
    """A duration from SQL (timedelta, Decimal, float or None) in seconds, to the millisecond."""
    if isinstance(value, timedelta):
        return round(value.total_seconds(), 3)
    return round(float(value or 0), 3)


def header(window: Window, assessment: Assessment, breaches: list[str]) -> dict[str, Any]:
    """The Report fields for a window, its assessment and the thresholds it breached."""
    return {
        "as_of": window.end,
        "window_start": window.start,
        "window_hours": window.hours,
        "severity": assessment.severity,
        "findings": assessment.findings,
        "breaches": tuple(breaches),
        "breached": bool(breaches),
    }
