"""Rectification cases: opened by bad reviews, answered, verified, reopened, escalated (DESIGN §2)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from models.cases import Case, CaseEvent, CaseState, Escalation
from models.cases_ops import (
    CaseError,
    answer_case,
    close_case,
    escalate_overdue,
    events_of,
    mark_escalation,
    on_verification_finished,
    open_case_for,
)
from models.survey_ops import answers_of, finish_survey, record_answer
from models.surveys import Survey, SurveyKind, SurveyState
from scheduler.escalation import escalate_job

# Friday 2026-09-18 10:00 in Asia/Shanghai.
OPENED = datetime(2026, 9, 18, 2, 0, tzinfo=UTC)


@pytest.fixture
def rated_survey(session, create_survey):
    """Factory: a finished survey with a rating (and, optionally, categories and a comment)."""

    def make(grade="dissatisfied", categories=None, comment=None, channel="voice", **overrides):
        survey, _ = create_survey(channel, quarter="2026Q3", **overrides)
        record_answer(session, survey, "rating", grade, channel=channel, now=OPENED)
        if categories:
            record_answer(session, survey, "categories", categories, channel=channel, now=OPENED)
        if comment:
            record_answer(session, survey, "comment", comment, channel=channel, now=OPENED)
        finish_survey(session, survey, "complete", OPENED)
        session.flush()
        return survey

    return make


def verify(session, settings, survey, verdict, now):
    """Let the citizen answer the verification visit and finish it."""
    record_answer(session, survey, "verification", verdict, channel=survey.channel, now=now)
    finish_survey(session, survey, "complete", now)
    return on_verification_finished(session, survey, settings, now)


def test_bad_review_opens_a_case_due_across_the_national_day_holiday(session, settings, rated_survey):
    survey = rated_survey("very_dissatisfied", categories="delay,cold", comment="等了三个小时")
    case = open_case_for(session, survey, settings, OPENED)
    assert case is not None
    assert (case.state, case.grade, case.categories, case.comment) == (
        CaseState.OPEN,
        "very_dissatisfied",
        ["delay", "cold"],
        "等了三个小时",
    )
    assert (case.department_id, case.quarter) == (survey.department_id, "2026Q3")
    # 15 working days after Fri 09-18 on China's 2026 calendar: Sun 09-20 (make-up day) 1, 09-21..24
    # 2-5, Fri 09-25 Mid-Autumn off, 09-28..30 6-8, 10-01..07 National Day off, 10-08 9, 10-09 10,
    # Sat 10-10 (make-up day) 11, 10-12..15 12-15: due Thu 10-15 at the end of the day, local time.
    assert case.due_at == datetime(2026, 10, 15, 15, 59, 59, tzinfo=UTC)
    assert [(e.actor, e.from_state, e.to_state) for e in events_of(session, case)] == [
        ("system", None, "open")
    ]


def test_due_working_days_is_a_setting(session, rated_survey):
    from models.settings import load_settings

    five = load_settings(env={}, overrides={"cases": {"due_working_days": 5}})
    case = open_case_for(session, rated_survey(), five, OPENED)
    # Sun 09-20 (make-up) 1, 09-21..24 2-5.
    assert case.due_at == datetime(2026, 9, 24, 15, 59, 59, tzinfo=UTC)


def test_a_case_opens_once_per_survey_and_takes_categories_that_arrive_later(session, settings, rated_survey):
    survey = rated_survey("dissatisfied")
    first = open_case_for(session, survey, settings, OPENED)
    assert first.categories == []
    record_answer(session, survey, "categories", "shirk", channel="voice", now=OPENED)
    again = open_case_for(session, survey, settings, OPENED)
    assert again is first and first.categories == ["shirk"]
    assert session.scalars(select(Case).where(Case.survey_id == survey.id)).all() == [first]
    assert len(events_of(session, first)) == 1


@pytest.mark.parametrize("grade", ["very_satisfied", "satisfied", "basically_satisfied"])
def test_a_good_rating_opens_no_case(session, settings, rated_survey, grade):
    assert open_case_for(session, rated_survey(grade), settings, OPENED) is None


def test_a_survey_without_rating_opens_no_case(session, settings, create_survey):
    survey, _ = create_survey()
    assert open_case_for(session, survey, settings, OPENED) is None


def test_answer_schedules_a_verification_visit_in_the_next_calling_window(session, settings, rated_survey):
    survey = rated_survey(channel="sms", language="en-US")
    case = open_case_for(session, survey, settings, OPENED)
    # Friday 2026-10-09 21:00 local, after the last window: the next opening is Saturday 10-10
    # 09:00, a make-up working day.
    answered = datetime(2026, 10, 9, 13, 0, tzinfo=UTC)
    visit = answer_case(session, case, "已约谈窗口负责人并整改", "officer1", settings, answered)
    assert (case.state, case.feedback, case.answered_at) == (
        CaseState.ANSWERED,
        "已约谈窗口负责人并整改",
        answered,
    )
    assert case.verification_survey_id == visit.id
    assert (visit.kind, visit.state, visit.channel, visit.language) == (
        SurveyKind.VERIFICATION,
        SurveyState.SCHEDULED,
        "sms",
        "en-US",
    )
    assert (visit.campaign_id, visit.item_id, visit.department_id, visit.quarter) == (
        survey.campaign_id,
        survey.item_id,
        survey.department_id,
        survey.quarter,
    )
    assert visit.next_attempt_at == datetime(2026, 10, 10, 1, 0, tzinfo=UTC)
    assert len(visit.token) >= 32 and visit.token != survey.token
    last = events_of(session, case)[-1]
    assert (last.actor, last.from_state, last.to_state, last.note) == (
        "officer1",
        "open",
        "answered",
        "已约谈窗口负责人并整改",
    )


def test_a_satisfied_verification_closes_the_case(session, settings, rated_survey):
    case = open_case_for(session, rated_survey(), settings, OPENED)
    visit = answer_case(session, case, "已整改", "officer1", settings, datetime(2026, 9, 22, 2, tzinfo=UTC))
    verified = datetime(2026, 9, 23, 3, tzinfo=UTC)
    assert verify(session, settings, visit, "satisfied", verified) is case
    assert (case.state, case.verification_result, case.verified_at, case.closed_at) == (
        CaseState.CLOSED,
        "satisfied",
        verified,
        verified,
    )
    with pytest.raises(CaseError, match="is closed: it cannot become answered"):
        answer_case(session, case, "again", "officer1", settings, verified)


def test_a_dissatisfied_verification_reopens_the_case_then_escalates_it(session, settings, rated_survey):
    survey = rated_survey()
    case = open_case_for(session, survey, settings, OPENED)
    visit = answer_case(session, case, "已整改", "officer1", settings, datetime(2026, 9, 22, 2, tzinfo=UTC))
    reopened_at = datetime(2026, 9, 23, 3, tzinfo=UTC)
    verify(session, settings, visit, "dissatisfied", reopened_at)
    assert (case.state, case.reopened_count, case.verification_result) == (
        CaseState.REOPENED,
        1,
        "dissatisfied",
    )
    # A fresh deadline for the second rectification: 15 working days after 09-23.
    assert case.due_at == datetime(2026, 10, 21, 15, 59, 59, tzinfo=UTC)

    again_at = datetime(2026, 9, 24, 2, tzinfo=UTC)
    second = answer_case(session, case, "再次整改", "officer1", settings, again_at)
    assert second.id == visit.id and second.state == SurveyState.SCHEDULED
    assert second.disposition is None and second.first_attempt_at is None
    assert set(answers_of(session, second)) == {"verification#1"}  # the first round is kept
    verify(session, settings, second, "dissatisfied", datetime(2026, 9, 28, 2, tzinfo=UTC))
    assert case.state == CaseState.ESCALATED
    assert [(e.from_state, e.to_state) for e in events_of(session, case)] == [
        (None, "open"),
        ("open", "answered"),
        ("answered", "reopened"),
        ("reopened", "answered"),
        ("answered", "escalated"),
    ]


def test_a_second_verification_round_counts_its_age_from_its_own_start(session, settings, rated_survey):
    from scheduler.outcomes import expire_sweep

    case = open_case_for(session, rated_survey(), settings, OPENED)
    visit = answer_case(session, case, "已整改", "officer1", settings, datetime(2026, 9, 22, 2, tzinfo=UTC))
    verify(session, settings, visit, "dissatisfied", datetime(2026, 9, 23, 3, tzinfo=UTC))
    # The department answers again 36 days after the first visit was scheduled (max age 30 days).
    again_at = datetime(2026, 10, 28, 2, tzinfo=UTC)
    second = answer_case(session, case, "再次整改", "officer1", settings, again_at)
    assert second.id == visit.id and second.created_at == again_at
    assert expire_sweep(session, settings, again_at)["expired_unattempted"] == 0
    session.refresh(second)
    assert (second.state, second.disposition) == (SurveyState.SCHEDULED, None)


def test_a_verification_visit_without_an_answer_leaves_the_case_for_a_supervisor(
    session, settings, rated_survey
):
    case = open_case_for(session, rated_survey(), settings, OPENED)
    visit = answer_case(session, case, "已整改", "officer1", settings, datetime(2026, 9, 22, 2, tzinfo=UTC))
    with pytest.raises(CaseError, match="waits for its verification visit"):
        close_case(session, case, "no way to reach the citizen", "boss", datetime(2026, 9, 22, 3, tzinfo=UTC))
    finish_survey(session, visit, "not_contacted", datetime(2026, 9, 25, 2, tzinfo=UTC))
    on_verification_finished(session, visit, settings, datetime(2026, 9, 25, 2, tzinfo=UTC))
    assert (case.state, case.verification_result) == (CaseState.ANSWERED, "unverified")
    assert "not_contacted" in events_of(session, case)[-1].note
    close_case(session, case, "核实无法联系，按已整改结案", "boss", datetime(2026, 9, 25, 3, tzinfo=UTC))
    assert case.state == CaseState.CLOSED


def test_the_escalation_sweep_flags_overdue_open_cases_only(session, settings, rated_survey):
    overdue = open_case_for(session, rated_survey(), settings, OPENED)
    answered = open_case_for(session, rated_survey(), settings, OPENED)
    answer_case(session, answered, "已整改", "officer1", settings, datetime(2026, 9, 21, 2, tzinfo=UTC))
    not_yet = open_case_for(session, rated_survey(), settings, datetime(2026, 10, 9, 2, tzinfo=UTC))
    session.flush()

    just_before = datetime(2026, 10, 15, 15, 59, 58, tzinfo=UTC)
    assert escalate_overdue(session, settings, just_before)["escalated"] == 0
    after = datetime(2026, 10, 16, 1, 0, tzinfo=UTC)
    assert escalate_overdue(session, settings, after) == {"escalated": 1, "from_open": 1, "from_reopened": 0}
    assert (overdue.state, overdue.overdue_flagged_at) == (CaseState.ESCALATED, after)
    assert answered.state == CaseState.ANSWERED and not_yet.state == CaseState.OPEN
    assert "overdue: was due 2026-10-15 23:59" in events_of(session, overdue)[-1].note
    assert escalate_overdue(session, settings, after)["escalated"] == 0


def test_the_escalation_job_commits_and_returns_counts(session, session_factory, settings, rated_survey):
    case = open_case_for(session, rated_survey(), settings, OPENED)
    session.commit()
    counts = escalate_job(session_factory, settings, lambda: datetime(2026, 11, 2, tzinfo=UTC))
    assert counts == {"escalated": 1, "from_open": 1, "from_reopened": 0}
    session.expire_all()
    assert session.get(Case, case.id).state == CaseState.ESCALATED
    later = escalate_job(session_factory, settings, lambda: datetime(2026, 11, 3, tzinfo=UTC))
    assert later["escalated"] == 0


def test_a_supervisor_marks_a_case_for_interview_or_discipline_with_a_reason(session, settings, rated_survey):
    case = open_case_for(session, rated_survey(), settings, OPENED)
    at = datetime(2026, 10, 20, 2, tzinfo=UTC)
    with pytest.raises(CaseError, match="needs a reason"):
        mark_escalation(session, case, Escalation.INTERVIEW, "  ", "boss", at)
    mark_escalation(session, case, Escalation.INTERVIEW, "逾期未答复", "boss", at)
    assert (case.state, case.escalation, case.escalation_reason) == (
        CaseState.ESCALATED,
        "interview",
        "逾期未答复",
    )
    mark_escalation(session, case, "discipline", "约谈后仍未整改", "boss", at)
    assert case.escalation == "discipline"
    notes = [e.note for e in events_of(session, case)][1:]
    assert notes == ["interview: 逾期未答复", "discipline: 约谈后仍未整改"]
    with pytest.raises(ValueError):
        mark_escalation(session, case, "fire-them", "because", "boss", at)


def test_answering_needs_feedback_and_a_case_that_waits_for_it(session, settings, rated_survey):
    case = open_case_for(session, rated_survey(), settings, OPENED)
    with pytest.raises(CaseError, match="feedback"):
        answer_case(session, case, " ", "officer1", settings, OPENED)
    answer_case(session, case, "已整改", "officer1", settings, OPENED)
    with pytest.raises(CaseError, match="is answered: it cannot become answered"):
        answer_case(session, case, "again", "officer1", settings, OPENED)
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()
    assert [e.to_state for e in events] == ["open", "answered"]


def test_case_texts_with_a_nul_are_refused_naming_the_field(session, settings, rated_survey):
    # PostgreSQL text cannot hold a NUL (SQLite stores it); a file given to the CLI may carry one.
    case = open_case_for(session, rated_survey(), settings, OPENED)
    with pytest.raises(CaseError, match="feedback contains a NUL character"):
        answer_case(session, case, "已整改\x00", "officer1", settings, OPENED)
    with pytest.raises(CaseError, match="reason contains a NUL character"):
        mark_escalation(session, case, "interview", "态度差\x00", "boss", OPENED)
    with pytest.raises(CaseError, match="note contains a NUL character"):
        close_case(session, case, "已核实\x00", "boss", OPENED)
    session.flush()
    assert case.state == "open" and case.feedback is None
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()
    assert [e.to_state for e in events] == ["open"]


def test_verification_of_a_normal_survey_is_ignored(session, settings, rated_survey):
    survey = rated_survey()
    open_case_for(session, survey, settings, OPENED)
    assert on_verification_finished(session, survey, settings, OPENED) is None
    assert session.scalars(select(Survey).where(Survey.kind == SurveyKind.VERIFICATION)).all() == []


def test_a_verification_visit_long_after_the_item_is_dispatched_not_expired(
    session, settings, create_survey, now
):
    """A verification visit is created weeks after the item's completion: its age counts from then."""
    from datetime import timedelta

    from models.surveys import Survey, SurveyKind, SurveyState
    from scheduler.outcomes import expire_sweep

    original, _attempt = create_survey()
    original.item.completed_at = now - timedelta(days=60)  # past the campaign's 30-day max age
    visit = Survey(
        campaign_id=original.campaign_id,
        item_id=original.item_id,
        kind=SurveyKind.VERIFICATION,
        token="verify-token-1",
        department_id=original.department_id,
        quarter=original.quarter,
        language="zh-CN",
        channel="voice",
        state=SurveyState.SCHEDULED,
        next_attempt_at=now,
        created_at=now - timedelta(hours=1),
        updated_at=now,
    )
    session.add(visit)
    session.flush()
    expire_sweep(session, settings, now)
    session.flush()
    session.refresh(visit)
    assert visit.state == SurveyState.SCHEDULED and visit.disposition is None
    visit.created_at = now - timedelta(days=31)
    session.flush()
    expire_sweep(session, settings, now)
    session.refresh(visit)
    assert visit.state == SurveyState.DONE and visit.disposition == "not_contacted"


