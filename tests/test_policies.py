"""notify.policies: pure rules as parametrize tables. No database, no clock, no Prefect."""

from __future__ import annotations

import ast
import random
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from notify import policies
from notify.db import Channel
from notify.policies import (
    Action,
    ChannelDecision,
    RecipientPrefs,
    SendConditions,
    decide_channels,
    held_sms_again,
    in_quiet_hours,
    next_status_after_failure,
    quiet_hours_end,
    retry_delay,
)
from notify.settings import Priority

NOON_CHICAGO = datetime(2024, 6, 1, 17, 0, tzinfo=UTC)  # 12:00 CDT
NIGHT_CHICAGO = datetime(2024, 6, 2, 4, 0, tzinfo=UTC)  # 23:00 CDT, June 1
NY = "America/New_York"
# Santiago's clocks change at 24:00: its skipped or repeated hour is the one around midnight.
SANTIAGO = "America/Santiago"


def prefs(**changes: Any) -> RecipientPrefs:
    values: dict[str, Any] = {
        "external_id": "technician:123",
        "email": "tech@example.com",
        "phone": "+15555550123",
        "timezone": "America/Chicago",
        "receive_email": True,
        "receive_sms": True,
        "quiet_hours_start": None,
        "quiet_hours_end": None,
    }
    return RecipientPrefs(**(values | changes))


def cond(**changes: Any) -> SendConditions:
    values: dict[str, Any] = {
        "priority": Priority.high,
        "title": "Job assigned",
        "now": NOON_CHICAGO,
        "sms_min_priority": Priority.high,
        "sms_spent_today_usd": Decimal("0"),
        "sms_daily_cap_usd": Decimal("100"),
        "sms_estimated_cost_usd": Decimal("0.00645"),
        "loop_threshold": 5,
        "recent_sent": {},
        "suppressed": frozenset(),
    }
    return SendConditions(**(values | changes))


QUIET = {"quiet_hours_start": time(22, 0), "quiet_hours_end": time(7, 0)}


def decide(p: dict[str, Any], c: dict[str, Any]) -> tuple[ChannelDecision, ChannelDecision]:
    email, sms = decide_channels(prefs(**p), cond(**c))
    assert (email.channel, sms.channel) == (Channel.email, Channel.sms)
    assert len(email.reason) <= 300 and len(sms.reason) <= 300
    return email, sms


# --- email ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "c", "action", "reason"),
    [
        ({}, {}, Action.send, "email: send"),
        ({"email": None}, {}, Action.skip, "email: no email address"),
        ({"email": ""}, {}, Action.skip, "email: no email address"),
        ({"receive_email": False}, {}, Action.skip, "email: off in preferences"),
        ({"receive_email": False, "email": None}, {}, Action.skip, "email: off in preferences"),
        ({}, {"suppressed": frozenset({Channel.email})}, Action.skip, "email: address suppressed"),
        ({}, {"suppressed": frozenset({Channel.sms})}, Action.send, "email: send"),
        ({}, {"recent_sent": {Channel.email: 5}}, Action.skip, "loop guard: 5 of 'Job assigned'"),
        ({}, {"recent_sent": {Channel.sms: 9}}, Action.send, "email: send"),
        (QUIET, {"now": NIGHT_CHICAGO}, Action.send, "email: send"),
        ({}, {"priority": Priority.low}, Action.send, "email: send"),
    ],
    ids=[
        "send",
        "no-address",
        "empty-address",
        "opted-out",
        "opt-out-checked-before-address",
        "suppressed",
        "sms-suppression-does-not-stop-email",
        "loop-guard",
        "sms-loop-does-not-stop-email",
        "no-quiet-hours-for-email",
        "any-priority",
    ],
)
def test_email_rules(p: dict[str, Any], c: dict[str, Any], action: Action, reason: str) -> None:
    email, _ = decide(p, c)
    assert email.action is action
    assert reason in email.reason
    assert email.not_before is None


