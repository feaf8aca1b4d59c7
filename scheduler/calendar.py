"""Working days and calling windows (DESIGN §2, §5): pure functions of a policy and an instant.

Every instant is a timezone-aware datetime; results are in UTC. Windows are local wall-clock times
in the policy's time zone. A window start that does not exist (a DST gap) moves to the first instant
after the gap; an ambiguous local time (a DST fold) is read as its first occurrence (fold=0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.settings import Settings

import functools
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

logger = logging.getLogger(__name__)

# How many days ahead next_opening looks before it decides that no window will ever open.
SEARCH_DAYS = 400
# A case is due at the end of its last working day, local time.
END_OF_DAY = time(23, 59, 59)
_ONE_DAY = timedelta(days=1)
_REGIONS = {"CN": "CN", "NONE": "none", "": "none"}

# Years chinese_calendar has no data for and that were already reported: one warning per year.
_warned_years: set[int] = set()
_warned_lock = threading.Lock()


class NoOpeningError(ValueError):
    """No calling window opens within SEARCH_DAYS days (e.g. a policy without windows)."""


def as_utc(value: datetime, name: str = "datetime") -> datetime:
    """Return an aware datetime converted to UTC; reject a naive one."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def local_to_utc(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """Return the UTC instant of a local wall time (fold=0; a time in a DST gap moves past it)."""
    naive = datetime.combine(day, wall.replace(tzinfo=None, fold=0))
    utc = naive.replace(tzinfo=tz).astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == naive:
        return utc
    # The wall time does not exist. Read with the offset before the gap (fold=0) it lands after
    # the transition, read with the offset after the gap (fold=1) before it: the transition
    # instant, i.e. the first existing instant after the wall time, lies between the two.
    after = math.ceil(utc.timestamp())
    before = math.floor(naive.replace(tzinfo=tz, fold=1).timestamp())
    offset_after = utc.astimezone(tz).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _statutory_holidays_known(year: int) -> bool:
    """Whether chinese_calendar has the statutory holidays of `year`."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def _statutory_working_day(day: date) -> bool | None:
    """Return China's statutory answer for a day, or None if chinese_calendar lacks its year."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        with _warned_lock:
            first_time = day.year not in _warned_years
            _warned_years.add(day.year)
        if first_time:
            logger.warning(
                "chinese_calendar has no holiday data for %d: treating Monday-Friday plus the "
                "configured extra days as working days; configure %d's holidays as extra days",
                day.year,
                day.year,
            )
        return None


@dataclass(frozen=True)
class WorkCalendar:
    """Which local dates are working days: a statutory calendar plus configured extra days."""

    # "CN": China's statutory holidays and make-up working days; "none" or "": plain Mon-Fri.
    region: str = "CN"
    extra_closed: frozenset[date] = frozenset()
    extra_working: frozenset[date] = frozenset()
    _cache: dict[date, bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        key = self.region.strip().upper()
        if key not in _REGIONS:
            raise ValueError(f"calendar region {self.region!r} is unknown: use 'CN' or 'none'")
        object.__setattr__(self, "region", _REGIONS[key])
        object.__setattr__(self, "extra_closed", frozenset(self.extra_closed))
        object.__setattr__(self, "extra_working", frozenset(self.extra_working))
        both = self.extra_closed & self.extra_working
        if both:
            days = ", ".join(sorted(d.isoformat() for d in both))
            raise ValueError(f"days configured both as closed and as working: {days}")

    def is_working_day(self, day: date) -> bool:
        """Return whether a local date is a working day."""
        if isinstance(day, datetime):
            raise TypeError("is_working_day takes a local date, not a datetime")
        cached = self._cache.get(day)
        if cached is None:
            cached = self._compute(day)
            self._cache[day] = cached
        return cached

    def years_without_holidays(self, start: date, days: int = 60) -> list[int]:
        """Years from `start` to `days` after it whose statutory holidays this calendar lacks.

        The statutory data ends with its package's release; a year the site configured extra closed
        days for is taken as configured.
        """
        if self.region != "CN":
            return []
        years = range(start.year, (start + timedelta(days=days)).year + 1)
        configured = {day.year for day in self.extra_closed}
        return [year for year in years if year not in configured and not _statutory_holidays_known(year)]

    def _compute(self, day: date) -> bool:
        if day in self.extra_closed:
            return False
        if day in self.extra_working:
            return True
        if self.region == "CN":
            statutory = _statutory_working_day(day)
            if statutory is not None:
                return statutory
        return day.weekday() < 5


def add_working_days(cal: WorkCalendar, start: datetime, n: int, tz: ZoneInfo) -> datetime:
    """Return the due time (UTC) n working days after start's local date, at 23:59:59 local."""
    if n < 0:
        raise ValueError(f"working days must not be negative, got {n}")
    day = as_utc(start, "start").astimezone(tz).date()
    counted = 0
    while counted < n:
        day += _ONE_DAY
        if cal.is_working_day(day):
            counted += 1
    return local_to_utc(day, END_OF_DAY, tz)