def test_an_unanswered_verification_visit_is_reported_to_its_case(session, settings, create_survey, now):
    from models.cases import Case, CaseEvent
    from models.surveys import AttemptStatus, SurveyKind
    from scheduler.outcomes import settle_attempt

    visit, attempt = create_survey(kind=SurveyKind.VERIFICATION)
    original, _ = create_survey()
    case = Case(
        survey_id=original.id,
        department_id=original.department_id,
        quarter=original.quarter,
        grade="dissatisfied",
        state="answered",
        due_at=now,
        verification_survey_id=visit.id,
    )
    session.add(case)
    session.flush()
    attempt.status = AttemptStatus.FAILED  # a landline-only retry policy ends after this attempt
    config = dict(visit.campaign.config)
    config["retry"] = {"voice": ""}
    config["channels"] = ["voice"]
    visit.campaign.config = config
    session.flush()
    assert settle_attempt(session, visit, attempt, settings, now) == "done"
    session.flush()
    session.refresh(case)
    assert case.verification_result == "unverified"
    notes = [e.note for e in session.query(CaseEvent).filter(CaseEvent.case_id == case.id)]
    assert any("without an answer" in (note or "") for note in notes)


def test_an_escalation_while_the_visit_is_pending_keeps_the_citizens_verdict(session, settings, rated_survey):
    case = open_case_for(session, rated_survey(), settings, OPENED)
    visit = answer_case(session, case, "已整改", "officer1", settings, datetime(2026, 9, 22, 2, tzinfo=UTC))
    decided = datetime(2026, 9, 22, 3, tzinfo=UTC)
    mark_escalation(session, case, Escalation.INTERVIEW, "三次投诉同一窗口", "boss", decided)
    # Recorded, but the case still waits for the citizen: closing it now would skip them.
    assert (case.state, case.escalation, case.escalation_reason) == (
        CaseState.ANSWERED,
        Escalation.INTERVIEW,
        "三次投诉同一窗口",
    )
    assert events_of(session, case)[-1].note == "interview: 三次投诉同一窗口"
    with pytest.raises(CaseError, match="waits for its verification visit"):
        close_case(session, case, "约谈完毕", "boss", decided)
    verify(session, settings, visit, "satisfied", datetime(2026, 9, 23, 2, tzinfo=UTC))
    assert (case.state, case.verification_result) == (CaseState.CLOSED, "satisfied")