# --- sms ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "c", "action", "reason"),
    [
        ({}, {}, Action.send, "sms: send"),
        ({"receive_sms": False}, {}, Action.skip, "sms: off in preferences"),
        ({"phone": None}, {}, Action.skip, "sms: no phone number"),
        ({}, {"suppressed": frozenset({Channel.sms})}, Action.skip, "sms: phone number suppressed"),
        (
            {},
            {"priority": Priority.normal},
            Action.skip,
            "sms: priority normal below SMS minimum high",
        ),
        ({}, {"priority": Priority.low}, Action.skip, "priority low below SMS minimum high"),
        ({}, {"priority": Priority.urgent}, Action.send, "sms: send"),
        (
            {},
            {"sms_refused": policies.SMS_EMPTY},
            Action.skip,
            "sms: the template's SMS text is empty for this context",
        ),
        (
            {},
            {"sms_refused": policies.SMS_EMPTY, "priority": Priority.normal},
            Action.skip,
            "sms: priority normal below SMS minimum high",
        ),
        (
            {},
            {"sms_refused": "the SMS text is 1,601 bytes"},
            Action.skip,
            "sms: the SMS text is 1,601 bytes",
        ),
        (
            {},
            {"priority": Priority.high, "sms_min_priority": Priority.urgent},
            Action.skip,
            "priority high below SMS minimum urgent",
        ),
        (
            {},
            {"priority": Priority.low, "sms_min_priority": Priority.low},
            Action.send,
            "sms: send",
        ),
        (
            {},
            {"recent_sent": {Channel.sms: 5}},
            Action.skip,
            "sms: loop guard: 5 of 'Job assigned' to this recipient by sms in 24 h",
        ),
        (
            {},
            {"sms_spent_today_usd": Decimal("99.99"), "sms_estimated_cost_usd": Decimal("0.01")},
            Action.send,
            "sms: send",
        ),
        (
            {},
            {"sms_spent_today_usd": Decimal("99.99"), "sms_estimated_cost_usd": Decimal("0.02")},
            Action.skip,
            "sms: daily SMS cap $100.00 reached ($99.99 spent today); email instead",
        ),
        (
            {},
            {
                "sms_daily_cap_usd": Decimal("1000"),
                "sms_spent_today_usd": Decimal("1000"),
                "sms_estimated_cost_usd": Decimal("0.00645"),
            },
            Action.skip,
            "daily SMS cap $1,000.00 reached ($1,000.00 spent today)",
        ),
        (
            QUIET,
            {"now": NIGHT_CHICAGO},
            Action.defer,
            "sms: deferred to 07:00 America/Chicago (quiet hours 22:00-07:00)",
        ),
        (QUIET, {"now": NOON_CHICAGO}, Action.send, "sms: send"),
    ],
    ids=[
        "send",
        "opted-out",
        "no-phone",
        "suppressed",
        "priority-normal-below-high",
        "priority-low-below-high",
        "urgent-above-high",
        "empty-sms-text",
        "priority-said-before-empty-text",
        "sms-text-over-sns-size",
        "high-below-urgent-minimum",
        "low-at-low-minimum",
        "loop-guard",
        "cap-exactly-reached-still-sends",
        "cap-exceeded",
        "cap-money-format",
        "quiet-hours-defer",
        "outside-quiet-hours",
    ],
)
def test_sms_rules(p: dict[str, Any], c: dict[str, Any], action: Action, reason: str) -> None:
    _, sms = decide(p, c)
    assert sms.action is action
    assert reason in sms.reason
    assert (sms.not_before is not None) == (action is Action.defer)


@pytest.mark.parametrize(
    ("p", "c", "reason"),
    [
        (
            {"receive_sms": False},
            {"suppressed": frozenset({Channel.sms}), "priority": Priority.low},
            "off in preferences",
        ),
        ({"phone": None}, {"suppressed": frozenset({Channel.sms})}, "no phone number"),
        (
            {},
            {"suppressed": frozenset({Channel.sms}), "priority": Priority.low},
            "suppressed",
        ),
        (
            {},
            {"priority": Priority.normal, "recent_sent": {Channel.sms: 50}},
            "priority normal below SMS minimum high",
        ),
        (
            {},
            {"recent_sent": {Channel.sms: 5}, "sms_spent_today_usd": Decimal("500")},
            "loop guard",
        ),
        (
            QUIET,
            {"now": NIGHT_CHICAGO, "sms_spent_today_usd": Decimal("500")},
            "daily SMS cap",
        ),
        (QUIET, {"now": NIGHT_CHICAGO}, "deferred to 07:00"),
    ],
    ids=[
        "preferences-before-suppression",
        "phone-before-suppression",
        "suppression-before-priority",
        "priority-before-loop-guard",
        "loop-guard-before-cap",
        "cap-before-quiet-hours",
        "quiet-hours-last",
    ],
)
def test_sms_check_order(p: dict[str, Any], c: dict[str, Any], reason: str) -> None:
    _, sms = decide(p, c)
    assert reason in sms.reason


