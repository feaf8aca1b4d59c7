"""Retries, fallback and expiry of a survey, deterministic sampling and quarters (DESIGN §2, §5).

Pure functions: the current time is always the parameter `now`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from models.domain import Channel
from scheduler.calendar import ContactPolicy, as_utc, contact_time, local_to_utc

_UNITS = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_DURATION_RE = re.compile(r"(?:\d+[dhms])+")
_DURATION_PART_RE = re.compile(r"(\d+)([dhms])")
_QUARTER_RE = re.compile(r"(\d{4})Q([1-4])")


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as '30m', '2h', '1d', '90s' or '1h30m'."""
    compact = text.strip().lower()
    if _DURATION_RE.fullmatch(compact) is None:
        raise ValueError(f"duration {text!r} is not like '30m', '2h', '1d', '90s' or '1h30m'")
    try:
        return sum(
            (int(count) * _UNITS[unit] for count, unit in _DURATION_PART_RE.findall(compact)),
            timedelta(),
        )
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def parse_intervals(text: str) -> tuple[timedelta, ...]:
    """Parse retry intervals separated by spaces or commas, e.g. '30m 2h 1d' ('' means none)."""
    try:
        return tuple(parse_duration(part) for part in re.split(r"[\s,]+", text.strip()) if part)
    except ValueError as exc:
        raise ValueError(f"intervals {text!r}: {exc}") from None


def _default_intervals() -> dict[Channel, tuple[timedelta, ...]]:
    return {
        Channel.VOICE: (timedelta(minutes=30), timedelta(hours=2), timedelta(days=1)),
        Channel.SMS: (),
    }


@dataclass(frozen=True)
class RetryPolicy:
    """How often each channel is retried, in which order channels are used, when a survey ends."""

    # Waits after the 1st, 2nd, ... attempt on a channel; a channel has len(intervals) + 1
    # attempts. A channel missing here gets one attempt.
    intervals: dict[Channel, tuple[timedelta, ...]] = field(
        default_factory=_default_intervals, hash=False
    )
    channel_order: tuple[Channel, ...] = (Channel.VOICE, Channel.SMS)
    # Counted from the first attempt of the survey.
    expire_after: timedelta = timedelta(days=3)
    sms_fallback_requires_mobile: bool = True

    def __post_init__(self) -> None:
        intervals = {Channel(channel): tuple(waits) for channel, waits in self.intervals.items()}
        order = tuple(Channel(channel) for channel in self.channel_order)
        for channel, waits in intervals.items():
            if any(wait <= timedelta() for wait in waits):
                raise ValueError(f"retry intervals for {channel} must be positive")
        if not order or len(set(order)) != len(order):
            raise ValueError(f"channel order {order} must list each channel once")
        if self.expire_after <= timedelta():
            raise ValueError(f"expire_after must be positive, got {self.expire_after}")
        object.__setattr__(self, "intervals", intervals)
        object.__setattr__(self, "channel_order", order)

    def intervals_for(self, channel: Channel) -> tuple[timedelta, ...]:
        """Return the retry intervals of a channel (empty: one attempt only)."""
        return self.intervals.get(channel, ())

    def max_attempts(self, channel: Channel) -> int:
        """Return how many attempts a channel gets."""
        return len(self.intervals_for(channel)) + 1


class NextAction(StrEnum):
    """What follows an attempt that did not complete the survey."""

    RETRY = "retry"  # try the same channel again at `at`
    FALLBACK = "fallback"  # switch to `channel` at `at`
    EXPIRE = "expire"  # the next contact could not happen before the survey expires
    DONE = "done"  # no attempt left: the caller finalises the disposition


@dataclass(frozen=True)
class NextStep:
    """The decision of next_step: an action, its channel, and when (None for EXPIRE and DONE)."""

    action: NextAction
    channel: Channel
    at: datetime | None = None


def _fallback_channel(policy: RetryPolicy, channel: Channel, is_mobile: bool) -> Channel | None:
    """Return the first allowed channel after channel in the policy's order, if any."""
    position = policy.channel_order.index(channel)
    for candidate in policy.channel_order[position + 1 :]:
        if candidate is Channel.SMS and policy.sms_fallback_requires_mobile and not is_mobile:
            continue
        return candidate
    return None


