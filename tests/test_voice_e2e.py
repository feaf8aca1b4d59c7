"""End to end through the simulated phone network: TwiML executed as Twilio does, real webhooks, store."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ivr.conversation import context_for
from ivr.script import default_script
from ivr.simulator import HANGUP, FlaskTransport, PhoneNetwork, ScriptedPersona
from ivr.urls import voice_status_url, voice_url
from models.optouts import OptOut
from models.surveys import Answer, Attempt, AttemptStatus, Survey


@pytest.fixture
def network(app, settings):
    return PhoneNetwork(FlaskTransport(app), settings.twilio.auth_token)


@pytest.fixture
def settled(monkeypatch):
    """Record what the status webhook hands to the scheduler (retries are the scheduler's tests)."""
    calls = []
    monkeypatch.setattr(
        "scheduler.outcomes.settle_attempt", lambda s, sv, at, st, now: calls.append(at.status)
    )
    return calls


def call(network, settings, survey, attempt, persona):
    base = settings.app.public_base_url
    return network.run_call(
        survey.item.phone_e164,
        attempt.from_number,
        voice_url(base, survey.token, attempt.id),
        persona=persona,
        status_callback=voice_status_url(base, survey.token, attempt.id),
        machine_detection=True,
        call_sid=attempt.provider_id,
    )


def stored(session, survey):
    session.expire_all()
    answers = {a.question: a for a in session.scalars(select(Answer).where(Answer.survey_id == survey.id))}
    return session.get(Survey, survey.id), answers


def test_complete_call_with_categories_and_a_comment(session, network, settings, create_survey):
    survey, attempt = create_survey()
    record = call(network, settings, survey, attempt, ScriptedPersona(["4", "13#"], record_seconds=[12]))
    assert record.errors == []
    assert any("契税申报" in text for text in record.said)
    survey, answers = stored(session, survey)
    assert survey.disposition == "complete" and survey.state == "done"
    assert answers["rating"].value == "dissatisfied"
    assert answers["categories"].value == "stuck,delay"
    assert answers["comment"].recording_duration == 12
    assert answers["comment"].recording_url.startswith("https://api.twilio.com/")
    assert session.get(Attempt, attempt.id).status == AttemptStatus.COMPLETED


def test_good_rating_completes_without_further_questions(session, network, settings, create_survey):
    survey, attempt = create_survey()
    call(network, settings, survey, attempt, ScriptedPersona(["2"]))
    survey, answers = stored(session, survey)
    assert survey.disposition == "complete" and set(answers) == {"rating"}


def test_silent_comment_still_completes(session, network, settings, create_survey):
    survey, attempt = create_survey()
    record = call(network, settings, survey, attempt, ScriptedPersona(["5", "6#"], record_seconds=[None]))
    survey, answers = stored(session, survey)
    assert survey.disposition == "complete" and set(answers) == {"rating", "categories"}
    assert record.hung_up_by == "app"


def test_rated_then_hung_up_is_partial(session, network, settings, create_survey):
    survey, attempt = create_survey()
    call(network, settings, survey, attempt, ScriptedPersona(["4", HANGUP]))
    survey, answers = stored(session, survey)
    assert survey.disposition == "partial" and set(answers) == {"rating"}


def test_hung_up_at_the_greeting_is_a_break_off(session, network, settings, create_survey):
    survey, attempt = create_survey()
    call(network, settings, survey, attempt, ScriptedPersona([HANGUP]))
    survey, answers = stored(session, survey)
    assert survey.disposition == "break_off" and answers == {}


def test_refusal_by_zero_writes_an_opt_out(session, network, settings, create_survey):
    survey, attempt = create_survey()
    record = call(network, settings, survey, attempt, ScriptedPersona(["0"]))
    survey, _ = stored(session, survey)
    assert survey.disposition == "refused"
    assert record.hung_up_by == "app" and len(record.said) >= 2  # the refusal is confirmed aloud
    confirmation = default_script().render("optout", context_for(session, survey, settings))
    assert record.said[-1] == confirmation and "不会再" in confirmation
    assert confirmation not in record.said[:-1]  # said once, after the 0, before the app hangs up
    assert record.keys == ["0"] and record.errors == []
    count = select(func.count()).select_from(OptOut).where(OptOut.phone_e164 == survey.item.phone_e164)
    assert session.scalar(count) == 1


def test_not_eligible_by_eight(session, network, settings, create_survey):
    survey, attempt = create_survey()
    call(network, settings, survey, attempt, ScriptedPersona(["8"]))
    survey, answers = stored(session, survey)
    assert survey.disposition == "not_eligible" and answers["eligible"].value == "no"


def test_three_invalid_keys_end_the_call_politely(session, network, settings, create_survey):
    survey, attempt = create_survey()
    record = call(network, settings, survey, attempt, ScriptedPersona(["7", "7", "7"]))
    survey, answers = stored(session, survey)
    assert survey.disposition == "break_off" and answers == {}
    assert record.keys == ["7", "7"]  # the call ended after the second invalid key
    assert record.hung_up_by == "app"


def test_silence_twice_ends_the_call(session, network, settings, create_survey):
    survey, attempt = create_survey()
    record = call(network, settings, survey, attempt, ScriptedPersona([None, None]))
    survey, answers = stored(session, survey)
    assert survey.disposition == "break_off" and answers == {}
    assert record.hung_up_by == "app"


def test_a_repeated_gather_post_stores_nothing_twice(session, network, settings, create_survey, app):
    survey, attempt = create_survey()
    record = call(network, settings, survey, attempt, ScriptedPersona(["4", "13#"], record_seconds=[5]))
    gather = next(r for r in record.requests if r.kind == "twiml" and r.form.get("Digits") == "4")
    again = network.post(gather.kind, gather.url, dict(gather.form), record)
    assert again == 200
    assert record.requests[-1].body == gather.body
    _, answers = stored(session, survey)
    assert session.scalar(select(func.count()).select_from(Answer).where(Answer.survey_id == survey.id)) == 3
    assert answers["rating"].value == "dissatisfied"


def test_answering_machine_is_an_attempt_and_goes_to_the_retry_policy(
    session, network, settings, create_survey, settled
):
    survey, attempt = create_survey()
    record = call(network, settings, survey, attempt, ScriptedPersona(pick_up="machine"))
    assert record.answered_by == "machine_start"
    assert settled == [AttemptStatus.MACHINE]
    survey, answers = stored(session, survey)
    assert answers == {} and survey.disposition == "machine"


@pytest.mark.parametrize("pick_up", ["no-answer", "busy", "failed"])
def test_unreached_calls_never_request_twiml(session, network, settings, create_survey, settled, pick_up):
    survey, attempt = create_survey()
    record = call(network, settings, survey, attempt, ScriptedPersona(pick_up=pick_up))
    assert [r.kind for r in record.requests if r.kind != "status"] == []
    assert settled == [pick_up.replace("-", "_")]
    assert stored(session, survey)[0].disposition == pick_up.replace("-", "_")


def test_a_bad_review_by_phone_opens_a_rectification_case(session, network, settings, create_survey):
    from models.cases import Case

    survey, attempt = create_survey()
    call(network, settings, survey, attempt, ScriptedPersona(["5", "35#"], record_seconds=[None]))
    session.expire_all()
    case = session.scalars(select(Case).where(Case.survey_id == survey.id)).one()
    assert (case.state, case.grade, case.categories) == ("open", "very_dissatisfied", ["delay", "cold"])
    assert case.department_id == survey.department_id and case.due_at > case.opened_at


def test_an_answer_after_the_quarter_closed_is_kept_as_late(session, network, settings, create_survey):
    from models.quarters import QuarterClose

    survey, attempt = create_survey(quarter="2026Q3")  # an item of a quarter that has ended and closed
    session.add(QuarterClose(quarter=survey.quarter, closed_by="supervisor"))
    session.flush()
    call(network, settings, survey, attempt, ScriptedPersona(["1"]))
    _, answers = stored(session, survey)
    assert answers["rating"].value == "very_satisfied" and answers["rating"].late is True
