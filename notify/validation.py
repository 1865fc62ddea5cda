"""Field validators shared by the importer and the dispatcher: each returns the normalised value or
raises ValueError with a reason a person can act on."""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Mapping
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# 24-hour H:MM or HH:MM, and HH:MM:SS with seconds 00 as a spreadsheet's h:mm / hh:mm:ss writes it
_HHMM = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::00)?")
# Unicode category Cc, the whole of it: C0 (tab, line breaks, NUL, ESC, ...), DEL and C1
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Unicode's explicit direction embeddings, overrides and isolates (LRE..RLO, LRI..PDI): invisible,
# and able to show a name (and what follows it on the line) in another order than stored
BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")
# Characters that print as nothing and join nothing: zero width space, word joiner, invisible
# math operators, zero width no-break space (a byte-order mark), Mongolian vowel separator. Not
# the zero width (non-)joiners U+200C/U+200D, which shape real text (Persian, Indic scripts).
INVISIBLE = re.compile("[\u200b\u2060-\u2064\ufeff\u180e]")
# what a value quoted back in an error shows escaped: each kind would garble or hide in the line
UNSHOWABLE = re.compile(f"{CONTROL_CHARACTER.pattern}|{BIDI_CONTROL.pattern}|{INVISIBLE.pattern}")
# what marks a file as UTF-16 (a spreadsheet's "Unicode Text", e.g. Excel's), little or big endian
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off", ""}


def normalize_phone(raw: str) -> str:
    """E.164 (+15551234567). Only numbers written in international form are accepted; the length
    must fit the country code (phonenumbers' "possible number"), as SNS itself checks no more."""
    text = raw.strip()
    if not text.startswith("+"):
        raise ValueError(
            f"{raw!r} is not E.164: write it as +<country code><number>, e.g. +15551234567"
        )
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as error:
        raise ValueError(f"{raw!r} is not a phone number ({error})") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{raw!r} has the wrong number of digits for its country code")
    if number.extension:  # E.164 has none: it was dropped, and the SMS went to the switchboard
        raise ValueError(
            f"{raw!r} has an extension ({number.extension}), which an SMS cannot reach: give the "
            "mobile number alone"
        )
    if any(character.isalpha() for character in text):  # read as keypad digits: 1-800-FLOWERS
        raise ValueError(f"{raw!r} has letters: write the number in digits")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_name(raw: str) -> str:
    """A recipient's name without the spaces around it. A control character anywhere in it (a
    tab, a line break, NUL, ESC, ...) is refused, not removed: a name is printed in every SMS,
    email and table that names the person, a tab or a C1 character is outside the SMS alphabet
    (GSM 03.38; each SMS would go as UCS-2, in more parts and at a higher price), and ESC
    sequences rewrite the terminal that shows them."""
    bad = CONTROL_CHARACTER.search(raw)
    if bad:
        raise ValueError(
            f"name contains {describe_control(bad.group())}: a name is printed in SMS, emails and "
            "terminals, which a control character garbles (a tab alone makes every SMS naming "
            "the recipient UCS-2, in more parts); remove it"
        )
    turned = BIDI_CONTROL.search(raw)
    if turned:
        raise ValueError(
            f"name contains the invisible direction control U+{ord(turned.group()):04X}: it "
            "reorders what is printed after it (the name, and the rest of the line, shown "
            "reversed in tables and messages); remove it"
        )
    hidden = INVISIBLE.search(raw)
    if hidden:
        raise ValueError(
            f"name contains the invisible character U+{ord(hidden.group()):04X}: it prints as "
            "nothing, yet a search for the name misses it and every SMS naming the recipient "
            "goes as UCS-2, in more parts; remove it"
        )
    return raw.strip()


def describe_control(character: str) -> str:
    """`a tab`, `a line break`, `a NUL byte` or `control character '\\x1b'`."""
    if character == "\t":
        return "a tab"
    if character in "\n\r\x85":
        return "a line break"
    if character == "\x00":
        return "a NUL byte"
    return f"control character {character!r}"


def normalize_email(raw: str) -> str:
    """Syntax check only (no DNS): the address as email-validator normalises it, in the form SES
    takes (ses_address)."""
    try:
        return ses_address(raw)
    except EmailNotValidError as error:
        raise ValueError(f"{raw!r} is not a valid email address ({error})") from None


def ses_address(raw: str) -> str:
    """The address SES can send to, normalised: SES has no SMTPUTF8, so the part before the @
    must be ASCII (EmailNotValidError otherwise) and an internationalised domain is written in
    Punycode (`a@exämple.com` is `a@xn--exmple-cua.com`, as receipts then name it)."""
    try:
        valid = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        if str(error).startswith("Internationalized characters before the @-sign"):
            raise EmailNotValidError(
                f"{str(error).rstrip('.')}: SES sends only to addresses whose part before the @ "
                "is ASCII"
            ) from None
        raise
    return valid.ascii_email or valid.normalized  # ascii_email is set when SMTPUTF8 is not allowed