def next_step(
    policy: RetryPolicy,
    contact_policy: ContactPolicy,
    *,
    channel: Channel,
    attempts_on_channel: int,
    last_attempt_at: datetime,
    first_attempt_at: datetime,
    is_mobile: bool,
    now: datetime,
) -> NextStep:
    """Decide whether to retry, fall back, expire or stop after an unsuccessful attempt."""
    # Busy, no answer, failed and machine answered all count in attempts_on_channel.
    if attempts_on_channel < 1:
        raise ValueError(f"attempts_on_channel must be at least 1, got {attempts_on_channel}")
    if channel not in policy.channel_order:
        raise ValueError(f"channel {channel} is not in the channel order {policy.channel_order}")
    now = as_utc(now, "now")
    expires_at = as_utc(first_attempt_at, "first_attempt_at") + policy.expire_after
    waits = policy.intervals_for(channel)
    if attempts_on_channel <= len(waits):
        desired = as_utc(last_attempt_at, "last_attempt_at") + waits[attempts_on_channel - 1]
        # Never in the past: a late scheduler must still respect the window at the actual time.
        at = contact_time(contact_policy, max(desired, now), expires_at)
        if at is None:
            return NextStep(NextAction.EXPIRE, channel)
        return NextStep(NextAction.RETRY, channel, at)
    fallback = _fallback_channel(policy, channel, is_mobile)
    if fallback is None:
        return NextStep(NextAction.DONE, channel)
    at = contact_time(contact_policy, now, expires_at)
    if at is None:
        return NextStep(NextAction.EXPIRE, fallback)
    return NextStep(NextAction.FALLBACK, fallback, at)


def sample_score(item_key: str, seed: str) -> float:
    """Return a reproducible score in [0, 1) from sha256 of f'{seed}:{item_key}'."""
    digest = hashlib.sha256(f"{seed}:{item_key}".encode()).digest()
    # The top 53 bits divide exactly into a double, so the score never rounds up to 1.0.
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def is_sampled(item_key: str, seed: str, rate: float) -> bool:
    """Return whether an item is picked at a sampling rate.

    The pick depends only on the item key, the campaign seed and the rate, so a rerun picks the
    same items and an auditor can reproduce it: sha256("<seed>:<item key>"), first 8 bytes as a
    big-endian integer, shifted right by 11 bits and divided by 2**53, is picked when below rate.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"sampling rate must be between 0 and 1, got {rate}")
    return rate == 1.0 or sample_score(item_key, seed) < rate


def parse_quarter(quarter: str) -> tuple[int, int]:
    """Parse a quarter such as '2026Q3' into (year, quarter number)."""
    match = _QUARTER_RE.fullmatch(quarter.strip().upper())
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"quarter {quarter!r} is not of the form YYYYQn with n from 1 to 4")
    return int(match.group(1)), int(match.group(2))


def _format_quarter(year: int, number: int) -> str:
    return f"{year:04d}Q{number}"


# Per zone, the last quarter an instant fell in, with its bounds: nearly every call (a webhook's
# answer, a dispatch) asks about the present, so two comparisons answer it.
_recent_quarters: dict[ZoneInfo, tuple[datetime, datetime, str]] = {}


def quarter_of(dt: datetime, tz: ZoneInfo) -> str:
    """Return the quarter ('2026Q1') of the local date of an instant."""
    recent = _recent_quarters.get(tz)
    if recent is not None and dt.utcoffset() is not None and recent[0] <= dt < recent[1]:
        return recent[2]
    local = as_utc(dt, "dt").astimezone(tz)
    quarter = _format_quarter(local.year, (local.month - 1) // 3 + 1)
    _recent_quarters[tz] = (*quarter_bounds(quarter, tz), quarter)
    return quarter


def quarter_bounds(quarter: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Return a quarter's local start (inclusive) and end (exclusive) as UTC instants."""
    year, number = parse_quarter(quarter)
    first = date(year, 3 * number - 2, 1)
    after = date(year + 1, 1, 1) if number == 4 else date(year, 3 * number + 1, 1)
    return local_to_utc(first, time(0), tz), local_to_utc(after, time(0), tz)


def previous_quarter(quarter: str) -> str:
    """Return the quarter before a quarter ('2026Q1' -> '2025Q4')."""
    year, number = parse_quarter(quarter)
    if number == 1:
        if year == 1:
            raise ValueError(f"quarter {quarter!r} has no previous quarter")
        return _format_quarter(year - 1, 4)
    return _format_quarter(year, number - 1)
