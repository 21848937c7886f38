"""XML Schema value types as MM7 uses them: boolean, integer, dateTime, duration and the
schema's relativeOrAbsoluteDateType (an xs:dateTime or an xs:duration).

Reading is lenient the way peers are sloppy: booleans "true"/"false"/"1"/"0" in any
case, dateTimes with or without seconds, fraction or zone (no zone means UTC, the
MMSC's clock), "T" or a blank between date and time. A value that still does not fit
raises ``ValueError`` with a reason; the SOAP reader turns it into 2007.

Writing is strict and canonical: "true"/"false", UTC written as "Z",
durations as "P{d}DT{h}H{m}M{s}S" without zero fields.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

_DATETIME: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,12}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_DURATION: Final = re.compile(
    r"^(-)?P(?:(\d{1,9})Y)?(?:(\d{1,9})M)?(?:(\d{1,9})W)?(?:(\d{1,9})D)?"
    r"(?:T(?:(\d{1,9})H)?(?:(\d{1,9})M)?(?:(\d{1,12})(?:[.,](\d{1,12}))?S)?)?$"
)
# xs:duration has no fixed length for years and months; MMS expiry is in seconds
# (OMA-MMS-ENC Delta-seconds), so they count as 365 and 30 days.
_YEAR_DAYS: Final = 365
_MONTH_DAYS: Final = 30


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def format_bool(value: bool) -> str:
    return "true" if value else "false"


def parse_int(text: str, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    value = text.strip()
    if not value.isascii() or not value.lstrip("+").isdigit() or len(value) > 20:
        raise ValueError(f"{text!r} is not an integer")
    number = int(value)
    if not minimum <= number <= maximum:
        raise ValueError(f"{number} is out of range {minimum}..{maximum}")
    return number


def parse_datetime(text: str) -> datetime:
    """xs:dateTime (leniently); always timezone-aware."""
    m = _DATETIME.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an ISO 8601 date and time")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz: timezone = UTC
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or "0"))
        if offset >= timedelta(hours=24):
            raise ValueError(f"time zone {zone!r} out of range")
        tz = timezone(sign * offset) if offset else UTC
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=tz,
    )


def format_datetime(value: datetime) -> str:
    """ISO 8601 with zone ("Z" for UTC); a naive value is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.year < 1000:
        text = f"{value.year:04d}" + text[text.index("-") :]
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset() or timedelta(0)
    if not offset:
        return text + "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse_duration(text: str) -> timedelta:
    """xs:duration, non-negative (a negative expiry or delay means nothing here)."""
    value = text.strip()
    m = _DURATION.match(value)
    if m is None or value.endswith("T") or not any(m.groups()[1:8]):
        raise ValueError(f"{text!r} is not an ISO 8601 duration")
    negative, years, months, weeks, days, hours, minutes, seconds, fraction = m.groups()
    if negative:
        raise ValueError(f"negative duration {text!r}")
    total_days = (
        int(years or 0) * _YEAR_DAYS
        + int(months or 0) * _MONTH_DAYS
        + int(weeks or 0) * 7
        + int(days or 0)
    )
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return timedelta(
            days=total_days,
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=int(seconds or 0),
            microseconds=micro,
        )
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def format_duration(value: timedelta) -> str:
    if value < timedelta(0):
        raise ValueError(f"negative duration {value}")
    seconds = value.seconds
    out = "P"
    if value.days:
        out += f"{value.days}D"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if secs or value.microseconds:
        clock += f"{secs}"
        if value.microseconds:
            clock += f".{value.microseconds:06d}".rstrip("0")
        clock += "S"
    if clock:
        out += "T" + clock
    return out if out != "P" else "PT0S"


def parse_relative(text: str) -> datetime | timedelta:
    """relativeOrAbsoluteDateType: a duration when it starts with P, else a dateTime."""
    value = text.strip()
    if value[:1] == "P" or value[:2] == "-P":
        return parse_duration(value)
    return parse_datetime(value)


def format_relative(value: datetime | timedelta) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    return format_datetime(value)
