"""Portable SQL pieces for SQLite and PostgreSQL: hour buckets, durations, exact money sums."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Interval, cast, func, literal_column, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from notify.db import Channel, DeliveryLog, UTCDateTime

POSTGRES = "postgresql"
SECONDS_PER_DAY = 86_400.0
MICROS_PER_USD = 1_000_000
ALL_CHANNELS = tuple(channel.value for channel in Channel)


def hour_bucket(column: Any, dialect: str) -> ColumnElement[datetime]:
    """The UTC hour a timestamp falls in, as an aware datetime (same on both databases)."""
    if dialect == POSTGRES:
        utc = func.timezone(literal_column("'UTC'"), column)
        expr = func.date_trunc(literal_column("'hour'"), utc)
    else:  # SQLite stores naive UTC text: "YYYY-MM-DD HH:MM:SS.ffffff"
        expr = func.strftime(literal_column("'%Y-%m-%d %H:00:00'"), column)
    return type_coerce(expr, UTCDateTime())


def duration(later: Any, earlier: Any, dialect: str) -> ColumnElement[Any]:
    """`later - earlier`: an interval on PostgreSQL (cheap to average and sort: no per-row
    numeric conversion), seconds as a float on SQLite. Read results with `common.seconds`."""
    if dialect == POSTGRES:
        return type_coerce(later - earlier, Interval())
    days = func.julianday(later) - func.julianday(earlier)
    return cast(days * SECONDS_PER_DAY, Float)


def micros_sum(column: Any) -> ColumnElement[int]:
    """SUM of a USD column in whole micro-dollars: exact on SQLite (REAL storage) and Postgres."""
    micros = cast(func.round(column * MICROS_PER_USD), BigInteger)
    return func.coalesce(func.sum(micros), 0)


def any_channel() -> ColumnElement[bool]:
    """`channel IN ('email', 'sms')`: always true, but it lets the (channel, created_at) and
    (channel, sent_at) indexes serve a time window over every channel."""
    return DeliveryLog.channel.in_(ALL_CHANNELS)


def rollup_hour(column: Any, dialect: str) -> ColumnElement[datetime]:
    """The UTC hour a timestamp falls in, as a value to store in a UTCDateTime column: a
    timestamptz on PostgreSQL, the text SQLAlchemy itself writes on SQLite (so comparisons with
    bound datetimes hold)."""
    if dialect == POSTGRES:
        utc = func.timezone(literal_column("'UTC'"), column)
        trunc = func.date_trunc(literal_column("'hour'"), utc)
        expr = func.timezone(literal_column("'UTC'"), trunc)
    else:
        expr = func.strftime(literal_column("'%Y-%m-%d %H:00:00.000000'"), column)
    return type_coerce(expr, UTCDateTime())


def latency_us(later: Any, earlier: Any, dialect: str) -> ColumnElement[int]:
    """`later - earlier` in whole microseconds (exact on PostgreSQL; via julianday on SQLite).
    The rollups and the live reads use this one expression, so they agree to the unit."""
    if dialect == POSTGRES:
        epoch = func.extract("epoch", later - earlier)
        return cast(func.round(epoch * MICROS_PER_USD), BigInteger)
    days = func.julianday(later) - func.julianday(earlier)
    return cast(func.round(days * (SECONDS_PER_DAY * MICROS_PER_USD)), BigInteger)


def latency_ms(micros: ColumnElement[int]) -> ColumnElement[int]:
    """Microseconds to milliseconds, half up (for non-negative latencies)."""
    return cast((micros + 500) // 1000, BigInteger)