# --- loop guard -----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [Channel.email, Channel.sms])
@pytest.mark.parametrize(
    ("threshold", "recent", "action"),
    [
        (5, 0, Action.send),
        (5, 4, Action.send),
        (5, 5, Action.skip),
        (5, 6, Action.skip),
        (1, 0, Action.send),
        (1, 1, Action.skip),
    ],
    ids=[
        "none-yet",
        "fifth-sent",
        "sixth-at-threshold",
        "above-threshold",
        "t1-first",
        "t1-second",
    ],
)
def test_loop_threshold(channel: Channel, threshold: int, recent: int, action: Action) -> None:
    decisions = dict(
        zip(
            (Channel.email, Channel.sms),
            decide({}, {"loop_threshold": threshold, "recent_sent": {channel: recent}}),
            strict=True,
        )
    )
    decision = decisions[channel]
    assert decision.action is action
    if action is Action.skip:
        assert f"loop guard: {recent} of 'Job assigned' to this recipient by {channel}" in (
            decision.reason
        )


def test_loop_reason_shortens_a_long_title_and_stays_under_300_chars() -> None:
    title = "Job assigned " + "x" * 500
    email, sms = decide({}, {"title": title, "recent_sent": {Channel.email: 7, Channel.sms: 7}})
    assert email.action is sms.action is Action.skip
    assert "Job assigned xxx" in sms.reason and "…'" in sms.reason
    assert len(sms.reason) < 150


# --- daily cap fallback ---------------------------------------------------------------------

OVER_CAP = {"sms_spent_today_usd": Decimal("99.99"), "sms_estimated_cost_usd": Decimal("0.02")}


@pytest.mark.parametrize(
    ("p", "c", "email_action", "email_reason", "sms_reason"),
    [
        ({}, {}, Action.send, "email: send; also the fallback for sms", "; email instead"),
        (
            {"receive_email": False},
            {},
            Action.skip,
            "email: off in preferences",
            "; no email fallback (email: off in preferences)",
        ),
        (
            {"email": None},
            {},
            Action.skip,
            "email: no email address",
            "; no email fallback (email: no email address)",
        ),
        (
            {},
            {"suppressed": frozenset({Channel.email})},
            Action.skip,
            "email: address suppressed",
            "; no email fallback (email: address suppressed)",
        ),
        (
            {"receive_sms": False},
            {},
            Action.send,
            "email: send",
            "sms: off in preferences",
        ),
    ],
    ids=[
        "email-is-the-fallback",
        "email-opt-out-respected",
        "no-email-address",
        "email-suppression-respected",
        "sms-off-is-not-a-cap-case",
    ],
)
def test_cap_fallback(
    p: dict[str, Any],
    c: dict[str, Any],
    email_action: Action,
    email_reason: str,
    sms_reason: str,
) -> None:
    email, sms = decide(p, OVER_CAP | c)
    assert sms.action is Action.skip
    assert email.action is email_action
    assert email.reason.startswith(email_reason)
    assert sms.reason.endswith(sms_reason)


def test_cap_fallback_reason_names_cap_and_spend() -> None:
    email, sms = decide({}, OVER_CAP)
    cap = "daily SMS cap $100.00 reached ($99.99 spent today)"
    assert sms.reason == f"sms: {cap}; email instead"
    assert email.reason == f"email: send; also the fallback for sms ({cap})"


