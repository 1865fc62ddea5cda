from __future__ import annotations

from decimal import Decimal

import pytest

from notify.errors import InputError
from notify.pricing import SmsEncoding, estimate_sms_cost, price_per_part, sms_length

GSM7 = SmsEncoding.gsm7
UCS2 = SmsEncoding.ucs2
PRICES = {"US": Decimal("0.00645"), "GB": Decimal("0.0395")}
DEFAULT = Decimal("0.05")


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", GSM7, 0, 1),
        ("a" * 160, GSM7, 160, 1),
        ("a" * 161, GSM7, 161, 2),
        ("a" * 306, GSM7, 306, 2),
        ("a" * 307, GSM7, 307, 3),
        ("€" * 80, GSM7, 160, 1),
        ("€" * 81, GSM7, 162, 2),
        ("Café Müller owes £5 @ 10:00 §2", GSM7, 30, 1),
        ("ś" * 70, UCS2, 70, 1),
        ("ś" * 71, UCS2, 71, 2),
        ("ś" * 134, UCS2, 134, 2),
        ("ś" * 135, UCS2, 135, 3),
        ("a" * 68 + "😀", UCS2, 70, 1),
        ("a" * 69 + "😀", UCS2, 71, 2),
        ("a" * 159 + "ś", UCS2, 160, 3),
        ("Can\u2019t make it", UCS2, 13, 1),
    ],
)
def test_sms_length(text: str, encoding: SmsEncoding, units: int, segments: int) -> None:
    length = sms_length(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)


@pytest.mark.parametrize("char", list("^{}[]~|\\€\f"))
def test_extension_characters_count_two_septets(char: str) -> None:
    assert sms_length(char * 80) == sms_length("a" * 160)
    assert sms_length(char * 81).segments == 2


def test_part_boundary_does_not_split_an_escaped_character() -> None:
    # 306 septets would fit two parts of 153, but the euro sign cannot straddle them.
    length = sms_length("a" * 152 + "€" + "a" * 152)
    assert (length.units, length.segments) == (306, 3)


def test_part_boundary_does_not_split_a_surrogate_pair() -> None:
    length = sms_length("ś" * 66 + "😀" + "ś" * 66)
    assert (length.encoding, length.units, length.segments) == (UCS2, 134, 3)


@pytest.mark.parametrize(
    ("phone", "price"),
    [
        ("+12025550123", Decimal("0.00645")),
        ("+447400123456", Decimal("0.0395")),
        ("+48512345678", DEFAULT),  # Poland: not in the table
        ("+15551234567", DEFAULT),  # no country owns the 555 area code
    ],
)
def test_price_per_part_by_country(phone: str, price: Decimal) -> None:
    assert price_per_part(phone, prices=PRICES, default=DEFAULT) == price


def test_price_per_part_rejects_a_number_without_country_code() -> None:
    with pytest.raises(InputError, match=r"E\.164"):
        price_per_part("2025550123", prices=PRICES, default=DEFAULT)


def test_estimate_multiplies_parts_by_country_price() -> None:
    segments, cost = estimate_sms_cost("a" * 161, "+447400123456", prices=PRICES, default=DEFAULT)
    assert (segments, str(cost)) == (2, "0.079000")


def test_estimate_rounds_half_up_to_six_places() -> None:
    prices = {"US": Decimal("0.0123455")}
    segments, cost = estimate_sms_cost("a" * 307, "+12025550123", prices=prices, default=DEFAULT)
    assert (segments, cost) == (3, Decimal("0.037037"))  # 3 x 0.0123455 = 0.0370365