# Files of the zone database that are not a place's zone: `localtime` is whatever the machine
# reading it is set to, `Factory` an "unknown zone" marker; posix/ and right/ are copies of the
# database (right/ with leap seconds, which no clock here counts).
_NOT_A_PLACE = frozenset({"localtime", "posixrules", "Factory"})


def normalize_timezone(raw: str) -> str:
    name = raw.strip() or "UTC"
    if name in _NOT_A_PLACE or name.startswith(("posix/", "right/")):
        raise ValueError(
            f"{raw!r} is not a place's time zone (it depends on the machine or the database "
            "copy): use an IANA name such as America/Chicago"
        )
    if name not in _zone_names():
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{raw!r} is not an IANA time zone such as America/Chicago") from None
    return name


def parse_hhmm(raw: str) -> time:
    """A time of day written 22:00, 7:00 (Excel's h:mm) or 22:00:00 (hh:mm:ss, seconds 00)."""
    match = _HHMM.fullmatch(raw.strip())
    if not match:
        raise ValueError(f"{raw!r} is not a time in 24-hour HH:MM form, e.g. 22:00")
    return time(int(match.group(1)), int(match.group(2)))


def parse_bool(raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a boolean: use true/false, yes/no or 1/0")


_ZONES: set[str] = set()


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def refuse_unstorable(fields: Mapping[str, Any]) -> None:
    """A value the database or JSON cannot keep, in any of `fields` (field name -> value; nested
    dicts and lists are walked, their keys too), raises ValueError naming where: a NUL character
    in a text (PostgreSQL would refuse the whole request with a message that names no field), or
    a number out of range (`1E400` reads as infinity, which JSON has not: the template printed
    `inf` and the stored context was not valid JSON)."""
    for name, value in fields.items():
        found = _unstorable(value, name)
        if found is not None:
            where, why = found
            raise ValueError(f"{where}: {why}")


_NUL = "contains a NUL character (\\u0000), which the database cannot store"
_NOT_FINITE = "is out of range for a number ({}): give a smaller number, or a string"


def _unstorable(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        return (path, _NUL) if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, _NOT_FINITE.format(value))
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _unstorable(key, path) or _unstorable(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        if _all_text_without_nul(value):  # a million recipient ids: one C-speed scan
            return None
        for index, item in enumerate(value):
            found = _unstorable(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _all_text_without_nul(items: list[Any] | tuple[Any, ...]) -> bool:
    try:
        return "\x00" not in "\x01".join(items)
    except TypeError:  # not all text: walk them one by one
        return False


def decode_text(data: bytes) -> str:
    """A text file as people and spreadsheets save it: UTF-8, with or without a byte-order mark,
    or UTF-16 (Excel's "Unicode Text"), with its byte-order mark or without it (then told by
    its first character, an ASCII one with a NUL beside it). UnicodeDecodeError otherwise (see
    undecodable); a UTF-32 file is refused as such (its mark begins as UTF-16's little-endian
    one: it was read as UTF-16, a NUL in every other character)."""
    if data.startswith(UTF32_BOMS):
        raise UnicodeDecodeError("utf-32", data, 0, 4, "UTF-32 is not read")
    if data.startswith(UTF16_BOMS):
        return data.decode("utf-16")
    if len(data) >= 2 and (data[0] == 0) != (data[1] == 0) and max(data[:2]) < 0x80:
        try:
            return data.decode("utf-16-be" if data[0] == 0 else "utf-16-le")
        except UnicodeDecodeError:
            pass  # no mark, and not UTF-16 after all (a binary file): told as not UTF-8
    return data.decode("utf-8-sig")


def undecodable(data: bytes, error: UnicodeDecodeError) -> str:
    """What decode_text found wrong with `data`, in the encoding it was read as, with the fix:
    `is not UTF-8 (bad byte on line 2): save it as UTF-8`. A damaged UTF-16 file was said to be
    not UTF-8, and told to be saved as UTF-8."""
    codec = error.encoding.lower()
    fix = "save it as UTF-8 (or UTF-16, a spreadsheet's Unicode Text)"
    if codec.startswith("utf-32"):
        return f"is UTF-32, which is not read: {fix}"
    if codec.startswith("utf-16"):
        before = data[: error.start - error.start % 2]
        line = before.decode(codec, errors="replace").count("\n") + 1
        return f"is not valid UTF-16 (bad bytes on line {line}, or the file is cut short): {fix}"
    line = data[: error.start].count(b"\n") + 1
    return f"is not UTF-8 (bad byte on line {line}): save it as UTF-8"