# --- quiet hours: the predicate -------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "start", "end", "inside"),
    [
        (time(23, 0), time(22, 0), time(7, 0), True),
        (time(0, 0), time(22, 0), time(7, 0), True),
        (time(3, 0), time(22, 0), time(7, 0), True),
        (time(12, 0), time(22, 0), time(7, 0), False),
        (time(22, 0), time(22, 0), time(7, 0), True),
        (time(21, 59, 59), time(22, 0), time(7, 0), False),
        (time(7, 0), time(22, 0), time(7, 0), False),
        (time(6, 59, 59, 999999), time(22, 0), time(7, 0), True),
        (time(13, 0), time(12, 0), time(14, 0), True),
        (time(12, 0), time(12, 0), time(14, 0), True),
        (time(14, 0), time(12, 0), time(14, 0), False),
        (time(23, 0), time(12, 0), time(14, 0), False),
        (time(22, 0), time(22, 0), time(22, 0), False),
        (time(3, 0), None, time(7, 0), False),
        (time(23, 0), time(22, 0), None, False),
    ],
    ids=[
        "wrap-evening",
        "wrap-midnight",
        "wrap-early-morning",
        "wrap-midday-outside",
        "wrap-exactly-at-start-inside",
        "wrap-just-before-start",
        "wrap-exactly-at-end-outside",
        "wrap-just-before-end",
        "day-window-inside",
        "day-window-at-start-inside",
        "day-window-at-end-outside",
        "day-window-outside",
        "start-equals-end-means-none",
        "no-start",
        "no-end",
    ],
)
def test_in_quiet_hours(local: time, start: time | None, end: time | None, inside: bool) -> None:
    assert in_quiet_hours(local, start, end) is inside