def test_rounds_after_escalations_are_archived_under_their_own_numbers(session, settings, rated_survey):
    case = open_case_for(session, rated_survey(), settings, OPENED)
    visit = None
    for day in (22, 24, 28):
        at = datetime(2026, 9, day, 2, tzinfo=UTC)
        visit = answer_case(session, case, "已整改", "officer1", settings, at)
        record_answer(session, visit, "eligible", "no", channel="voice", now=at)  # some answer of the round
        finish_survey(session, visit, "not_contacted", at)
        on_verification_finished(session, visit, settings, at)
        mark_escalation(session, case, Escalation.INTERVIEW, "联系不上市民", "boss", at)
    assert visit is not None
    assert set(answers_of(session, visit)) == {"eligible#1", "eligible#2", "eligible"}


def test_the_verification_visit_is_due_in_the_campaigns_own_window(
    session, settings, create_campaign, create_survey
):
    campaign = create_campaign(config={"windows": ["15:00-17:00"], "timezone": "Asia/Shanghai"})
    rated, _ = create_survey(campaign=campaign)
    record_answer(session, rated, "rating", "dissatisfied", channel="voice", now=OPENED)
    finish_survey(session, rated, "complete", OPENED)
    case = open_case_for(session, rated, settings, OPENED)
    tuesday_10 = datetime(2026, 9, 22, 2, tzinfo=UTC)  # 10:00 in Shanghai: the default windows are open
    visit = answer_case(session, case, "已整改", "officer1", settings, tuesday_10)
    assert visit.next_attempt_at == datetime(2026, 9, 22, 7, tzinfo=UTC)  # 15:00 in Shanghai


@pytest.mark.parametrize("blank", ["\u200b", "\x01", " \u3000 "], ids=["zero-width", "control", "spaces"])
def test_a_reason_feedback_or_note_must_say_something(session, settings, rated_survey, blank):
    case = open_case_for(session, rated_survey(), settings, OPENED)
    with pytest.raises(CaseError, match="needs a reason"):
        mark_escalation(session, case, Escalation.INTERVIEW, blank, "boss", OPENED)
    with pytest.raises(CaseError, match="must say how"):
        answer_case(session, case, blank, "officer1", settings, OPENED)
    with pytest.raises(CaseError, match="needs a note"):
        close_case(session, case, blank, "boss", OPENED)
