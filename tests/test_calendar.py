"""Working days (chinese_calendar 2026 data), calling windows, DST, and their properties."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import calendar as calendar_module
from scheduler.calendar import (
    ContactPolicy,
    NoOpeningError,
    Window,
    WorkCalendar,
    add_working_days,
    contact_time,
    local_to_utc,
    may_contact,
    next_opening,
    parse_window,
    parse_windows,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
CN = WorkCalendar()
EVERY_DAY = WorkCalendar(region="none")


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def policy() -> ContactPolicy:
    return ContactPolicy(tz=SHANGHAI)


@pytest.fixture
def fresh_year_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calendar_module, "_warned_years", set())


# --- working days -------------------------------------------------------------------------------

# What chinese_calendar 1.11 says about 2026 (State Council arrangement).
@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 1, 1), False),  # New Year's Day (Thu), holiday Jan 1-3
        (date(2026, 1, 4), True),  # Sunday, make-up working day for New Year
        (date(2026, 2, 13), True),  # Friday before Spring Festival
        (date(2026, 2, 14), True),  # Saturday, make-up working day
        (date(2026, 2, 16), False),  # Spring Festival, holiday Feb 15-23
        (date(2026, 2, 23), False),  # Monday, last day of Spring Festival
        (date(2026, 2, 24), True),  # Tuesday, back at work
        (date(2026, 2, 28), True),  # Saturday, make-up working day
        (date(2026, 9, 20), True),  # Sunday, make-up working day for National Day
        (date(2026, 9, 25), False),  # Mid-autumn Festival (Fri), holiday Sep 25-27
        (date(2026, 10, 1), False),  # National Day, holiday Oct 1-7
        (date(2026, 10, 7), False),  # Wednesday, last day of National Day
        (date(2026, 10, 8), True),  # Thursday, back at work
        (date(2026, 10, 10), True),  # Saturday, make-up working day
        (date(2026, 10, 11), False),  # an ordinary Sunday
    ],
)
def test_cn_calendar_follows_2026_holidays_and_make_up_days(day: date, working: bool) -> None:
    assert CN.is_working_day(day) is working


def test_region_none_is_plain_monday_to_friday() -> None:
    assert EVERY_DAY.is_working_day(date(2026, 10, 1))  # National Day, but a Thursday
    assert not EVERY_DAY.is_working_day(date(2026, 10, 10))  # make-up Saturday ignored
    assert WorkCalendar(region="") == EVERY_DAY


def test_extra_closed_and_extra_working_days_override_the_statutory_calendar() -> None:
    cal = WorkCalendar(
        extra_closed=frozenset({date(2026, 3, 9)}), extra_working=frozenset({date(2026, 10, 1)})
    )
    assert not cal.is_working_day(date(2026, 3, 9))  # an ordinary Monday, closed locally
    assert cal.is_working_day(date(2026, 10, 1))  # National Day, open locally
    assert cal.is_working_day(date(2026, 3, 10))


def test_day_both_closed_and_working_is_rejected() -> None:
    with pytest.raises(ValueError, match="2026-03-09"):
        WorkCalendar(
            extra_closed=frozenset({date(2026, 3, 9)}), extra_working=frozenset({date(2026, 3, 9)})
        )


def test_unknown_region_is_rejected() -> None:
    with pytest.raises(ValueError, match="'HK'"):
        WorkCalendar(region="HK")


def test_is_working_day_rejects_a_datetime() -> None:
    with pytest.raises(TypeError):
        CN.is_working_day(sh(2026, 3, 9, 10))


@pytest.mark.usefixtures("fresh_year_warnings")
def test_year_without_data_falls_back_to_weekdays_and_warns_once_per_year(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cal = WorkCalendar(extra_closed=frozenset({date(2027, 2, 8)}))
    with caplog.at_level(logging.WARNING, logger="scheduler.calendar"):
        assert cal.is_working_day(date(2027, 1, 1))  # really a holiday, but no data: a Friday
        assert not cal.is_working_day(date(2027, 1, 2))  # Saturday
        assert not cal.is_working_day(date(2027, 2, 8))  # configured extra closed Monday
        assert WorkCalendar().is_working_day(date(2027, 3, 1))  # another calendar, same year
        assert WorkCalendar().is_working_day(date(2028, 3, 1))
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert [("2027" in r.getMessage(), "2028" in r.getMessage()) for r in warnings] == [
        (True, False),
        (False, True),
    ]


@pytest.mark.usefixtures("fresh_year_warnings")
def test_region_none_never_warns_about_missing_data(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="scheduler.calendar"):
        assert EVERY_DAY.is_working_day(date(2030, 1, 1))
    assert not caplog.records


# --- add_working_days ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "n", "due_local"),
    [
        # Oct 1-7 off; Oct 8, 9, Sat 10 (make-up), Mon 12, Tue 13.
        (sh(2026, 9, 30, 10), 5, sh(2026, 10, 13, 23, 59, 59)),
        # Sun Sep 20 (make-up) counts, Sep 25-27 and Oct 1-7 do not.
        (sh(2026, 9, 18, 10), 15, sh(2026, 10, 15, 23, 59, 59)),
        (sh(2026, 9, 30, 23, 30), 1, sh(2026, 10, 8, 23, 59, 59)),
        # Spring Festival: Sat Feb 14 is a make-up working day, Feb 15-23 are off.
        (sh(2026, 2, 13, 10), 1, sh(2026, 2, 14, 23, 59, 59)),
        (sh(2026, 2, 13, 10), 2, sh(2026, 2, 24, 23, 59, 59)),
        (sh(2026, 2, 13, 10), 0, sh(2026, 2, 13, 23, 59, 59)),
    ],
)
def test_add_working_days_skips_holidays_and_counts_make_up_days(
    start: datetime, n: int, due_local: datetime
) -> None:
    due = add_working_days(CN, start, n, SHANGHAI)
    assert due == due_local
    assert due.tzinfo is UTC


def test_add_working_days_counts_from_the_local_date_of_start() -> None:
    # 2026-09-29 20:00 UTC is already Wednesday Sep 30 in Shanghai.
    due = add_working_days(CN, utc(2026, 9, 29, 20), 1, SHANGHAI)
    assert due == sh(2026, 10, 8, 23, 59, 59)


def test_add_working_days_rejects_negative_and_naive_input() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_working_days(CN, sh(2026, 3, 2, 10), -1, SHANGHAI)
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_days(CN, datetime(2026, 3, 2, 10), 1, SHANGHAI)


# --- parsing windows ----------------------------------------------------------------------------


def test_parse_window_reads_local_times() -> None:
    assert parse_window("09:00-12:00") == Window(time(9), time(12))
    assert parse_window(" 9:30 - 12:00 ") == Window(time(9, 30), time(12))
    assert parse_window("20:00-24:00") == Window(time(20), time(0))
    assert not parse_window("20:00-24:00").crosses_midnight
    assert str(parse_window("20:00-24:00")) == "20:00-24:00"


def test_parse_window_spans_midnight_only_when_allowed() -> None:
    with pytest.raises(ValueError, match="window '20:00-02:00' ends before it starts"):
        parse_window("20:00-02:00")
    window = parse_window("20:00-02:00", allow_overnight=True)
    assert window == Window(time(20), time(2))
    assert window.crosses_midnight


@pytest.mark.parametrize("text", ["12:00-09:00", "09:00-09:00", "25:00-26:00", "9-12", "", "x"])
def test_parse_window_error_names_the_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"window '{text}'"):
        parse_window(text)


def test_parse_windows_reads_a_list() -> None:
    expected = (Window(time(9), time(12)), Window(time(14), time(20)))
    assert parse_windows("09:00-12:00, 14:00-20:00") == expected
    assert parse_windows("09:00 - 12:00 14:00-20:00") == expected
    with pytest.raises(ValueError, match="list no window"):
        parse_windows(" ")


def test_empty_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        Window(time(9), time(9))


# --- may_contact and next_opening ---------------------------------------------------------------


def test_lunch_break_closes_at_noon_and_reopens_at_two(policy: ContactPolicy) -> None:
    assert may_contact(policy, sh(2026, 3, 10, 11, 59))
    assert not may_contact(policy, sh(2026, 3, 10, 12, 0))
    assert next_opening(policy, sh(2026, 3, 10, 12, 0)) == sh(2026, 3, 10, 14, 0)
    assert may_contact(policy, sh(2026, 3, 10, 14, 0))


def test_inside_a_window_next_opening_is_now_in_utc(policy: ContactPolicy) -> None:
    opening = next_opening(policy, sh(2026, 3, 10, 10, 15))
    assert opening == sh(2026, 3, 10, 10, 15)
    assert opening.tzinfo is UTC


def test_evening_moves_to_next_working_morning(policy: ContactPolicy) -> None:
    assert not may_contact(policy, sh(2026, 3, 10, 20, 0))
    assert next_opening(policy, sh(2026, 3, 10, 20, 0)) == sh(2026, 3, 11, 9, 0)
    assert next_opening(policy, sh(2026, 3, 10, 7, 0)) == sh(2026, 3, 10, 9, 0)


def test_weekend_moves_to_monday_morning(policy: ContactPolicy) -> None:
    assert not may_contact(policy, sh(2026, 3, 7, 10, 0))
    assert next_opening(policy, sh(2026, 3, 6, 20, 30)) == sh(2026, 3, 9, 9, 0)
    assert next_opening(policy, sh(2026, 3, 7, 10, 0)) == sh(2026, 3, 9, 9, 0)


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        (sh(2026, 10, 3, 10, 0), sh(2026, 10, 8, 9, 0)),  # National Day holiday
        (sh(2026, 10, 9, 20, 30), sh(2026, 10, 10, 9, 0)),  # Friday -> make-up Saturday
        (sh(2026, 10, 10, 20, 30), sh(2026, 10, 12, 9, 0)),  # make-up Saturday -> Monday
        (sh(2026, 9, 19, 10, 0), sh(2026, 9, 20, 9, 0)),  # Saturday -> make-up Sunday
        (sh(2026, 2, 13, 20, 30), sh(2026, 2, 14, 9, 0)),  # Friday -> make-up Saturday
        (sh(2026, 2, 14, 20, 30), sh(2026, 2, 24, 9, 0)),  # over Spring Festival
    ],
)
def test_holidays_are_skipped_and_make_up_days_open(
    policy: ContactPolicy, now: datetime, opening: datetime
) -> None:
    assert next_opening(policy, now) == opening
    assert may_contact(policy, opening)


def test_extra_closed_day_is_skipped() -> None:
    cal = WorkCalendar(extra_closed=frozenset({date(2026, 3, 9)}))
    policy = ContactPolicy(tz=SHANGHAI, calendar=cal)
    assert not may_contact(policy, sh(2026, 3, 9, 10, 0))
    assert next_opening(policy, sh(2026, 3, 6, 20, 30)) == sh(2026, 3, 10, 9, 0)


def test_every_day_policy_ignores_weekends_and_holidays() -> None:
    policy = ContactPolicy(tz=SHANGHAI, working_days_only=False)
    assert may_contact(policy, sh(2026, 10, 3, 10, 0))
    assert next_opening(policy, sh(2026, 3, 6, 20, 30)) == sh(2026, 3, 7, 9, 0)


def test_overnight_window_after_midnight_belongs_to_the_day_it_started() -> None:
    policy = ContactPolicy(tz=SHANGHAI, windows=(parse_window("20:00-02:00", allow_overnight=True),))
    assert may_contact(policy, sh(2026, 3, 6, 23, 0))  # Friday evening
    assert may_contact(policy, sh(2026, 3, 7, 1, 0))  # Saturday 01:00: Friday's window
    assert not may_contact(policy, sh(2026, 3, 7, 2, 0))  # the end is exclusive
    assert not may_contact(policy, sh(2026, 3, 7, 20, 0))  # Saturday's window: not working
    assert not may_contact(policy, sh(2026, 3, 8, 1, 0))  # Sunday 01:00: Saturday's window
    assert not may_contact(policy, sh(2026, 3, 9, 1, 0))  # Monday 01:00: Sunday's window
    assert may_contact(policy, sh(2026, 3, 10, 1, 0))  # Tuesday 01:00: Monday's window
    assert next_opening(policy, sh(2026, 3, 7, 2, 0)) == sh(2026, 3, 9, 20, 0)


def test_whole_day_window_is_open_around_the_clock() -> None:
    policy = ContactPolicy(tz=SHANGHAI, windows=(parse_window("00:00-24:00"),))
    assert may_contact(policy, sh(2026, 3, 9, 0, 0))
    assert may_contact(policy, sh(2026, 3, 9, 23, 59, 59))
    assert next_opening(policy, sh(2026, 3, 7, 12, 0)) == sh(2026, 3, 9, 0, 0)


def test_policy_without_windows_raises_a_clear_error() -> None:
    policy = ContactPolicy(tz=SHANGHAI, windows=())
    with pytest.raises(NoOpeningError, match="no calling windows"):
        next_opening(policy, sh(2026, 3, 9, 10))
    assert not may_contact(policy, sh(2026, 3, 9, 10))


def test_naive_now_is_rejected(policy: ContactPolicy) -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        may_contact(policy, datetime(2026, 3, 9, 10))


# --- DST in America/New_York --------------------------------------------------------------------


def ny_policy(text: str) -> ContactPolicy:
    return ContactPolicy(tz=NEW_YORK, windows=parse_windows(text), calendar=EVERY_DAY,
                         working_days_only=False)


def test_window_starting_in_spring_forward_gap_opens_when_the_gap_ends() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
    policy = ny_policy("02:30-04:00")
    opening = next_opening(policy, utc(2026, 3, 8, 6, 0))  # 01:00 EST
    assert opening == utc(2026, 3, 8, 7, 0)  # 03:00 EDT, the first instant after 02:30
    assert not may_contact(policy, utc(2026, 3, 8, 6, 59, 59))
    assert may_contact(policy, utc(2026, 3, 8, 7, 59, 59))  # 03:59:59 EDT
    assert not may_contact(policy, utc(2026, 3, 8, 8, 0))  # 04:00 EDT
    # The day after, 02:30 exists again (EDT).
    assert next_opening(policy, utc(2026, 3, 8, 8, 0)) == utc(2026, 3, 9, 6, 30)


def test_window_wholly_inside_the_gap_does_not_open_that_day() -> None:
    policy = ny_policy("02:00-02:45")
    assert next_opening(policy, utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 9, 6, 0)


def test_window_starting_at_0230_on_fall_back_day_is_unambiguous() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 02:30 happens once, in EST.
    policy = ny_policy("02:30-04:00")
    assert next_opening(policy, utc(2026, 11, 1, 5, 0)) == utc(2026, 11, 1, 7, 30)
    assert not may_contact(policy, utc(2026, 11, 1, 6, 30))  # 01:30 EST, the second pass


def test_ambiguous_window_start_uses_the_first_occurrence() -> None:
    policy = ny_policy("01:30-03:00")
    assert next_opening(policy, utc(2026, 11, 1, 5, 0)) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert may_contact(policy, utc(2026, 11, 1, 6, 45))  # 01:45 EST, still inside
    assert not may_contact(policy, utc(2026, 11, 1, 8, 0))  # 03:00 EST


def test_local_to_utc_resolves_gaps_and_folds() -> None:
    assert local_to_utc(date(2026, 3, 8), time(2, 30), NEW_YORK) == utc(2026, 3, 8, 7, 0)
    assert local_to_utc(date(2026, 11, 1), time(1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)
    assert local_to_utc(date(2026, 6, 1), time(9, 0), NEW_YORK) == utc(2026, 6, 1, 13, 0)


# --- contact_time -------------------------------------------------------------------------------


def test_contact_time_inside_a_window_is_the_desired_time(policy: ContactPolicy) -> None:
    assert contact_time(policy, sh(2026, 3, 10, 10, 0), None) == sh(2026, 3, 10, 10, 0)


def test_contact_time_moves_to_the_next_opening(policy: ContactPolicy) -> None:
    expires = sh(2026, 3, 12, 0, 0)
    assert contact_time(policy, sh(2026, 3, 10, 21, 0), expires) == sh(2026, 3, 11, 9, 0)


def test_contact_time_at_or_after_expiry_is_none(policy: ContactPolicy) -> None:
    assert contact_time(policy, sh(2026, 3, 10, 21, 0), sh(2026, 3, 11, 9, 0)) is None
    assert contact_time(policy, sh(2026, 3, 10, 21, 0), sh(2026, 3, 11, 8, 0)) is None
    assert contact_time(policy, sh(2026, 3, 10, 10, 0), sh(2026, 3, 10, 10, 0)) is None


# --- properties ---------------------------------------------------------------------------------

ZONES = [SHANGHAI, NEW_YORK, ZoneInfo("Europe/London"), ZoneInfo("Australia/Lord_Howe"), UTC]
minutes_of_day = st.integers(min_value=0, max_value=24 * 60 - 1)


@st.composite
def windows(draw: st.DrawFn) -> tuple[Window, ...]:
    result = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        start = draw(minutes_of_day)
        end = draw(minutes_of_day.filter(start.__ne__))
        result.append(Window(time(*divmod(start, 60)), time(*divmod(end, 60))))
    return tuple(result)


policies = st.builds(
    ContactPolicy,
    tz=st.sampled_from([zone for zone in ZONES if isinstance(zone, ZoneInfo)]),
    windows=windows(),
    calendar=st.sampled_from([CN, EVERY_DAY]),
    working_days_only=st.booleans(),
)
instants = st.datetimes(
    min_value=datetime(2024, 1, 1),
    max_value=datetime(2026, 12, 31),
    timezones=st.sampled_from(ZONES),
    allow_imaginary=False,
)


@settings(max_examples=300, deadline=None)
@given(policy=policies, now=instants)
def test_next_opening_is_the_first_allowed_instant_not_before_now(
    policy: ContactPolicy, now: datetime
) -> None:
    opening = next_opening(policy, now)
    assert opening >= now
    assert may_contact(policy, opening)
    if opening > now:
        assert not may_contact(policy, now)
        assert not may_contact(policy, opening - timedelta(microseconds=1))


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    desired=instants,
    lifetime=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
)
def test_contact_time_is_never_outside_a_window_or_past_expiry(
    policy: ContactPolicy, desired: datetime, lifetime: timedelta | None
) -> None:
    expires = None if lifetime is None else desired + lifetime
    at = contact_time(policy, desired, expires)
    if at is None:
        assert expires is not None
        assert next_opening(policy, desired) >= expires
    else:
        assert may_contact(policy, at)
        assert at >= desired
        assert expires is None or at < expires