# --- quiet hours: the end of the window, in UTC ---------------------------------------------


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "tz", "start", "end", "expected"),
    [
        (utc(2024, 6, 2, 4), "America/Chicago", time(22), time(7), utc(2024, 6, 2, 12)),
        (utc(2024, 6, 2, 3), "America/Chicago", time(22), time(7), utc(2024, 6, 2, 12)),
        (utc(2024, 6, 2, 8), "America/Chicago", time(22), time(7), utc(2024, 6, 2, 12)),
        (utc(2024, 6, 2, 12), "America/Chicago", time(22), time(7), None),
        (utc(2024, 6, 2, 11, 59), "America/Chicago", time(22), time(7), utc(2024, 6, 2, 12)),
        (utc(2024, 6, 1, 17), "America/Chicago", time(22), time(7), None),
        (utc(2024, 6, 1, 18), "America/Chicago", time(12), time(14), utc(2024, 6, 1, 19)),
        (utc(2024, 6, 1, 18), "America/Chicago", time(12), time(12), None),
        # spring forward, 2024-03-10 02:00 EST -> 03:00 EDT: 22:00 EST + 9 h of wall clock is 8 h
        (utc(2024, 3, 10, 3), NY, time(22), time(7), utc(2024, 3, 10, 11)),
        (utc(2024, 3, 10, 8), NY, time(22), time(7), utc(2024, 3, 10, 11)),
        (utc(2024, 3, 10, 4, 30), NY, time(23), time(2, 30), utc(2024, 3, 10, 7)),
        # fall back, 2024-11-03 02:00 EDT -> 01:00 EST: 22:00 EDT + 9 h of wall clock is 10 h
        (utc(2024, 11, 3, 2), NY, time(22), time(7), utc(2024, 11, 3, 12)),
        (utc(2024, 11, 3, 6, 15), NY, time(22), time(7), utc(2024, 11, 3, 12)),
        (utc(2024, 11, 3, 4), NY, time(23), time(1, 30), utc(2024, 11, 3, 5, 30)),
        (utc(2024, 11, 3, 6), NY, time(23), time(1, 30), utc(2024, 11, 3, 6, 30)),
        (utc(2024, 11, 3, 5, 45), NY, time(23), time(1, 30), None),
        (utc(2024, 6, 1, 23), "Not/AZone", time(22), time(7), utc(2024, 6, 2, 7)),
        (utc(2024, 6, 1, 23), "", time(22), time(7), utc(2024, 6, 2, 7)),
        (utc(2024, 7, 1, 12), "Australia/Sydney", time(22), time(7), utc(2024, 7, 1, 21)),
        # Santiago springs forward 2024-09-07 24:00 -04 -> 2024-09-08 01:00 -03 (04:00 UTC):
        # an end at 00:00 is skipped and maps to the change; so is the start 00:30 of the next
        # night's window, which then runs to the next midnight
        (utc(2024, 9, 7, 20), SANTIAGO, time(0, 30), time(0), utc(2024, 9, 8, 4)),
        (utc(2024, 9, 8, 3, 59), SANTIAGO, time(0, 30), time(0), utc(2024, 9, 8, 4)),
        (utc(2024, 9, 8, 4), SANTIAGO, time(0, 30), time(0), utc(2024, 9, 9, 3)),
        (utc(2024, 9, 8, 3, 30), SANTIAGO, time(23), time(0), utc(2024, 9, 8, 4)),
        (utc(2024, 9, 8, 4), SANTIAGO, time(23), time(0), None),
        (utc(2024, 9, 8, 3, 30), SANTIAGO, time(0), time(23, 59), utc(2024, 9, 8, 3, 59)),
        (utc(2024, 9, 8, 4), SANTIAGO, time(0), time(23, 59), utc(2024, 9, 9, 2, 59)),
        # Santiago falls back 2024-04-06 24:00 -03 -> 23:00 -04 (2024-04-07 03:00 UTC): a window
        # that starts and ends inside the repeated hour ends when the clocks go back to 23:00,
        # not a day later; its second start runs to the next night's 23:00
        (utc(2024, 4, 7, 2, 29), SANTIAGO, time(23, 30), time(23), None),
        (utc(2024, 4, 7, 2, 30), SANTIAGO, time(23, 30), time(23), utc(2024, 4, 7, 3)),
        (utc(2024, 4, 7, 2, 59), SANTIAGO, time(23, 30), time(23), utc(2024, 4, 7, 3)),
        (utc(2024, 4, 7, 3), SANTIAGO, time(23, 30), time(23), None),
        (utc(2024, 4, 7, 3, 29), SANTIAGO, time(23, 30), time(23), None),
        (utc(2024, 4, 7, 3, 30), SANTIAGO, time(23, 30), time(23), utc(2024, 4, 8, 3)),
        (utc(2024, 4, 7, 3, 10), SANTIAGO, time(0), time(23, 30), utc(2024, 4, 7, 3, 30)),
        # the same at 01:00 in New York, and at Lord Howe's half-hour fall-back 02:00 -> 01:30
        (utc(2024, 11, 3, 5, 45), NY, time(1, 30), time(1), utc(2024, 11, 3, 6)),
        (
            utc(2024, 4, 6, 14, 50),
            "Australia/Lord_Howe",
            time(1, 45),
            time(1, 30),
            utc(2024, 4, 6, 15),
        ),
    ],
    ids=[
        "evening",
        "exactly-at-start",
        "after-midnight",
        "exactly-at-end-is-outside",
        "minute-before-end",
        "daytime-outside",
        "day-window",
        "start-equals-end",
        "ny-spring-forward-night",
        "ny-spring-forward-after-change",
        "ny-end-skipped-by-spring-forward",
        "ny-fall-back-night",
        "ny-fall-back-in-repeated-hour",
        "ny-end-repeated-first-pass",
        "ny-end-repeated-second-pass",
        "ny-between-the-two-passes",
        "unknown-zone-is-utc",
        "empty-zone-is-utc",
        "southern-hemisphere",
        "santiago-end-skipped-at-midnight",
        "santiago-end-skipped-minute-before",
        "santiago-start-skipped-after-change",
        "santiago-evening-to-skipped-midnight",
        "santiago-evening-window-over-at-change",
        "santiago-day-window-before-change",
        "santiago-day-window-after-change",
        "santiago-repeated-hour-before-start",
        "santiago-repeated-hour-at-start",
        "santiago-repeated-hour-minute-before-change",
        "santiago-repeated-hour-end-repeated-at-change",
        "santiago-repeated-hour-between",
        "santiago-repeated-hour-second-start",
        "santiago-day-window-end-repeated",
        "ny-window-inside-repeated-hour",
        "lord-howe-window-inside-repeated-half-hour",
    ],
)
def test_quiet_hours_end(
    now: datetime, tz: str, start: time, end: time, expected: datetime | None
) -> None:
    result = quiet_hours_end(now, tz, start, end)
    assert result == expected
    if result is not None:
        assert result.utcoffset() == timedelta(0)
        assert result > now


