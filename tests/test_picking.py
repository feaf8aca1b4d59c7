"""Picking: scope, delay, max age, reproducible sampling, quotas, the contact cap, opt-outs, phone kinds."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scheduler_fixtures import add_campaign, add_item, add_survey, settings_with
from sqlalchemy import event, func, select, text

from models.domain import Channel
from models.optouts import OptOut
from models.picks import PickSkip, SkipReason
from models.surveys import Survey
from scheduler.campaigns import campaign_summaries
from scheduler.claims import claim_due
from scheduler.picking import (
    Candidate,
    Pick,
    QuarterOf,
    _array_literal,
    apply_quotas,
    contact_channels,
    new_tokens,
    pick,
    recently_surveyed_phones,
    resolve_contact_cap,
)
from scheduler.policy import is_sampled, quarter_bounds, quarter_of

SETTINGS = settings_with()


def surveys_of(session, campaign):
    return {s.item_id: s for s in session.scalars(select(Survey).where(Survey.campaign_id == campaign.id))}


def skips_of(session, campaign):
    rows = session.execute(
        select(PickSkip.item_id, PickSkip.reason).where(PickSkip.campaign_id == campaign.id)
    )
    return dict(rows.all())


def test_scope_delay_and_max_age(session, now, create_department):
    swj, scj = create_department(code="SWJ"), create_department(code="SCJ")
    campaign = add_campaign(
        session, now, departments=["SWJ"], matters=["契税申报"], delay="2h", max_age="30d"
    )
    fresh = add_item(session, swj, now - timedelta(hours=1))  # delay not over yet
    due = add_item(session, swj, now - timedelta(hours=3))
    old = add_item(session, swj, now - timedelta(days=31))  # past max age
    other_dept = add_item(session, scj, now - timedelta(hours=3))
    other_matter = add_item(session, swj, now - timedelta(hours=3), matter="个税汇算")

    report = pick(session, SETTINGS, now)
    assert set(surveys_of(session, campaign)) == {due.id}
    assert skips_of(session, campaign) == {}  # out of scope or age: not candidates at all
    assert report.counts() == {"picked": 1, "skipped": 0}

    pick(session, SETTINGS, now + timedelta(hours=1, minutes=1))
    assert set(surveys_of(session, campaign)) == {due.id, fresh.id}
    assert {old.id, other_dept.id, other_matter.id}.isdisjoint(surveys_of(session, campaign))


def test_picked_survey_fields(session, now, create_department):
    dept = create_department()
    campaign = add_campaign(session, now, language="en-US", channels=["sms", "voice"], max_age="60d")
    item = add_item(session, dept, datetime(2026, 9, 30, 17, 0, tzinfo=UTC))  # 10-01 01:00 in Shanghai
    pick(session, SETTINGS, now)
    survey = surveys_of(session, campaign)[item.id]
    assert len(survey.token) == 32 and survey.department_id == dept.id
    assert survey.quarter == "2026Q4"  # the quarter of the local completion date
    assert (survey.language, survey.channel, survey.state) == ("en-US", "sms", "scheduled")
    assert survey.next_attempt_at == now  # Monday 10:00 local: inside a window
    assert survey.created_at == now and survey.first_attempt_at is None


def test_the_quarter_is_the_centres_whatever_zone_the_campaign_calls_in(session, now, create_department):
    # 10-01 01:00 in Shanghai (app.timezone) is still 09-30 in New York, where this campaign calls:
    # the department's results belong to the quarter the centre closes, 2026Q4.
    dept = create_department()
    campaign = add_campaign(session, now, timezone="America/New_York", max_age="60d", windows=["00:00-24:00"],
                            working_days_only=False)
    item = add_item(session, dept, datetime(2026, 9, 30, 17, 0, tzinfo=UTC))
    pick(session, SETTINGS, now)
    assert surveys_of(session, campaign)[item.id].quarter == "2026Q4"


def test_first_attempt_waits_for_the_next_window(session, create_department):
    saturday = datetime(2026, 11, 21, 4, 0, tzinfo=UTC)  # 12:00 local on a Saturday
    dept = create_department()
    campaign = add_campaign(session, saturday)
    item = add_item(session, dept, saturday - timedelta(days=1))
    pick(session, SETTINGS, saturday)
    monday_nine = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    assert surveys_of(session, campaign)[item.id].next_attempt_at == monday_nine


def test_item_that_cannot_be_contacted_before_it_is_too_old_is_skipped(session, create_department):
    friday_evening = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)  # 21:00 local, windows closed
    dept = create_department()
    campaign = add_campaign(session, friday_evening, max_age="2d")
    aging = add_item(session, dept, friday_evening - timedelta(days=1, hours=12))
    pick(session, SETTINGS, friday_evening)
    assert skips_of(session, campaign) == {aging.id: SkipReason.NO_WINDOW}


def test_sampling_is_reproducible_across_reruns_and_campaigns(session, now, create_department):
    dept = create_department()
    items = [add_item(session, dept, now - timedelta(hours=3, minutes=i)) for i in range(120)]
    first = add_campaign(session, now, sampling_rate=0.3, seed="audit-2026")
    pick(session, SETTINGS.model_copy(), now)
    picked = set(surveys_of(session, first))
    expected = {i.id for i in items if is_sampled(f"test:{i.external_id}", "audit-2026", 0.3)}
    assert picked == expected and 15 < len(picked) < 60
    assert set(skips_of(session, first).values()) == {SkipReason.NOT_SAMPLED}

    pick(session, SETTINGS, now + timedelta(minutes=1))  # a rerun decides nothing twice
    assert set(surveys_of(session, first)) == picked
    total = session.scalar(select(func.count()).select_from(PickSkip).where(PickSkip.campaign_id == first.id))
    assert total == 120 - len(picked)


def test_quotas_per_department_per_quarter_first_completed_first(session, now, create_department):
    swj, scj = create_department(code="SWJ"), create_department(code="SCJ")
    settings = settings_with(scheduler={"contact_cap_days": 0})
    campaign = add_campaign(session, now, quota=2, quota_by_department={"SCJ": 1}, max_age="90d")
    q4 = [add_item(session, swj, now - timedelta(days=d)) for d in (1, 2, 3, 4)]
    q3 = [add_item(session, swj, datetime(2026, 9, 20 + d, 2, tzinfo=UTC)) for d in (0, 1, 2)]
    scj_items = [add_item(session, scj, now - timedelta(days=d)) for d in (1, 2)]
    pick(session, settings, now)
    picked = set(surveys_of(session, campaign))
    assert picked == {q4[3].id, q4[2].id, q3[0].id, q3[1].id, scj_items[1].id}
    assert skips_of(session, campaign) == {
        q4[1].id: SkipReason.QUOTA_FULL,
        q4[0].id: SkipReason.QUOTA_FULL,
        q3[2].id: SkipReason.QUOTA_FULL,
        scj_items[0].id: SkipReason.QUOTA_FULL,
    }
    late = add_item(session, swj, now - timedelta(hours=3))  # the quarter's quota is still full
    pick(session, settings, now)
    assert skips_of(session, campaign)[late.id] == SkipReason.QUOTA_FULL


def test_contact_cap_newest_item_wins_and_recent_surveys_block(session, now, create_department):
    dept = create_department()
    other = add_campaign(session, now, status="paused")
    campaign = add_campaign(session, now)
    older = add_item(session, dept, now - timedelta(days=3), phone_e164="+8613900000001")
    newer = add_item(session, dept, now - timedelta(days=1), phone_e164="+8613900000001")
    recent = add_item(session, dept, now - timedelta(days=2), phone_e164="+8613900000002")
    long_ago = add_item(session, dept, now - timedelta(days=2), phone_e164="+8613900000003")
    earlier = add_item(session, dept, now - timedelta(days=50), phone_e164="+8613900000002")
    add_survey(session, other, earlier, created_at=now - timedelta(days=10))
    ancient = add_item(session, dept, now - timedelta(days=60), phone_e164="+8613900000003")
    add_survey(session, other, ancient, created_at=now - timedelta(days=45))

    pick(session, SETTINGS, now)  # contact_cap_days = 30
    assert set(surveys_of(session, campaign)) == {newer.id, long_ago.id}
    assert skips_of(session, campaign) == {
        older.id: SkipReason.CONTACT_CAP,
        recent.id: SkipReason.CONTACT_CAP,
    }


def test_try_outs_and_staff_tests_do_not_count_toward_the_contact_cap(session, now, create_department):
    from console.call import prepare_call

    dept = create_department()
    tried = add_item(session, dept, now - timedelta(hours=3))
    # Staff play the call in the terminal about this item (`returnvisit call --item`): nobody is dialled.
    prepare_call(session, SETTINGS, item_id=tried.id, now=now - timedelta(hours=1))
    tested = add_item(session, dept, now - timedelta(hours=3))
    staff = add_campaign(session, now, status="paused")
    add_survey(session, staff, tested, kind="test", created_at=now - timedelta(hours=1))
    campaign = add_campaign(session, now)
    pick(session, SETTINGS, now)
    assert set(surveys_of(session, campaign)) == {tried.id, tested.id}
    assert skips_of(session, campaign) == {}


def test_the_newest_item_within_its_quota_wins_the_contact_cap(session, now, create_department):
    full, free = create_department(code="FULL"), create_department(code="FREE")
    campaign = add_campaign(session, now, quota_by_department={"FULL": 0})
    older = add_item(session, free, now - timedelta(hours=5), phone_e164="+8613900000001")
    newer = add_item(session, full, now - timedelta(hours=3), phone_e164="+8613900000001")
    oldest = add_item(session, free, now - timedelta(hours=7), phone_e164="+8613900000001")
    pick(session, SETTINGS, now)
    assert set(surveys_of(session, campaign)) == {older.id}
    assert skips_of(session, campaign) == {
        newer.id: SkipReason.QUOTA_FULL,
        oldest.id: SkipReason.CONTACT_CAP,
    }


def test_newest_item_wins_across_campaigns_in_one_tick(session, now, create_department):
    dept = create_department()
    first, second = add_campaign(session, now), add_campaign(session, now)
    old = add_item(session, dept, now - timedelta(days=2), phone_e164="+8613900000009")
    new = add_item(session, dept, now - timedelta(days=1), phone_e164="+8613900000009")
    pick(session, SETTINGS, now)
    picked = [(s.campaign_id, s.item_id) for s in session.scalars(select(Survey))]
    assert len(picked) == 1 and picked[0][1] == new.id
    assert skips_of(session, first)[old.id] == SkipReason.CONTACT_CAP
    assert skips_of(session, second)[old.id] == SkipReason.CONTACT_CAP


def test_opt_outs_are_skipped_per_channel(session, now, create_department):
    dept = create_department()
    campaign = add_campaign(session, now)
    everything = add_item(session, dept, now - timedelta(days=1))
    voice_only = add_item(session, dept, now - timedelta(days=1))
    revoked = add_item(session, dept, now - timedelta(days=1))
    session.add_all(
        [
            OptOut(phone_e164=everything.phone_e164, channel="all", source="staff"),
            OptOut(phone_e164=voice_only.phone_e164, channel="voice", source="keypad"),
            OptOut(phone_e164=revoked.phone_e164, channel="all", source="staff", revoked_at=now),
        ]
    )
    session.flush()
    pick(session, SETTINGS, now)
    surveys = surveys_of(session, campaign)
    assert skips_of(session, campaign) == {everything.id: SkipReason.OPTED_OUT}
    assert surveys[voice_only.id].channel == "sms"  # texts are still allowed
    assert surveys[revoked.id].channel == "voice"


def test_phone_kinds_per_channel(session, now, create_department):
    dept = create_department()
    sms_only = add_campaign(session, now, channels=["sms"])
    both = add_campaign(session, now, channels=["voice", "sms"])
    settings = settings_with(scheduler={"contact_cap_days": 0})
    landline = add_item(
        session, dept, now - timedelta(days=1), phone_kind="fixed", phone_e164="+862368881234"
    )
    invalid = add_item(session, dept, now - timedelta(days=1), phone_kind="invalid", phone_e164=None)
    pick(session, settings, now)
    assert skips_of(session, sms_only) == {
        landline.id: SkipReason.LANDLINE_SMS_ONLY,
        invalid.id: SkipReason.INVALID_PHONE,
    }
    assert surveys_of(session, both)[landline.id].channel == "voice"
    assert skips_of(session, both) == {invalid.id: SkipReason.INVALID_PHONE}


def test_reason_counts_are_reported(session, now, create_department):
    dept = create_department(code="SWJ")
    campaign = add_campaign(session, now, channels=["sms"], name="短信回访")
    add_item(session, dept, now - timedelta(days=1))
    add_item(session, dept, now - timedelta(days=1), phone_kind="fixed")
    add_item(session, dept, now - timedelta(days=1), phone_kind="fixed")
    add_item(session, dept, now - timedelta(days=1), phone_kind="invalid", phone_e164=None)
    report = pick(session, SETTINGS, now)
    assert report.picked == {("短信回访", "SWJ"): 1}
    assert report.skipped == {
        ("短信回访", "SWJ", "landline_sms_only"): 2,
        ("短信回访", "SWJ", "invalid_phone"): 1,
    }
    assert report.counts() == {
        "picked": 1,
        "skipped": 3,
        "skipped_invalid_phone": 1,
        "skipped_landline_sms_only": 2,
    }
    [summary] = [s for s in campaign_summaries(session) if s.name == campaign.name]
    assert summary.skipped_by_reason == {"landline_sms_only": 2, "invalid_phone": 1}
    assert summary.surveys_by_state == {"scheduled": 1}


def test_inactive_campaigns_pick_nothing(session, now, create_department):
    dept = create_department()
    paused = add_campaign(session, now, status="paused")
    draft = add_campaign(session, now, status="draft")
    add_item(session, dept, now - timedelta(days=1))
    pick(session, SETTINGS, now)
    assert surveys_of(session, paused) == {} and surveys_of(session, draft) == {}


# Pure decisions.


def candidate(item_id, completed_at, phone="+8613800000000", dept=1):
    return Candidate(item_id, f"s:{item_id}", dept, phone, "mobile", completed_at)


@pytest.mark.parametrize(
    ("channels", "kind", "opted", "expected"),
    [
        ([Channel.VOICE, Channel.SMS], "mobile", set(), ((Channel.VOICE, Channel.SMS), None)),
        ([Channel.VOICE, Channel.SMS], "fixed", set(), ((Channel.VOICE,), None)),
        ([Channel.SMS], "fixed", set(), ((), SkipReason.LANDLINE_SMS_ONLY)),
        ([Channel.VOICE, Channel.SMS], "mobile", {"voice"}, ((Channel.SMS,), None)),
        ([Channel.VOICE, Channel.SMS], "fixed", {"voice"}, ((), SkipReason.OPTED_OUT)),
        ([Channel.VOICE], "mobile", {"all"}, ((), SkipReason.OPTED_OUT)),
    ],
)
def test_contact_channels(channels, kind, opted, expected):
    assert contact_channels(channels, kind, opted) == expected


def test_resolve_contact_cap_keeps_the_newest_per_phone(now):
    a = Pick(1, candidate(1, now - timedelta(days=2)), Channel.VOICE, "2026Q4", now)
    b = Pick(1, candidate(2, now - timedelta(days=1)), Channel.VOICE, "2026Q4", now)
    c = Pick(2, candidate(3, now - timedelta(days=1), phone="+8613800000001"), Channel.VOICE, "2026Q4", now)
    kept, capped = resolve_contact_cap([b, a, c], recently_surveyed={"+8613800000001"})
    assert kept == [b] and set(capped) == {a, c}


def test_apply_quotas_counts_existing_surveys(now):
    picks = [
        Pick(1, candidate(i, now - timedelta(hours=i)), Channel.VOICE, "2026Q4", now) for i in range(1, 5)
    ]
    kept, over = apply_quotas(picks, {(1, 1): 3}, {(1, 1, "2026Q4"): 1})
    assert [p.candidate.item_id for p in kept] == [4, 3] and len(over) == 2
    kept, over = apply_quotas(picks, {(1, 1): None}, {})
    assert len(kept) == 4 and not over


# What makes a sweep over ten thousand candidates fast, checked for correctness.


@given(
    st.lists(
        st.datetimes(
            min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["Asia/Shanghai", "America/New_York", "America/Santiago", "Australia/Lord_Howe"]),
)
def test_quarter_of_many_instants_agrees_with_quarter_of(instants, zone):
    tz = ZoneInfo(zone)
    quarter = QuarterOf(tz)  # one instance: later instants reuse (or replace) the cached bounds
    assert [quarter(at) for at in instants] == [quarter_of(at, tz) for at in instants]


def test_new_tokens_are_distinct_url_safe_and_32_characters():
    tokens = new_tokens(2000)
    assert len(set(tokens)) == 2000
    assert all(len(t) == 32 and re.fullmatch(r"[A-Za-z0-9_-]{32}", t) for t in tokens)
    assert new_tokens(0) == []


def test_array_literal_quotes_only_what_needs_quoting():
    assert _array_literal([1, 22, "+8613800000000", "2026Q4", "ab-c_D"]) == (
        "{1,22,+8613800000000,2026Q4,ab-c_D}"
    )
    assert _array_literal(["a b", "x,y", 'q"', "b\\s", "NULL", "", "{}"]) == (
        '{"a b","x,y","q\\"","b\\\\s","NULL","","{}"}'
    )


def test_array_literal_round_trips_through_postgresql(session, backend):
    if backend != "postgresql":
        pytest.skip("a PostgreSQL array literal")
    values = ["1", "+8613800000000", "a b", "x,y", 'q"', "b\\s", "null", "", "{}", "中文"]
    cast_back = text("SELECT CAST(:values AS VARCHAR[])")
    assert session.scalar(cast_back, {"values": _array_literal(values)}) == values


def test_contact_cap_asks_about_the_given_phones_only(session, now, create_department):
    dept = create_department()
    campaign = add_campaign(session, now, status="paused")
    asked = add_item(session, dept, now - timedelta(days=2))
    other = add_item(session, dept, now - timedelta(days=2))
    for item in (asked, other):
        add_survey(session, campaign, item, created_at=now - timedelta(days=3))
    since = now - timedelta(days=30)
    assert recently_surveyed_phones(session, since, [asked.phone_e164, "+8613911112222"]) == {
        asked.phone_e164
    }
    assert recently_surveyed_phones(session, now - timedelta(days=1), [asked.phone_e164]) == set()
    assert recently_surveyed_phones(session, since, []) == set()


def test_surveys_are_counted_only_for_campaigns_with_a_quota(session, now, create_department, engine):
    dept = create_department()
    add_campaign(session, now)
    add_item(session, dept, now - timedelta(days=1))
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        pick(session, SETTINGS, now)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert not [s for s in statements if "GROUP BY surveys.campaign_id" in s]


def test_pick_and_claim_commit_without_waiting_for_the_flush_on_postgresql(session, now, create_department):
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("a PostgreSQL commit setting")
    dept = create_department()
    add_campaign(session, now)
    add_item(session, dept, now - timedelta(days=1))
    setting = text("SHOW synchronous_commit")
    assert session.scalar(setting) == "on"
    pick(session, SETTINGS, now)
    assert session.scalar(setting) == "off"
    session.execute(text("SET LOCAL synchronous_commit = on"))
    assert claim_due(session, owner="t", now=now, lease=timedelta(minutes=5), limit=10)
    assert session.scalar(setting) == "off"


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "America/Santiago"])
def test_quarter_of_many_instants_at_the_quarter_boundaries(zone):
    tz = ZoneInfo(zone)
    quarter = QuarterOf(tz)
    tick = timedelta(microseconds=1)
    for label in ("2026Q1", "2026Q2", "2026Q3", "2026Q4", "2027Q1"):
        start, _ = quarter_bounds(label, tz)
        for at in (start - tick, start, start + tick, start - timedelta(hours=1)):
            assert quarter(at) == quarter_of(at, tz)
