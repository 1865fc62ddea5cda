"""Dollars as reports and messages show them: at the precision they have (micro-dollars), never
fewer than two decimals, so a sub-cent price or threshold is never shown as $0.00."""

from __future__ import annotations

from decimal import Decimal

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")


def money(amount: Decimal) -> Decimal:
    """Dollars at the precision they have (micro-dollars), never fewer than two decimals:
    12 x $0.00645 is $0.0774, not $0.08; $1.5 is $1.50."""
    exact = amount.quantize(MICRO).normalize()
    return exact.quantize(CENT) if exact.as_tuple().exponent > -2 else exact  # type: ignore[operator]


def usd(amount: Decimal) -> str:
    """`$1,234.50`, `$0.0774`, `$0.001`: `money` with a dollar sign and thousands separators."""
    return f"${money(Decimal(amount)):,}"
