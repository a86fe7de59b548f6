"""IANA time zones: reading local times as instants, writing instants as local times.

APIs answer three kinds of time: an instant with its zone (`2026-03-01T10:00:00+05:00`,
`...Z`, RFC 2822, Unix seconds), and a *zone-less local time* (`2026-03-01T19:00:00`) that means
the wall clock of some place (a warehouse facility). `to_utc(value, zone)` reads any of them
as an aware UTC datetime, a zone-less one in `zone`; `to_local(value, zone)` writes an instant
as that zone's wall clock, without an offset, for APIs that expect one in their requests.

Daylight saving time, decided once for the whole engine (Python's `fold=0`):
- an *ambiguous* local time (fall back: 01:30 happens twice in New York on 2026-11-01) is the
  EARLIER instant (the first 01:30, still on summer time). For a watermark that is the safe
  side: the next read starts earlier and the ledger's keys dedupe the overlap.
- a *nonexistent* local time (spring forward: 02:30 never happens in New York on 2026-03-08)
  is read with the offset in force just before the gap, i.e. shifted forward by the gap
  (02:30 -> 03:30 EDT = 07:30Z).

Zone names are IANA names (`America/New_York`, `Asia/Tokyo`, `UTC`); the data comes from the
system's zone database or the `tzdata` package. An unknown name raises `UnknownZone` naming the
closest valid one.
"""

from __future__ import annotations

import difflib
import functools
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC = "UTC"


class UnknownZone(ValueError):
    """A name that is not an IANA time zone; the message names the closest valid one."""


@functools.cache
def names() -> frozenset[str]:
    """Every IANA zone name this machine knows."""
    return frozenset(available_timezones())


def closest(name: str) -> str | None:
    """The valid zone name closest to `name` (case and spelling), or None."""
    by_lower = {known.lower(): known for known in names()}
    if str(name).lower() in by_lower:
        return by_lower[str(name).lower()]
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def problem(name: Any) -> str | None:
    """Why `name` is not an IANA zone name (with the closest valid one), or None when it is."""
    if not isinstance(name, str):
        return f"expected an IANA time zone name such as 'America/New_York', got {name!r}"
    if name in names():
        return None
    near = closest(name)
    hint = f"did you mean '{near}'?" if near else "an IANA name such as 'America/New_York' or 'UTC'"
    return f"unknown time zone {name!r} ({hint})"


@functools.lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The zone called `name`; UnknownZone when there is none."""
    message = problem(name)
    if message is not None:
        raise UnknownZone(message)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownZone(f"unknown time zone {name!r}") from None


def parse(value: Any) -> datetime | None:
    """ISO-8601 (with or without zone), RFC 2822 or Unix seconds as a datetime (naive when the
    text has no zone); None for null, '' and anything else."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None


def to_utc(value: Any, name: str = UTC) -> datetime | None:
    """`value` as an aware UTC datetime, a zone-less local time read in zone `name` (DST rules
    in the module docstring); None when `value` is not a time."""
    moment = parse(value)
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(name), fold=0)
    return moment.astimezone(timezone.utc)


def to_local(value: Any, name: str) -> str | None:
    """The wall clock of zone `name` at instant `value`, as zone-less 'YYYY-MM-DDTHH:MM:SS' (a
    zone-less `value` is read as UTC); None when `value` is not a time."""
    moment = to_utc(value)
    return None if moment is None else moment.astimezone(zone(name)).strftime("%Y-%m-%dT%H:%M:%S")


def iso_utc(moment: datetime) -> str:
    """An aware datetime as 'YYYY-MM-DDTHH:MM:SSZ'."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise(value: Any, name: str) -> Any:
    """A watermark as the engine stores it: a zone-less local time becomes the UTC instant it
    means in zone `name` ('YYYY-MM-DDTHH:MM:SSZ'); anything else is returned unchanged."""
    if not isinstance(value, str) or name == UTC:
        return value
    moment = parse(value)
    if moment is None or moment.tzinfo is not None or "T" not in value and " " not in value.strip():
        return value
    return iso_utc(moment.replace(tzinfo=zone(name), fold=0))
