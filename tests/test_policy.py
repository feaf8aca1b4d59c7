"""Retry, fallback and expiry decisions, deterministic sampling, and quarters."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.domain import Channel
from scheduler.calendar import ContactPolicy, may_contact
from scheduler.policy import (
    NextAction,
    NextStep,
    RetryPolicy,
    is_sampled,
    next_step,
    parse_duration,
    parse_intervals,
    parse_quarter,
    previous_quarter,
    quarter_bounds,
    quarter_of,
    sample_score,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
CONTACT = ContactPolicy(tz=SHANGHAI)
RETRY = RetryPolicy()


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def step(
    *,
    channel: Channel = Channel.VOICE,
    attempts: int = 1,
    last: datetime,
    first: datetime | None = None,
    is_mobile: bool = True,
    now: datetime | None = None,
    policy: RetryPolicy = RETRY,
) -> NextStep:
    return next_step(
        policy,
        CONTACT,
        channel=channel,
        attempts_on_channel=attempts,
        last_attempt_at=last,
        first_attempt_at=first or last,
        is_mobile=is_mobile,
        now=now or last,
    )


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_parse_duration_reads_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "m", "1x", "1h 30m", "-5m", "1.5h", "9" * 20 + "d"])
def test_parse_duration_error_names_the_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"duration '{text}'"):
        parse_duration(text)


def test_parse_intervals_reads_a_list() -> None:
    thirty, two, day = timedelta(minutes=30), timedelta(hours=2), timedelta(days=1)
    assert parse_intervals("30m 2h 1d") == (thirty, two, day)
    assert parse_intervals("30m, 2h,1d") == (thirty, two, day)
    assert parse_intervals("  ") == ()


def test_parse_intervals_error_names_the_list_and_the_bad_item() -> None:
    with pytest.raises(ValueError, match="intervals '30m 2x': duration '2x'"):
        parse_intervals("30m 2x")


# --- RetryPolicy --------------------------------------------------------------------------------


def test_retry_policy_defaults_give_four_voice_attempts_and_one_sms() -> None:
    assert RETRY.intervals_for(Channel.VOICE) == parse_intervals("30m 2h 1d")
    assert RETRY.max_attempts(Channel.VOICE) == 4
    assert RETRY.max_attempts(Channel.SMS) == 1
    assert RETRY.channel_order == (Channel.VOICE, Channel.SMS)
    assert RETRY.expire_after == timedelta(days=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"intervals": {Channel.VOICE: (timedelta(0),)}}, "positive"),
        ({"channel_order": ()}, "each channel once"),
        ({"channel_order": (Channel.VOICE, Channel.VOICE)}, "each channel once"),
        ({"expire_after": timedelta(0)}, "expire_after"),
    ],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- next_step ----------------------------------------------------------------------------------


def test_retry_inside_a_window_is_last_attempt_plus_interval() -> None:
    result = step(last=sh(2026, 3, 10, 10, 0))
    assert result == NextStep(NextAction.RETRY, Channel.VOICE, sh(2026, 3, 10, 10, 30))


def test_retry_waits_for_next_window() -> None:
    # 11:45 + 30m = 12:15, in the lunch break.
    assert step(last=sh(2026, 3, 10, 11, 45)).at == sh(2026, 3, 10, 14, 0)
    # Second attempt at 19:00 + 2h = 21:00, after hours: next working morning.
    second = step(attempts=2, last=sh(2026, 3, 10, 19, 0), first=sh(2026, 3, 10, 18, 0))
    assert second == NextStep(NextAction.RETRY, Channel.VOICE, sh(2026, 3, 11, 9, 0))


def test_retry_over_a_holiday_waits_for_the_make_up_working_day() -> None:
    # Third attempt Friday 2026-10-09 15:00 + 1d = make-up Saturday 10-10 15:00, a working day.
    result = step(attempts=3, last=sh(2026, 10, 9, 15, 0), first=sh(2026, 10, 9, 10, 0))
    assert result.at == sh(2026, 10, 10, 15, 0)


def test_late_retry_is_never_scheduled_in_the_past_or_outside_a_window() -> None:
    # Due at 10:30, but the scheduler only looks at 20:30: the retry goes to tomorrow morning.
    result = step(last=sh(2026, 3, 10, 10, 0), now=sh(2026, 3, 10, 20, 30))
    assert result == NextStep(NextAction.RETRY, Channel.VOICE, sh(2026, 3, 11, 9, 0))


def test_retry_that_would_pass_expiry_expires() -> None:
    # First attempt Thursday 10:00 expires Sunday 10:00; Friday 15:00 + 1d -> Monday 09:00.
    result = step(attempts=3, last=sh(2026, 3, 13, 15, 0), first=sh(2026, 3, 12, 10, 0))
    assert result == NextStep(NextAction.EXPIRE, Channel.VOICE, None)


def test_retry_exactly_at_expiry_expires() -> None:
    policy = RetryPolicy(expire_after=timedelta(minutes=30))
    result = step(last=sh(2026, 3, 10, 10, 0), policy=policy)
    assert result.action is NextAction.EXPIRE


def test_last_voice_attempt_falls_back_to_sms_for_a_mobile() -> None:
    result = step(attempts=4, last=sh(2026, 3, 11, 10, 0), first=sh(2026, 3, 10, 10, 0))
    assert result == NextStep(NextAction.FALLBACK, Channel.SMS, sh(2026, 3, 11, 10, 0))


def test_sms_fallback_waits_for_the_window() -> None:
    result = step(
        attempts=4, last=sh(2026, 3, 11, 19, 50), first=sh(2026, 3, 10, 10, 0),
        now=sh(2026, 3, 11, 20, 5),
    )
    assert result == NextStep(NextAction.FALLBACK, Channel.SMS, sh(2026, 3, 12, 9, 0))


def test_sms_fallback_after_expiry_expires() -> None:
    result = step(
        attempts=4, last=sh(2026, 3, 13, 19, 50), first=sh(2026, 3, 11, 10, 0),
        now=sh(2026, 3, 13, 20, 5),
    )
    assert result == NextStep(NextAction.EXPIRE, Channel.SMS, None)


def test_landline_is_done_after_the_last_voice_attempt() -> None:
    result = step(attempts=4, last=sh(2026, 3, 11, 10, 0), is_mobile=False)
    assert result == NextStep(NextAction.DONE, Channel.VOICE, None)


def test_landline_may_fall_back_when_mobile_is_not_required() -> None:
    policy = RetryPolicy(sms_fallback_requires_mobile=False)
    result = step(attempts=4, last=sh(2026, 3, 11, 10, 0), is_mobile=False, policy=policy)
    assert result.action is NextAction.FALLBACK
    assert result.channel is Channel.SMS


def test_done_after_the_sms_attempt() -> None:
    result = step(channel=Channel.SMS, attempts=1, last=sh(2026, 3, 11, 10, 0))
    assert result == NextStep(NextAction.DONE, Channel.SMS, None)


def test_sms_only_campaign_retries_sms() -> None:
    policy = RetryPolicy(intervals={Channel.SMS: (timedelta(hours=4),)}, channel_order=(Channel.SMS,))
    result = step(channel=Channel.SMS, last=sh(2026, 3, 11, 10, 0), policy=policy)
    assert result == NextStep(NextAction.RETRY, Channel.SMS, sh(2026, 3, 11, 14, 0))
    done = step(channel=Channel.SMS, attempts=2, last=sh(2026, 3, 11, 14, 0), policy=policy)
    assert done.action is NextAction.DONE


def test_next_step_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        step(attempts=0, last=sh(2026, 3, 11, 10, 0))
    with pytest.raises(ValueError, match="not in the channel order"):
        step(last=sh(2026, 3, 11, 10, 0), policy=RetryPolicy(channel_order=(Channel.SMS,)))
    with pytest.raises(ValueError, match="timezone-aware"):
        step(last=datetime(2026, 3, 11, 10, 0), now=sh(2026, 3, 11, 10, 0))


@given(
    attempts=st.integers(min_value=1, max_value=5),
    channel=st.sampled_from(Channel),
    is_mobile=st.booleans(),
    last=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 1),
                      timezones=st.just(SHANGHAI)),
    delay=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
)
def test_scheduled_steps_are_inside_a_window_and_before_expiry(
    attempts: int, channel: Channel, is_mobile: bool, last: datetime, delay: timedelta
) -> None:
    now = last + delay
    result = step(channel=channel, attempts=attempts, last=last, is_mobile=is_mobile, now=now)
    if result.action in (NextAction.RETRY, NextAction.FALLBACK):
        assert result.at is not None
        assert may_contact(CONTACT, result.at)
        assert now <= result.at < last + RETRY.expire_after
    else:
        assert result.at is None


# --- sampling -----------------------------------------------------------------------------------


def test_sample_score_is_reproducible_from_sha256() -> None:
    digest = hashlib.sha256(b"campaign-7:item-42").digest()
    expected = (int.from_bytes(digest[:8], "big") >> 11) / 2**53
    assert sample_score("item-42", "campaign-7") == expected
    assert sample_score("item-42", "campaign-7") == sample_score("item-42", "campaign-7")
    assert sample_score("item-42", "campaign-8") != expected


def test_rate_one_picks_everything_and_rate_zero_nothing() -> None:
    keys = [f"item-{i}" for i in range(1000)]
    assert all(is_sampled(key, "seed", 1.0) for key in keys)
    assert not any(is_sampled(key, "seed", 0.0) for key in keys)


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.9])
def test_sampled_proportion_matches_the_rate(rate: float) -> None:
    picked = sum(is_sampled(f"item-{i}", "2026Q1-campaign", rate) for i in range(10_000))
    # Four standard deviations of a binomial proportion at n = 10,000 is at most 0.02.
    assert abs(picked / 10_000 - rate) < 0.02


def test_different_seeds_pick_different_items() -> None:
    keys = [f"item-{i}" for i in range(1000)]
    assert {k for k in keys if is_sampled(k, "a", 0.5)} != {k for k in keys if is_sampled(k, "b", 0.5)}


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_sampling_rate_outside_zero_to_one_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        is_sampled("item", "seed", rate)


@given(key=st.text(), seed=st.text(), low=st.floats(0, 1), high=st.floats(0, 1))
def test_sample_score_is_in_unit_interval_and_picks_nest(
    key: str, seed: str, low: float, high: float
) -> None:
    assert 0.0 <= sample_score(key, seed) < 1.0
    low, high = min(low, high), max(low, high)
    if is_sampled(key, seed, low):
        assert is_sampled(key, seed, high)


# --- quarters -----------------------------------------------------------------------------------


def test_quarter_uses_the_local_date() -> None:
    # 2026-03-31 23:30 in Shanghai is 15:30 UTC: still Q1.
    assert quarter_of(utc(2026, 3, 31, 15, 30), SHANGHAI) == "2026Q1"
    assert quarter_of(sh(2026, 3, 31, 23, 30), SHANGHAI) == "2026Q1"
    # 2026-03-31 16:30 UTC is 2026-04-01 00:30 in Shanghai: Q2.
    assert quarter_of(utc(2026, 3, 31, 16, 30), SHANGHAI) == "2026Q2"
    assert quarter_of(utc(2026, 3, 31, 16, 30), NEW_YORK) == "2026Q1"


def test_quarter_bounds_are_local_midnights_in_utc() -> None:
    assert quarter_bounds("2026Q1", SHANGHAI) == (utc(2025, 12, 31, 16), utc(2026, 3, 31, 16))
    assert quarter_bounds("2026Q4", SHANGHAI) == (utc(2026, 9, 30, 16), utc(2026, 12, 31, 16))
    # New York: Q1 starts in EST, Q2 in EDT.
    assert quarter_bounds("2026Q1", NEW_YORK) == (utc(2026, 1, 1, 5), utc(2026, 4, 1, 4))


def test_quarter_bounds_start_inclusive_end_exclusive() -> None:
    start, end = quarter_bounds("2026Q2", SHANGHAI)
    assert quarter_of(start, SHANGHAI) == "2026Q2"
    assert quarter_of(end - timedelta(microseconds=1), SHANGHAI) == "2026Q2"
    assert quarter_of(end, SHANGHAI) == "2026Q3"


def test_parse_quarter_and_previous_quarter() -> None:
    assert parse_quarter("2026Q3") == (2026, 3)
    assert parse_quarter(" 2026q3 ") == (2026, 3)
    assert previous_quarter("2026Q1") == "2025Q4"
    assert previous_quarter("2026Q3") == "2026Q2"


@pytest.mark.parametrize("text", ["2026Q5", "2026Q0", "2026", "26Q1", "Q1 2026", "2026-Q1", "0000Q1"])
def test_parse_quarter_error_names_the_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"quarter '{text}'"):
        parse_quarter(text)


@given(
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                        timezones=st.just(UTC)),
    zone=st.sampled_from([SHANGHAI, NEW_YORK, ZoneInfo("Australia/Lord_Howe")]),
)
def test_quarter_of_agrees_with_quarter_bounds(moment: datetime, zone: ZoneInfo) -> None:
    quarter = quarter_of(moment, zone)
    start, end = quarter_bounds(quarter, zone)
    assert start <= moment < end
    assert quarter_bounds(previous_quarter(quarter), zone)[1] == start


def test_quarter_of_asked_again_and_again_answers_each_instant():
    # The last quarter is remembered per zone: instants just inside and outside it, in turn.
    start, end = quarter_bounds("2026Q2", SHANGHAI)
    moments = [start, end - timedelta(microseconds=1), end, start - timedelta(microseconds=1), start]
    assert [quarter_of(m, SHANGHAI) for m in moments] == ["2026Q2", "2026Q2", "2026Q3", "2026Q1", "2026Q2"]
    assert quarter_of(end - timedelta(microseconds=1), NEW_YORK) == "2026Q2"  # another zone's quarter
    with pytest.raises(ValueError, match="timezone-aware"):
        quarter_of(datetime(2026, 5, 1), SHANGHAI)  # naive, though inside the quarter remembered
