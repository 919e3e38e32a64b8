"""Date and time formats of the two APIs, in one place."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def parse_timezone(value: str) -> tzinfo:
    """'+03:00' or an IANA name such as 'Europe/Moscow'."""
    match = _OFFSET.match(value.strip())
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"must be an offset like +03:00 or a time zone name like Europe/Moscow, got {value!r}"
        ) from None


def parse_iso(value: str) -> datetime:
    """ISO-8601 with offset as both APIs send it; naive values are rejected by the caller's parser."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a UTC offset: {value!r}")
    return parsed


def okdesk_filter_time(moment: datetime, tz: tzinfo) -> str:
    """Okdesk list filters take dd-mm-yyyy HH:MM in the account's time zone."""
    return moment.astimezone(tz).strftime("%d-%m-%Y %H:%M")


def okdesk_logged_at(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def format_duration(seconds: int) -> str:
    """H:MM, the least locale-dependent duration Okdesk accepts; rounded to the nearest minute, at least 0:01."""
    minutes = max(1, round(seconds / 60))
    return f"{minutes // 60}:{minutes % 60:02d}"


def human_duration(seconds: int) -> str:
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes:02d} min"
    return f"{hours} h" if hours else f"{minutes} min"


def utc_now() -> datetime:
    return datetime.now(UTC)