@pytest.mark.parametrize(
    ("now", "tz", "not_before", "reason"),
    [
        (
            NIGHT_CHICAGO,
            "America/Chicago",
            utc(2024, 6, 2, 12),
            "sms: deferred to 07:00 America/Chicago (quiet hours 22:00-07:00)",
        ),
        (
            utc(2024, 3, 10, 3),
            NY,
            utc(2024, 3, 10, 11),
            "sms: deferred to 07:00 America/New_York (quiet hours 22:00-07:00)",
        ),
        (
            utc(2024, 11, 3, 2),
            NY,
            utc(2024, 11, 3, 12),
            "sms: deferred to 07:00 America/New_York (quiet hours 22:00-07:00)",
        ),
        (
            utc(2024, 6, 1, 23),
            "Mars/Olympus",
            utc(2024, 6, 2, 7),
            "sms: deferred to 07:00 UTC (quiet hours 22:00-07:00)",
        ),
    ],
    ids=["chicago", "ny-spring-forward", "ny-fall-back", "bad-zone-falls-back-to-utc"],
)
def test_quiet_hours_defer(now: datetime, tz: str, not_before: datetime, reason: str) -> None:
    email, sms = decide(QUIET | {"timezone": tz}, {"now": now})
    assert (sms.action, sms.not_before, sms.reason) == (Action.defer, not_before, reason)
    assert email.action is Action.send


def test_gap_end_reason_shows_the_real_local_time() -> None:
    window = {"quiet_hours_start": time(23), "quiet_hours_end": time(2, 30), "timezone": NY}
    _, sms = decide(window, {"now": utc(2024, 3, 10, 4, 30)})
    assert sms.not_before == utc(2024, 3, 10, 7)
    assert sms.reason == "sms: deferred to 03:00 America/New_York (quiet hours 23:00-02:30)"


HELD_IN_LONDON = "sms: deferred to 07:00 Europe/London (quiet hours 22:00-07:00)"


@pytest.mark.parametrize(
    ("changes", "due", "reason"),
    [
        (
            {"timezone": "Europe/London"},
            None,
            None,
        ),
        (
            {"timezone": "Atlantic/Cape_Verde"},
            utc(2024, 6, 2, 8),
            "sms: deferred to 07:00 Atlantic/Cape_Verde (quiet hours 22:00-07:00)",
        ),
        (
            {"timezone": "Australia/Sydney"},
            utc(2024, 6, 1, 23),
            "sms: deferred to 09:00 Australia/Sydney (quiet hours 22:00-07:00 since a roster "
            "import; was to 07:00 Europe/London)",
        ),
        (
            {"timezone": "Europe/London", "quiet_hours_start": None, "quiet_hours_end": None},
            utc(2024, 6, 1, 23),
            "sms: deferred to 00:00 Europe/London (quiet hours none since a roster import; "
            "was to 07:00 Europe/London)",
        ),
    ],
    ids=["unchanged", "moved-west-still-night", "moved-east-now-day", "quiet-hours-removed"],
)
def test_a_held_sms_decided_again_with_the_recipients_new_zone(
    changes: dict[str, Any], due: datetime | None, reason: str | None
) -> None:
    """Held at 23:00 UTC on June 1 (00:00 in London) to 07:00 London; a roster import then
    changed the recipient: held to the new window's end, or due now (not in the old zone's
    morning, inside the new zone's quiet hours or hours late); unchanged, it stands."""
    now = utc(2024, 6, 1, 23)
    again = held_sms_again(prefs(**(QUIET | changes)), now, HELD_IN_LONDON)
    assert again == (None if due is None else (due, reason))


@pytest.mark.parametrize(
    ("priority", "action", "reason"),
    [
        (Priority.urgent, Action.send, "sms: send (urgent overrides quiet hours 22:00-07:00"),
        (Priority.high, Action.defer, "sms: deferred to 07:00"),
    ],
    ids=["urgent-overrides", "high-waits"],
)
def test_urgent_overrides_quiet_hours(priority: Priority, action: Action, reason: str) -> None:
    _, sms = decide(QUIET, {"now": NIGHT_CHICAGO, "priority": priority})
    assert sms.action is action
    assert sms.reason.startswith(reason)
    if action is Action.send:
        assert sms.not_before is None
        assert "America/Chicago" in sms.reason


