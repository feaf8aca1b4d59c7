"""settle_attempt: retry, fallback, expiry and final dispositions by attempt status; the expiry sweep."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from scheduler_fixtures import add_campaign, add_item, add_survey, settings_with

from models.cases import CaseState
from models.cases_ops import answer_case, close_case, events_of, on_verification_finished, open_case_for
from models.domain import Channel
from models.optouts import OptOut
from models.survey_ops import finish_survey, record_answer
from models.surveys import Answer, Attempt
from scheduler.calendar import Window
from scheduler.outcomes import contact_policy_for, expire_sweep, retry_policy_for, settle_attempt

SETTINGS = settings_with()
LOCAL = ZoneInfo("Asia/Shanghai")


def local(day, hour, minute=0):
    return datetime(2026, 11, day, hour, minute, tzinfo=LOCAL).astimezone(UTC)


@pytest.fixture
def setup(session, now, create_department):
    """Factory: a claimed survey of a fresh item, and a function adding its attempts."""
    dept = create_department()

    def make(campaign_config=None, phone_kind="mobile", channel="voice", **survey_fields):
        campaign = add_campaign(session, now, **(campaign_config or {}))
        item = add_item(session, dept, now - timedelta(days=1), phone_kind=phone_kind)
        fields = {
            "state": "dialling",
            "lease_owner": "me",
            "lease_expires_at": now + timedelta(minutes=5),
            "channel": channel,
            "first_attempt_at": now,
            "next_attempt_at": now,
        }
        fields.update(survey_fields)
        survey = add_survey(session, campaign, item, **fields)

        def attempt(status, number=1, at=now, channel=channel):
            row = Attempt(survey_id=survey.id, channel=channel, number=number, status=status, created_at=at)
            session.add(row)
            session.flush()
            return row

        return survey, attempt

    return make


@pytest.fixture
def answered_case(session, now, create_survey):
    """Factory: a case the department answered at `now`, and its scheduled verification visit."""

    def make():
        survey, _ = create_survey(quarter="2026Q4")
        record_answer(session, survey, "rating", "dissatisfied", channel="voice", now=now)
        finish_survey(session, survey, "complete", now)
        case = open_case_for(session, survey, SETTINGS, now)
        return case, answer_case(session, case, "已整改", "officer1", SETTINGS, now)

    return make


@pytest.mark.parametrize("status", ["busy", "no_answer", "machine", "failed", "canceled"])
def test_unsuccessful_call_is_retried_after_the_first_interval(session, now, setup, status):
    survey, attempt = setup()
    assert settle_attempt(session, survey, attempt(status), SETTINGS, now) == "retry"
    assert (survey.state, survey.channel) == ("scheduled", "voice")
    assert survey.next_attempt_at == now + timedelta(minutes=30)
    assert survey.lease_owner is None and survey.lease_expires_at is None
    assert survey.disposition is None


def test_retry_waits_for_the_next_window(session, setup):
    before_lunch = local(16, 11, 50)
    survey, attempt = setup(first_attempt_at=before_lunch)
    last = attempt("no_answer", at=before_lunch)
    assert settle_attempt(session, survey, last, SETTINGS, local(16, 11, 51)) == "retry"
    assert survey.next_attempt_at == local(16, 14, 0)


def test_second_and_third_retries_use_the_next_intervals(session, setup):
    survey, attempt = setup(first_attempt_at=local(16, 9, 0))
    attempt("busy", number=1, at=local(16, 9, 0))
    second = attempt("busy", number=2, at=local(16, 9, 30))
    assert settle_attempt(session, survey, second, SETTINGS, local(16, 9, 31)) == "retry"
    assert survey.next_attempt_at == local(16, 11, 30)  # 2h later
    third = attempt("busy", number=3, at=local(16, 11, 30))
    assert settle_attempt(session, survey, third, SETTINGS, local(16, 11, 31)) == "retry"
    assert survey.next_attempt_at == local(17, 11, 30)  # 1d later


def test_mobile_falls_back_to_sms_after_the_last_voice_attempt(session, now, setup):
    survey, attempt = setup()
    for number in (1, 2, 3):
        attempt("no_answer", number=number, at=now - timedelta(hours=5 - number))
    last = attempt("no_answer", number=4, at=now)
    assert settle_attempt(session, survey, last, SETTINGS, now) == "fallback"
    assert (survey.state, survey.channel, survey.next_attempt_at) == ("scheduled", "sms", now)


def test_fallback_respects_the_window(session, setup):
    evening = local(16, 20, 30)
    survey, attempt = setup(campaign_config={"retry": {"voice": ""}}, first_attempt_at=evening)
    assert settle_attempt(session, survey, attempt("busy", at=evening), SETTINGS, evening) == "fallback"
    assert survey.next_attempt_at == local(17, 9, 0)


def test_landline_ends_with_the_last_status_after_the_last_voice_attempt(session, now, setup):
    survey, attempt = setup(campaign_config={"retry": {"voice": ""}}, phone_kind="fixed")
    assert settle_attempt(session, survey, attempt("machine"), SETTINGS, now) == "done"
    assert (survey.state, survey.disposition, survey.finished_at) == ("done", "machine", now)
    assert survey.lease_owner is None and survey.next_attempt_at is None


def test_fallback_is_skipped_when_the_citizen_opted_out_of_texts(session, now, setup):
    survey, attempt = setup(campaign_config={"retry": {"voice": ""}})
    session.add(OptOut(phone_e164=survey.item.phone_e164, channel="sms", source="sms_keyword"))
    session.flush()
    assert settle_attempt(session, survey, attempt("no_answer"), SETTINGS, now) == "done"
    assert survey.disposition == "no_answer"


def test_retry_after_expiry_ends_as_not_contacted(session, now, setup):
    survey, attempt = setup(first_attempt_at=now - timedelta(days=3) + timedelta(minutes=10))
    assert settle_attempt(session, survey, attempt("busy"), SETTINGS, now) == "expire"
    assert (survey.state, survey.disposition) == ("done", "not_contacted")


@pytest.mark.parametrize(
    ("status", "disposition"),
    [("undelivered", "undelivered"), ("failed", "failed"), ("canceled", "no_answer")],
)
def test_last_sms_ends_with_its_status(session, now, setup, status, disposition):
    survey, attempt = setup(campaign_config={"channels": ["sms"]}, channel="sms")
    assert settle_attempt(session, survey, attempt(status), SETTINGS, now) == "done"
    assert (survey.state, survey.disposition) == ("done", disposition)


def test_finished_or_superseded_surveys_are_left_alone(session, now, setup):
    survey, attempt = setup()
    first = attempt("busy", number=1, at=now - timedelta(hours=1))
    attempt("queued", number=2)
    assert settle_attempt(session, survey, first, SETTINGS, now) == "superseded"
    assert survey.state == "dialling"
    survey.state = "done"
    assert settle_attempt(session, survey, first, SETTINGS, now) == "already_done"


def test_a_second_verification_round_gets_its_retries_again(session, now, answered_case):
    case, visit = answered_case()
    # Round one: three calls unanswered, the fourth answered by a citizen still dissatisfied.
    for number, status in enumerate(["no_answer", "no_answer", "no_answer", "completed"], 1):
        session.add(
            Attempt(
                survey_id=visit.id,
                channel="voice",
                number=number,
                status=status,
                created_at=now + timedelta(hours=number),
            )
        )
    answered = now + timedelta(hours=4)
    record_answer(session, visit, "verification", "dissatisfied", channel="voice", now=answered)
    finish_survey(session, visit, "complete", answered)
    on_verification_finished(session, visit, SETTINGS, answered)
    again = local(23, 10)  # the department answers again: round two reuses the survey
    assert answer_case(session, case, "再次整改", "officer1", SETTINGS, again) is visit
    first = Attempt(survey_id=visit.id, channel="voice", number=5, status="no_answer", created_at=again)
    session.add(first)
    visit.state = "dialling"
    session.flush()
    assert settle_attempt(session, visit, first, SETTINGS, again) == "retry"
    assert (visit.channel, visit.next_attempt_at) == ("voice", again + timedelta(minutes=30))


def test_a_conversation_outcome_is_not_settled_here(session, now, setup):
    survey, attempt = setup()
    with pytest.raises(ValueError, match="not settled by retries"):
        settle_attempt(session, survey, attempt("completed"), SETTINGS, now)


def test_policies_for_a_campaign(session, now):
    campaign = add_campaign(
        session,
        now,
        windows=["08:30-11:30"],
        timezone="America/New_York",
        retry={"voice": "1h 3h"},
        expire_after="2d",
        channels=["voice"],
    )
    contact = contact_policy_for(campaign, SETTINGS)
    assert contact.tz == ZoneInfo("America/New_York")
    assert contact.windows == (Window(time(8, 30), time(11, 30)),)
    retry = retry_policy_for(campaign)
    assert retry.intervals == {Channel.VOICE: (timedelta(hours=1), timedelta(hours=3))}
    assert retry.channel_order == (Channel.VOICE,) and retry.expire_after == timedelta(days=2)


def test_expire_sweep(session, now, create_department):
    dept = create_department()
    campaign = add_campaign(session, now)

    def survey(state, first_attempt_days_ago=None, completed_days_ago=1, answered=()):
        item = add_item(session, dept, now - timedelta(days=completed_days_ago))
        first = None if first_attempt_days_ago is None else now - timedelta(days=first_attempt_days_ago)
        row = add_survey(session, campaign, item, state=state, first_attempt_at=first, next_attempt_at=now)
        for question, value in answered:
            session.add(Answer(survey_id=row.id, question=question, value=value, channel="sms"))
            session.flush()
        return row

    expired = survey("scheduled", first_attempt_days_ago=4)
    current = survey("scheduled", first_attempt_days_ago=1)
    too_old = survey("scheduled", completed_days_ago=31)
    young = survey("scheduled", completed_days_ago=10)
    open_answered = survey("in_progress", first_attempt_days_ago=4, answered=[("rating", "satisfied")])
    # Only free text the parser could not rate: the citizen broke off before rating.
    open_commented = survey("in_progress", first_attempt_days_ago=4, answered=[("comment", "窗口态度差")])
    open_silent = survey("in_progress", first_attempt_days_ago=4)
    open_recent = survey("in_progress", first_attempt_days_ago=1)
    claimed = survey("dialling", first_attempt_days_ago=4)

    counts = expire_sweep(session, SETTINGS, now)
    assert counts == {"expired_scheduled": 1, "expired_unattempted": 1, "closed_open": 3}
    opened = (open_answered, open_commented, open_silent, open_recent)
    for row in (expired, current, too_old, young, *opened, claimed):
        session.refresh(row)
    assert (expired.state, expired.disposition, expired.finished_at) == ("done", "not_contacted", now)
    assert (too_old.state, too_old.disposition) == ("done", "not_contacted")
    assert [r.disposition for r in (open_answered, open_commented, open_silent)] == [
        "partial",
        "break_off",
        "no_answer",
    ]
    assert [r.state for r in (current, young, open_recent, claimed)] == [
        "scheduled",
        "scheduled",
        "in_progress",
        "dialling",
    ]


def test_expire_sweep_tells_the_case_its_verification_visit_ended(session, now, answered_case):
    open_case, open_visit = answered_case()  # a text the citizen never answered
    open_visit.state, open_visit.channel, open_visit.first_attempt_at = "in_progress", "sms", now
    lapsed_case, lapsed_visit = answered_case()  # its retries ran past the expiry
    lapsed_visit.first_attempt_at = now
    session.flush()
    later = now + timedelta(days=4)
    counts = expire_sweep(session, SETTINGS, later)
    assert counts == {"expired_scheduled": 1, "expired_unattempted": 0, "closed_open": 1}
    for case, visit, disposition in (
        (open_case, open_visit, "no_answer"),
        (lapsed_case, lapsed_visit, "not_contacted"),
    ):
        assert (visit.state, visit.disposition) == ("done", disposition)
        assert (case.state, case.verification_result) == (CaseState.ANSWERED, "unverified")
        assert events_of(session, case)[-1].note.endswith(f"without an answer ({disposition})")
        close_case(session, case, "核实无法联系，按已整改结案", "supervisor", later)  # now it may be closed
        assert case.state == CaseState.CLOSED
