"""The monitoring checks by name (a module of its own, so the CLI can name them cheaply)."""

from __future__ import annotations

from enum import StrEnum


class Check(StrEnum):
    sms_cost = "sms-cost"
    loops = "loops"
    failures = "failures"
    health = "health"
