"""SMS length in segments (GSM-7 or UCS-2) and the estimated price by destination country.

SNS charges per message part. A message fits one part up to 160 GSM-7 septets or 70 UCS-2 units;
a longer one is split into parts of 153 or 67 (the rest of each part holds the concatenation
header). One character outside GSM-7 switches the whole message to UCS-2. A part boundary never
splits a two-septet GSM-7 character or a UTF-16 surrogate pair, so a split message can need one
part more than its length divided by 153 or 67.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

import phonenumbers

from notify.errors import InputError

# 3GPP TS 23.038 basic character set (without the escape code that introduces the extension table).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs an escape septet plus its own.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_COST_QUANTUM = Decimal("0.000001")
# SNS refuses an SMS body over 1,600 bytes (InvalidParameter at send time, after the request was
# accepted and stored): about 10 GSM-7 parts of 153 characters, or fewer for UCS-2 text.
SNS_MAX_SMS_BYTES = 1600


class SmsEncoding(StrEnum):
    gsm7 = "GSM-7"
    ucs2 = "UCS-2"


# (longest single message, longest part of a split message), in units of the encoding.
_LIMITS = {SmsEncoding.gsm7: (160, 153), SmsEncoding.ucs2: (70, 67)}


@dataclass(frozen=True)
class SmsLength:
    encoding: SmsEncoding
    units: int
    segments: int


def sms_length(text: str) -> SmsLength:
    """Encoding, length in septets (GSM-7) or UTF-16 units (UCS-2), and parts billed."""
    encoding, char_units = _char_units(text)
    single, per_part = _LIMITS[encoding]
    segments = _count_parts(char_units, single=single, per_part=per_part)
    return SmsLength(encoding=encoding, units=sum(char_units), segments=segments)


def _char_units(text: str) -> tuple[SmsEncoding, list[int]]:
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        return SmsEncoding.gsm7, [2 if char in GSM7_EXTENSION else 1 for char in text]
    return SmsEncoding.ucs2, [2 if ord(char) > 0xFFFF else 1 for char in text]


def _count_parts(char_units: list[int], *, single: int, per_part: int) -> int:
    """Parts needed, filling each part greedily without splitting a character."""
    if sum(char_units) <= single:
        return 1
    parts, used = 1, 0
    for units in char_units:
        if used + units > per_part:
            parts, used = parts + 1, 0
        used += units
    return parts


def sms_size_problem(text: str) -> str | None:
    """Why SNS would refuse this SMS body, or None: it takes at most SNS_MAX_SMS_BYTES (UTF-8)."""
    size = len(text.encode("utf-8", errors="replace"))
    if size <= SNS_MAX_SMS_BYTES:
        return None
    return (
        f"the SMS text is {size:,} bytes ({len(text):,} characters); SNS accepts at most "
        f"{SNS_MAX_SMS_BYTES:,} bytes (about {SNS_MAX_SMS_BYTES // 153} parts of 153 characters)"
    )


def price_per_part(phone_e164: str, *, prices: Mapping[str, Decimal], default: Decimal) -> Decimal:
    """Price of one SMS part to this number: its country (ISO code, upper case) in `prices`."""
    if not prices:  # one price for every country: no need to parse the number
        return default
    region = phonenumbers.region_code_for_number(_parse_phone(phone_e164))
    if region is None:
        return default
    return prices.get(region, default)


# Codes people write for a country that are not its ISO 3166 code (the key numbers are priced by).
_COUNTRY_ALIASES = {"UK": "GB", "EL": "GR", "USA": "US", "GBR": "GB"}


def country_code_problem(code: str) -> str | None:
    """Why `code` (upper case) names no country a phone number can belong to, or None.

    The accepted codes are the regions of `phonenumbers`, which `price_per_part` looks prices up
    by: a key outside them ("UK", "ZZ") would never match a number, and its numbers would be
    priced at the default."""
    if code in phonenumbers.SUPPORTED_REGIONS:
        return None
    guess = _COUNTRY_ALIASES.get(code) or _region_of_calling_code(code)
    fix = f"use {guess}" if guess else "use the country's code, such as US, GB or DE"
    return f"{code!r} is not a two-letter ISO country code that phone numbers have: {fix}"


def _region_of_calling_code(code: str) -> str | None:
    """The main country of a calling code written as a key ("44", "+44" -> GB)."""
    digits = code.removeprefix("+")
    if not digits.isdigit():
        return None
    region = phonenumbers.region_code_for_country_code(int(digits))
    return None if region == phonenumbers.UNKNOWN_REGION else str(region)


def estimate_sms_cost(
    text: str, phone_e164: str, *, prices: Mapping[str, Decimal], default: Decimal
) -> tuple[int, Decimal]:
    """(parts, estimated USD cost rounded half up to 6 decimal places) of sending `text`."""
    segments = sms_length(text).segments
    return segments, parts_cost(segments, phone_e164, prices=prices, default=default)


def parts_cost(
    segments: int, phone_e164: str, *, prices: Mapping[str, Decimal], default: Decimal
) -> Decimal:
    """Estimated USD cost of `segments` SMS parts to this number, rounded half up to 6 decimal
    places (a queued SMS whose number changed is priced again by its stored parts)."""
    price = price_per_part(phone_e164, prices=prices, default=default)
    return (segments * price).quantize(_COST_QUANTUM, rounding=ROUND_HALF_UP)


def _parse_phone(phone_e164: str) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(phone_e164)
    except phonenumbers.NumberParseException as exc:
        raise InputError(
            f"phone number {_mask(phone_e164)} is not E.164 ({exc}); "
            "expected + country code and number, e.g. +12025550123"
        ) from exc


def _mask(phone: str) -> str:
    return f"{phone[:5]}***{phone[-4:]}" if len(phone) > 9 else "***"