# --- retry schedule -------------------------------------------------------------------------


class FixedU(random.Random):
    """A Random whose uniform() always returns u: the jitter extremes, exactly."""

    def __init__(self, u: float) -> None:
        super().__init__(0)
        self.u = u

    def uniform(self, a: float, b: float) -> float:
        return self.u


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(0, 30), (1, 30), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (50, 3600)],
    ids=["zero-as-first", "first", "second", "third", "fourth", "seventh", "capped", "far"],
)
def test_retry_delay_grows_then_caps(attempt: int, seconds: float) -> None:
    delay = retry_delay(attempt, base_s=30, max_s=3600, jitter=0.5, rng=FixedU(0.0))
    assert delay == timedelta(seconds=seconds)


def test_retry_delay_huge_attempt_does_not_overflow() -> None:
    assert retry_delay(100_000, base_s=30, max_s=3600, jitter=0, rng=FixedU(0.0)) == timedelta(
        hours=1
    )


@pytest.mark.parametrize(
    ("u", "jitter", "seconds"),
    [(-1.0, 0.2, 48), (1.0, 0.2, 72), (0.0, 0.2, 60), (0.5, 0.2, 66), (1.0, 0.0, 60), (-1, 2, 0)],
    ids=["low-end", "high-end", "middle", "half", "no-jitter", "never-negative"],
)
def test_retry_delay_jitter(u: float, jitter: float, seconds: float) -> None:
    delay = retry_delay(2, base_s=30, max_s=3600, jitter=jitter, rng=FixedU(u))
    assert delay.total_seconds() == pytest.approx(seconds)


def test_retry_delay_jitter_stays_in_bounds_and_varies() -> None:
    delays = {
        retry_delay(2, base_s=30, max_s=3600, jitter=0.2, rng=random.Random(seed)).total_seconds()
        for seed in range(200)
    }
    assert all(48 <= d <= 72 for d in delays)
    assert len(delays) > 100 and min(delays) < 52 and max(delays) > 68


def test_retry_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = retry_delay(3, base_s=30, max_s=3600, jitter=0.3, rng=random.Random(42))
    again = retry_delay(3, base_s=30, max_s=3600, jitter=0.3, rng=random.Random(42))
    assert first == again
    assert 84 <= first.total_seconds() <= 156


def test_retry_delay_without_rng_is_within_bounds() -> None:
    delay = retry_delay(1, base_s=10, max_s=60, jitter=0.1)
    assert 9 <= delay.total_seconds() <= 11


# --- status after a failure -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "attempts", "max_attempts", "status"),
    [
        ("transient", 1, 5, "pending_retry"),
        ("transient", 4, 5, "pending_retry"),
        ("transient", 5, 5, "failed"),
        ("transient", 6, 5, "failed"),
        ("transient", 1, 1, "failed"),
        ("permanent", 1, 5, "failed_permanent"),
        ("permanent", 5, 5, "failed_permanent"),
        ("quota", 1, 5, "pending_retry"),
        ("quota", 9, 5, "pending_retry"),
        ("config", 1, 5, "pending_retry"),
        ("config", 9, 5, "pending_retry"),
        ("PERMANENT", 1, 5, "failed_permanent"),
        ("mystery", 1, 5, "pending_retry"),
        ("mystery", 5, 5, "failed"),
    ],
    ids=[
        "transient-first",
        "transient-one-left",
        "transient-exhausted",
        "transient-over",
        "transient-single-attempt",
        "permanent-first",
        "permanent-last",
        "quota-first",
        "quota-past-max",
        "config-first",
        "config-past-max",
        "case-insensitive",
        "unknown-as-transient",
        "unknown-exhausted",
    ],
)
def test_next_status_after_failure(
    error_class: str, attempts: int, max_attempts: int, status: str
) -> None:
    assert next_status_after_failure(error_class, attempts, max_attempts) == status


# --- purity ---------------------------------------------------------------------------------


def test_policies_import_only_stdlib_and_notify() -> None:
    tree = ast.parse(Path(policies.__file__).read_text())
    modules = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    allowed = {"__future__", "collections", "dataclasses", "datetime", "decimal", "enum"}
    assert modules <= allowed | {"random", "zoneinfo", "notify"}