@dataclass(frozen=True)
class Window:
    """A daily calling window [start, end) in local time; end before start spans midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("window times are local wall-clock times without tzinfo")
        # 00:00-00:00 (written "00:00-24:00") is the whole day; any other equal pair is empty.
        if self.start == self.end and self.start != time(0):
            raise ValueError(f"window {self} is empty: it ends when it starts")

    @property
    def crosses_midnight(self) -> bool:
        """Return whether part of the window falls on the next calendar day."""
        return self.end < self.start and self.end != time(0)

    def __str__(self) -> str:
        end = "24:00" if self.end == time(0) else _format_time(self.end)
        return f"{_format_time(self.start)}-{end}"


def _format_time(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second or value.microsecond else "%H:%M")


DEFAULT_WINDOWS = (Window(time(9), time(12)), Window(time(14), time(20)))
_WINDOW_RE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*[-–~]\s*(\d{1,2}):(\d{2})\s*")


def parse_window(text: str, *, allow_overnight: bool = False) -> Window:
    """Parse a window such as '09:00-12:00' ('24:00' may end it; overnight only if allowed)."""
    match = _WINDOW_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"window {text!r} is not of the form HH:MM-HH:MM")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise ValueError(f"window {text!r} has an invalid time (00:00 to 23:59, or 24:00 as end)")
    start = time(start_h, start_m)
    end = time(0) if end_h == 24 else time(end_h, end_m)
    if start == end and not (start == time(0) and end_h == 24):
        raise ValueError(f"window {text!r} is empty: it ends when it starts")
    window = Window(start, end)
    if window.crosses_midnight and not allow_overnight:
        raise ValueError(f"window {text!r} ends before it starts (spanning midnight not allowed)")
    return window


def parse_windows(text: str, *, allow_overnight: bool = False) -> tuple[Window, ...]:
    """Parse windows separated by commas or spaces, e.g. '09:00-12:00, 14:00-20:00'."""
    compact = re.sub(r"\s*([-–~])\s*", r"\1", text.strip())
    parts = [part for part in re.split(r"[,;\s]+", compact) if part]
    if not parts:
        raise ValueError(f"windows {text!r} list no window")
    return tuple(parse_window(part, allow_overnight=allow_overnight) for part in parts)


@dataclass(frozen=True)
class ContactPolicy:
    """When a citizen may be contacted: local windows on allowed days in one time zone."""

    tz: ZoneInfo
    windows: tuple[Window, ...] = DEFAULT_WINDOWS
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    working_days_only: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(self.windows))


def _openings_on(policy: ContactPolicy, day: date) -> list[tuple[datetime, datetime]]:
    """Return the UTC intervals [start, end) of the windows that open on a local date."""
    if policy.working_days_only and not policy.calendar.is_working_day(day):
        return []
    openings = []
    for window in policy.windows:
        start = local_to_utc(day, window.start, policy.tz)
        end_day = day + _ONE_DAY if window.end <= window.start else day
        end = local_to_utc(end_day, window.end, policy.tz)
        if start < end:  # a window lying wholly in a DST gap does not open that day
            openings.append((start, end))
    return openings


def may_contact(policy: ContactPolicy, now: datetime) -> bool:
    """Return whether now lies inside a calling window on an allowed day."""
    instant = as_utc(now, "now")
    today = instant.astimezone(policy.tz).date()
    # The part of an overnight window after midnight belongs to the day it started.
    return any(
        start <= instant < end
        for day in (today - _ONE_DAY, today)
        for start, end in _openings_on(policy, day)
    )


def next_opening(policy: ContactPolicy, now: datetime) -> datetime:
    """Return now (UTC) if inside a window, else the start of the next window on an allowed day."""
    if not policy.windows:
        raise NoOpeningError("the contact policy has no calling windows")
    instant = as_utc(now, "now")
    today = instant.astimezone(policy.tz).date()
    best: datetime | None = None
    found_on = 0
    for offset in range(-1, SEARCH_DAYS + 1):
        if best is not None and offset > found_on + 1:
            break
        for start, end in _openings_on(policy, today + offset * _ONE_DAY):
            if start <= instant < end:
                return instant
            if start > instant and (best is None or start < best):
                best, found_on = start, offset
    if best is None:
        windows = ", ".join(str(window) for window in policy.windows)
        raise NoOpeningError(
            f"no calling window ({windows}, working days only: {policy.working_days_only}) "
            f"opens within {SEARCH_DAYS} days after {instant.isoformat()}"
        )
    return best


def contact_time(
    policy: ContactPolicy, desired: datetime, expires_at: datetime | None
) -> datetime | None:
    """Return the first instant >= desired inside a window, or None if it is not before expiry."""
    earliest = as_utc(desired, "desired")
    deadline = None if expires_at is None else as_utc(expires_at, "expires_at")
    if deadline is not None and earliest >= deadline:
        return None
    at = next_opening(policy, earliest)
    if deadline is not None and at >= deadline:
        return None
    return at


@functools.lru_cache(maxsize=8)
def _configured(region: str, closed: tuple[str, ...], working: tuple[str, ...]) -> WorkCalendar:
    # One instance per configuration, so its per-day cache outlives a single sweep or request.
    return WorkCalendar(
        region=region,
        extra_closed=frozenset(date.fromisoformat(day) for day in closed),
        extra_working=frozenset(date.fromisoformat(day) for day in working),
    )


def work_calendar(settings: Settings) -> WorkCalendar:
    """Return the working-day calendar configured in [calendar]."""
    cal = settings.calendar
    return _configured(cal.region, tuple(cal.extra_closed), tuple(cal.extra_working))