def test_a_quiet_hold_is_worded_as_enqueue_defers_and_notes_a_tried_row() -> None:
    late = datetime(2026, 12, 1, 4, 30, tzinfo=UTC)  # 22:30 in Chicago
    hold = policies.quiet_hold(late, "America/Chicago", time(22, 0), time(7, 0))
    assert hold == policies.QuietHold(
        until=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
        deferral="sms: deferred to 07:00 America/Chicago (quiet hours 22:00-07:00)",
        note=" | held by quiet hours until 07:00 America/Chicago",
    )
    evening = datetime(2026, 12, 1, 3, 59, tzinfo=UTC)  # 21:59
    assert policies.quiet_hold(evening, "America/Chicago", time(22, 0), time(7, 0)) is None


# A window inside Santiago's repeated hour (23:30-23:00): quiet from 23:30, over when the clocks
# go back from 24:00 to 23:00 (2024-04-07 03:00 UTC), quiet again from the second 23:30.
SANTIAGO_REPEATED_HOUR = {
    "timezone": SANTIAGO,
    "quiet_hours_start": time(23, 30),
    "quiet_hours_end": time(23, 0),
}


@pytest.mark.parametrize(
    ("now", "not_before"),
    [
        (utc(2024, 4, 7, 2, 29), None),
        (utc(2024, 4, 7, 2, 30), utc(2024, 4, 7, 3)),
        (utc(2024, 4, 7, 2, 59), utc(2024, 4, 7, 3)),
        (utc(2024, 4, 7, 3), None),
        (utc(2024, 4, 7, 3, 29), None),
        (utc(2024, 4, 7, 3, 30), utc(2024, 4, 8, 3)),
    ],
    ids=["23:29-03", "23:30-03", "23:59-03", "23:00-04", "23:29-04", "23:30-04"],
)
def test_sms_around_a_fall_back_inside_the_window(
    now: datetime, not_before: datetime | None
) -> None:
    _, sms = decide(SANTIAGO_REPEATED_HOUR, {"now": now})
    if not_before is None:
        assert (sms.action, sms.reason) == (Action.send, "sms: send")
    else:
        assert (sms.action, sms.not_before, sms.reason) == (
            Action.defer,
            not_before,
            "sms: deferred to 23:00 America/Santiago (quiet hours 23:30-23:00)",
        )


@pytest.mark.parametrize(
    ("now", "not_before", "shown"),
    [
        (utc(2024, 9, 8, 3, 59), utc(2024, 9, 8, 4), "01:00"),
        (utc(2024, 9, 8, 4), utc(2024, 9, 9, 3), "00:00"),
    ],
    ids=["23:59-04", "01:00-03"],
)
def test_sms_around_a_spring_forward_at_the_windows_end(
    now: datetime, not_before: datetime, shown: str
) -> None:
    """00:30-00:00 when Santiago skips 24:00 -> 01:00: the window ends at the change, and the
    next one (its 00:30 skipped too) has begun by then."""
    window = {"timezone": SANTIAGO, "quiet_hours_start": time(0, 30), "quiet_hours_end": time(0)}
    _, sms = decide(window, {"now": now})
    assert (sms.action, sms.not_before, sms.reason) == (
        Action.defer,
        not_before,
        f"sms: deferred to {shown} America/Santiago (quiet hours 00:30-00:00)",
    )
    hold = policies.quiet_hold(now, SANTIAGO, time(0, 30), time(0))
    assert hold is not None and (hold.until, hold.deferral) == (not_before, sms.reason)


def test_a_quiet_hold_ends_when_the_clocks_go_back_to_the_windows_end() -> None:
    late = utc(2024, 4, 7, 2, 45)  # 23:45 -03 on April 6; at 03:00 UTC it is 23:00 -04 again
    hold = policies.quiet_hold(late, SANTIAGO, time(23, 30), time(23, 0))
    assert hold == policies.QuietHold(
        until=utc(2024, 4, 7, 3),
        deferral="sms: deferred to 23:00 America/Santiago (quiet hours 23:30-23:00)",
        note=" | held by quiet hours until 23:00 America/Santiago",
    )
