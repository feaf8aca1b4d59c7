"""Voice webhooks as tables: signed Twilio form in, status and TwiML out, rows afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from ivr.script import default_script
from ivr.urls import voice_gather_url, voice_status_url, voice_url
from models.optouts import OptOut, OptOutChannel, OptOutSource
from models.surveys import Answer, Attempt, AttemptStatus, SurveyState

BASE = "http://127.0.0.1:5000"


def path_of(url: str) -> str:
    return url[len(BASE) :]


def call_form(attempt: Attempt, **extra: str) -> dict[str, str]:
    form = {
        "CallSid": attempt.provider_id or "CA" + "0" * 32,
        "AccountSid": "AC00000000000000000000000000000000",
        "From": "+12025550100",
        "To": "+8613800130001",
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def answer_call(twilio_post, survey, attempt, **extra):
    return twilio_post(path_of(voice_url(BASE, survey.token, attempt.id)), call_form(attempt, **extra))


def press(twilio_post, survey, attempt, seq: int, digits: str | None, **extra):
    form = call_form(attempt, **extra)
    if digits is not None:
        form["Digits"] = digits
    return twilio_post(path_of(voice_gather_url(BASE, survey.token, seq)), form)


def answers(session, survey) -> dict[str, str]:
    session.expire_all()
    rows = session.scalars(select(Answer).where(Answer.survey_id == survey.id))
    return {a.question: a.value for a in rows}


def reload(session, obj):
    session.expire_all()
    return session.get(type(obj), obj.id)


def test_answered_call_greets_with_the_item_and_gathers_the_rating(session, twilio_post, create_survey):
    survey, attempt = create_survey()
    response = answer_call(twilio_post, survey, attempt)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    assert "<Gather" in body and 'numDigits="1"' in body
    assert f"/twilio/voice/gather?survey={survey.token}&amp;seq=0" in body
    assert "税务局" in body and "契税申报" in body and "2026年11月10日" in body
    assert 'voice="Polly.Zhiyu"' in body and 'language="cmn-CN"' in body
    assert body.index("</Gather>") < body.index("<Redirect")  # silence falls through to the redirect
    assert reload(session, attempt).status == AttemptStatus.IN_PROGRESS
    assert reload(session, survey).state == SurveyState.IN_PROGRESS


def test_english_survey_speaks_english(session, twilio_post, create_survey, settings):
    survey, attempt = create_survey(language="en-US")
    body = answer_call(twilio_post, survey, attempt).get_data(as_text=True)
    assert 'language="en-US"' in body and "press 1" in body
    # Every prompt is spoken by the configured English voice, never the Chinese one.
    assert settings.twilio.voice_en != settings.twilio.voice_zh
    english_say = f'<Say language="en-US" voice="{settings.twilio.voice_en}">'
    assert body.count("<Say") == body.count(english_say) >= 2  # the greeting and the rating menu
    assert settings.twilio.voice_zh not in body and "cmn-CN" not in body
    # The item is named in English wording: the date in words, then matter and department.
    assert f"this is the {settings.app.org} government service return visit" in body
    assert "On November 10, 2026 you completed 契税申报 at 税务局." in body
    assert "年" not in body and "请按" not in body


@pytest.mark.parametrize(
    ("keys", "expected_answers", "disposition", "twiml_has"),
    [
        (["1"], {"rating": "very_satisfied"}, "complete", ["<Hangup"]),
        (["3"], {"rating": "basically_satisfied"}, "complete", ["<Hangup"]),
        (["4", "13#"], {"rating": "dissatisfied", "categories": "stuck,delay"}, None, ["<Record"]),
        (["5", "6"], {"rating": "very_dissatisfied", "categories": "poor"}, None, ["<Record"]),
        (["8"], {"eligible": "no"}, "not_eligible", ["<Hangup"]),
        (["9", "2"], {"rating": "satisfied"}, "complete", ["<Hangup"]),
        (["7", "7"], {}, "break_off", ["<Hangup"]),
        ([None, None], {}, "break_off", ["<Hangup"]),
        (["4", "7#", "#"], {"rating": "dissatisfied"}, "partial", ["<Hangup"]),
    ],
    ids=[
        "very-satisfied",
        "basic",
        "bad-with-categories",
        "very-bad",
        "not-eligible",
        "repeat",
        "invalid-twice",
        "silence-twice",
        "bad-then-invalid-categories",
    ],
)
def test_keypad_paths_store_answers_and_disposition(
    session, twilio_post, create_survey, keys, expected_answers, disposition, twiml_has
):
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    response = None
    for seq, digits in enumerate(keys):
        response = press(twilio_post, survey, attempt, seq, digits)
        assert response.status_code == 200
    body = response.get_data(as_text=True)
    for fragment in twiml_has:
        assert fragment in body
    assert answers(session, survey) == expected_answers
    assert reload(session, survey).disposition == disposition


def test_record_action_and_recording_status_keep_the_comment(session, twilio_post, create_survey):
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    press(twilio_post, survey, attempt, 0, "4")
    body = press(twilio_post, survey, attempt, 1, "3#").get_data(as_text=True)
    assert f'recordingStatusCallback="{BASE}/twilio/voice/recording?survey={survey.token}"' in body
    url = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1"
    done = press(
        twilio_post, survey, attempt, 2, "#", RecordingUrl=url, RecordingDuration="12", RecordingSid="RE1"
    )
    assert "<Hangup" in done.get_data(as_text=True)
    assert recording_status(twilio_post, survey, attempt, url + ".wav", "completed").status_code == 204
    [comment] = comments(session, survey)
    assert (comment.recording_url, comment.recording_duration) == (url + ".wav", 13)
    assert reload(session, survey).disposition == "complete"


@pytest.mark.parametrize("recorded", [False, True], ids=["hung-up-at-the-record", "record-action-ran"])
def test_failed_recording_status_stores_no_recording(session, twilio_post, create_survey, recorded):
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    press(twilio_post, survey, attempt, 0, "4")
    press(twilio_post, survey, attempt, 1, "3#")
    url = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1"
    if recorded:
        press(
            twilio_post, survey, attempt, 2, "#", RecordingUrl=url, RecordingDuration="12", RecordingSid="RE1"
        )
    assert recording_status(twilio_post, survey, attempt, url + ".wav", "failed").status_code == 204
    expected = [(url, url, 12)] if recorded else []
    assert [(c.value, c.recording_url, c.recording_duration) for c in comments(session, survey)] == expected


def recording_status(twilio_post, survey, attempt, url, status):
    """Post Twilio's recording-status callback for a 13-second recording at `url`."""
    form = call_form(attempt, RecordingUrl=url, RecordingDuration="13", RecordingStatus=status)
    return twilio_post(f"/twilio/voice/recording?survey={survey.token}", form)


def comments(session, survey):
    session.expire_all()
    query = select(Answer).where(Answer.survey_id == survey.id, Answer.question == "comment")
    return session.scalars(query).all()


def test_refusal_by_zero_writes_an_opt_out_and_confirms_aloud(session, twilio_post, create_survey, settings):
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    body = press(twilio_post, survey, attempt, 0, "0").get_data(as_text=True)
    assert "<Say" in body and "<Hangup" in body
    assert reload(session, survey).disposition == "refused"
    phone = survey.item.phone_e164
    assert session.scalar(select(func.count()).select_from(OptOut).where(OptOut.phone_e164 == phone)) == 1
    # The confirmation is the script's opt-out prompt, rendered as the conversation renders it.
    from ivr.conversation import context_for, script_for

    confirmation = script_for(session, survey).render("optout", context_for(session, survey, settings))
    assert confirmation == default_script().render("optout", context_for(session, survey, settings))
    assert "不会再" in confirmation
    assert f'voice="Polly.Zhiyu">{confirmation}</Say><Hangup' in body
    opt_out = session.scalars(select(OptOut).where(OptOut.phone_e164 == phone)).one()
    assert (opt_out.channel, opt_out.source, opt_out.revoked_at) == (
        OptOutChannel.ALL,
        OptOutSource.KEYPAD,
        None,
    )


def test_repeated_gather_returns_the_same_twiml_and_stores_nothing_twice(session, twilio_post, create_survey):
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    first = press(twilio_post, survey, attempt, 0, "4").get_data(as_text=True)
    second = press(twilio_post, survey, attempt, 0, "4").get_data(as_text=True)
    assert first == second
    assert session.scalar(select(func.count()).select_from(Answer).where(Answer.survey_id == survey.id)) == 1
    repeated_answer = answer_call(twilio_post, survey, attempt).get_data(as_text=True)
    assert "seq=1" in repeated_answer  # the current step, not a new greeting


def test_stale_gather_gets_the_current_step(session, twilio_post, create_survey):
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    press(twilio_post, survey, attempt, 0, "4")
    current = press(twilio_post, survey, attempt, 0, "4").get_data(as_text=True)
    other = press(twilio_post, survey, attempt, 0, "2", CallSid="CA" + "9" * 32).get_data(as_text=True)
    assert current == other and "seq=1" in other
    assert answers(session, survey) == {"rating": "dissatisfied"}


def test_each_twiml_answer_is_stored_once_and_the_newest_is_the_current_step(
    session, twilio_post, create_survey
):
    survey, attempt = create_survey()
    greeting = answer_call(twilio_post, survey, attempt).get_data(as_text=True)
    step = press(twilio_post, survey, attempt, 0, "4").get_data(as_text=True)
    state = reload(session, survey).script_state
    assert "last_twiml" not in state  # the current step is the newest reply, not a second copy
    assert list(state["replies"].items()) == [("answer", greeting), ("gather:0", step)]
    assert answer_call(twilio_post, survey, attempt).get_data(as_text=True) == step


def test_a_state_an_earlier_version_wrote_still_answers_repeats_and_stale_actions(
    session, twilio_post, create_survey
):
    # Before, the current step's TwiML was also kept as last_twiml (a call under way at an upgrade).
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    stored = reload(session, survey)
    current = stored.script_state["replies"]["answer"]
    stored.script_state = {key: value for key, value in stored.script_state.items() if key != "replies"} | {
        "last_twiml": current
    }
    session.commit()
    assert answer_call(twilio_post, survey, attempt).get_data(as_text=True) == current
    assert press(twilio_post, survey, attempt, 5, "1").get_data(as_text=True) == current  # stale
    press(twilio_post, survey, attempt, 0, "4")
    state = reload(session, survey).script_state
    assert "last_twiml" not in state and list(state["replies"]) == ["gather:0"]


def test_unknown_token_gets_a_polite_goodbye(twilio_post):
    response = twilio_post("/twilio/voice?survey=nope&attempt=1", {"CallSid": "CA1"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<Say" in body and "<Hangup" in body


@pytest.mark.parametrize(
    ("path", "goodbye"),
    [
        ("/twilio/voice/gather?survey=nope&seq=0", True),
        ("/twilio/voice/status?survey=nope&attempt=1", False),
        ("/twilio/voice/recording?survey=nope", False),
    ],
    ids=["gather", "status", "recording"],
)
def test_unknown_token_on_the_action_and_callback_urls(twilio_post, path, goodbye):
    form = {
        "CallSid": "CA" + "2" * 32,
        "Digits": "1",
        "CallStatus": "completed",
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE2",
        "RecordingDuration": "7",
        "RecordingStatus": "completed",
    }
    response = twilio_post(path, form)
    body = response.get_data(as_text=True)
    if goodbye:  # the caller is still on the line: a polite goodbye, in the default language
        assert response.status_code == 200 and response.mimetype == "application/xml"
        assert 'voice="Polly.Zhiyu">本次回访已经结束，感谢您的支持，再见。</Say><Hangup' in body
        assert "<Gather" not in body and "抱歉" not in body
    else:  # a callback: nothing to say and nothing to retry
        assert (response.status_code, body) == (204, "")


def test_finished_survey_gets_a_polite_goodbye(session, twilio_post, create_survey):
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    press(twilio_post, survey, attempt, 0, "1")
    again = press(twilio_post, survey, attempt, 1, "1", CallSid="CA" + "1" * 32).get_data(as_text=True)
    assert "已经结束" in again and "<Hangup" in again
    assert answers(session, survey) == {"rating": "very_satisfied"}


@pytest.mark.parametrize(
    "sign",
    [None, "wrong-url", "wrong-token", "non-ascii"],
    ids=["missing", "wrong-url", "forged", "non-ascii"],
)
@pytest.mark.parametrize("endpoint", ["answer", "gather", "status", "recording"])
def test_bad_signatures_are_refused_and_store_nothing(
    session, twilio_post, create_survey, sign, endpoint, caplog
):
    survey, attempt = create_survey()
    paths = {
        "answer": path_of(voice_url(BASE, survey.token, attempt.id)),
        "gather": path_of(voice_gather_url(BASE, survey.token, 0)),
        "status": path_of(voice_status_url(BASE, survey.token, attempt.id)),
        "recording": f"/twilio/voice/recording?survey={survey.token}",
    }
    form = call_form(
        attempt, Digits="1", CallStatus="completed", RecordingUrl="http://x/r", RecordingDuration="5"
    )
    response = twilio_post(paths[endpoint], form, sign=sign)
    assert response.status_code == 403
    assert "forged or unsigned" in caplog.text and "(forwarded for -)" in caplog.text
    session.expire_all()
    assert answers(session, survey) == {}
    assert reload(session, attempt).status == AttemptStatus.QUEUED
    assert reload(session, survey).script_state == {}


def test_signature_checks_are_on_by_default(session, client, settings, create_survey):
    assert settings.twilio.validate_signatures is True
    survey, attempt = create_survey()
    response = client.post(path_of(voice_url(BASE, survey.token, attempt.id)), data=call_form(attempt))
    assert response.status_code == 403
    assert reload(session, attempt).status == AttemptStatus.QUEUED
    assert reload(session, survey).script_state == {}


def test_signature_checks_turned_off_in_development_accept_an_unsigned_post(
    session, session_factory, tmp_path, create_survey
):
    from ivr.app import create_app
    from models.settings import load_settings

    relaxed = load_settings(
        env={},
        overrides={
            "database": {"url": f"sqlite:///{tmp_path}/relaxed.db"},
            "twilio": {"validate_signatures": False},
        },
    )
    assert relaxed.app.mode == "development" and relaxed.twilio.validate_signatures is False
    relaxed_app = create_app(relaxed, session_factory=session_factory)
    relaxed_app.config["TESTING"] = True
    survey, attempt = create_survey()
    response = relaxed_app.test_client().post(
        path_of(voice_url(BASE, survey.token, attempt.id)), data=call_form(attempt)
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert "<Gather" in body and "税务局" in body
    assert reload(session, attempt).status == AttemptStatus.IN_PROGRESS


def test_answering_machine_is_hung_up_on_and_counts_as_an_attempt(
    session, twilio_post, create_survey, monkeypatch
):
    survey, attempt = create_survey()
    body = answer_call(twilio_post, survey, attempt, AnsweredBy="machine_start").get_data(as_text=True)
    assert "<Hangup" in body and "<Gather" not in body
    assert reload(session, attempt).answered_by == "machine_start"
    settled = []
    monkeypatch.setattr(
        "scheduler.outcomes.settle_attempt", lambda s, sv, at, st, now: settled.append(at.status)
    )
    twilio_post(
        path_of(voice_status_url(BASE, survey.token, attempt.id)),
        call_form(attempt, CallStatus="completed", CallDuration="3"),
    )
    assert settled == [AttemptStatus.MACHINE]
    assert reload(session, survey).disposition == "machine"


@pytest.mark.parametrize("detected_at", ["answer", "status-callback"])
def test_a_fax_is_treated_as_an_answering_machine(
    session, twilio_post, create_survey, monkeypatch, detected_at
):
    survey, attempt = create_survey()
    settled = []
    monkeypatch.setattr(
        "scheduler.outcomes.settle_attempt", lambda s, sv, at, st, now: settled.append(at.status)
    )
    final = call_form(attempt, CallStatus="completed", CallDuration="2")
    if detected_at == "answer":
        body = answer_call(twilio_post, survey, attempt, AnsweredBy="fax").get_data(as_text=True)
        assert "<Hangup" in body and "<Gather" not in body and "<Say" not in body
        assert reload(session, attempt).answered_by == "fax"
        assert reload(session, survey).script_state == {}  # the script never ran
    else:  # asynchronous detection: AnsweredBy arrives with the final status callback
        final["AnsweredBy"] = "fax"
    twilio_post(path_of(voice_status_url(BASE, survey.token, attempt.id)), final)
    assert settled == [AttemptStatus.MACHINE]
    stored = reload(session, attempt)
    assert (stored.status, stored.answered_by) == (AttemptStatus.MACHINE, "fax")
    assert reload(session, survey).disposition == "machine"
    assert answers(session, survey) == {}


def test_hangup_after_rating_is_partial_and_before_rating_is_break_off(session, twilio_post, create_survey):
    rated, rated_attempt = create_survey()
    answer_call(twilio_post, rated, rated_attempt)
    press(twilio_post, rated, rated_attempt, 0, "4")
    silent, silent_attempt = create_survey()
    answer_call(twilio_post, silent, silent_attempt)
    for survey, attempt in [(rated, rated_attempt), (silent, silent_attempt)]:
        response = twilio_post(
            path_of(voice_status_url(BASE, survey.token, attempt.id)),
            call_form(attempt, CallStatus="completed", CallDuration="40"),
        )
        assert response.status_code == 204
    assert reload(session, rated).disposition == "partial"
    assert reload(session, silent).disposition == "break_off"
    assert reload(session, rated_attempt).status == AttemptStatus.COMPLETED
    assert reload(session, rated_attempt).duration_seconds == 40


@pytest.mark.parametrize(
    ("call_status", "attempt_status", "disposition"),
    [("busy", "busy", "busy"), ("no-answer", "no_answer", "no_answer"), ("failed", "failed", "failed")],
)
def test_unreached_calls_are_settled_by_the_retry_policy(
    session, twilio_post, create_survey, monkeypatch, call_status, attempt_status, disposition
):
    survey, attempt = create_survey()
    settled = []
    monkeypatch.setattr(
        "scheduler.outcomes.settle_attempt", lambda s, sv, at, st, now: settled.append(at.status)
    )
    response = twilio_post(
        path_of(voice_status_url(BASE, survey.token, attempt.id)), call_form(attempt, CallStatus=call_status)
    )
    assert response.status_code == 204
    assert settled == [attempt_status]
    assert reload(session, attempt).status == attempt_status
    assert reload(session, survey).disposition == disposition


def test_status_callbacks_out_of_order_never_move_a_finished_attempt_back(
    session, twilio_post, create_survey
):
    survey, attempt = create_survey()
    status_path = path_of(voice_status_url(BASE, survey.token, attempt.id))
    answer_call(twilio_post, survey, attempt)
    press(twilio_post, survey, attempt, 0, "1")
    twilio_post(status_path, call_form(attempt, CallStatus="completed", CallDuration="20"))
    twilio_post(status_path, call_form(attempt, CallStatus="ringing"))
    twilio_post(status_path, call_form(attempt, CallStatus="in-progress"))
    assert reload(session, attempt).status == AttemptStatus.COMPLETED
    assert reload(session, survey).disposition == "complete"


@pytest.mark.parametrize(
    ("call_statuses", "attempt_statuses"),
    [
        (["queued"], ["queued"]),
        (["initiated"], ["queued"]),
        (["ringing"], ["ringing"]),
        (["in-progress"], ["in_progress"]),
        (["initiated", "ringing", "in-progress"], ["queued", "ringing", "in_progress"]),
        (["in-progress", "ringing"], ["in_progress", "in_progress"]),
        (["ringing", "initiated"], ["ringing", "ringing"]),
        (["in-progress", "queued"], ["in_progress", "in_progress"]),
    ],
    ids=[
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "in-order",
        "ringing-after-in-progress",
        "initiated-after-ringing",
        "queued-after-in-progress",
    ],
)
def test_status_callbacks_that_do_not_end_the_call_keep_the_attempt_current(
    session, twilio_post, create_survey, call_statuses, attempt_statuses
):
    survey, attempt = create_survey()
    attempt.status = AttemptStatus.PENDING  # the callback may come before the dispatcher stored "queued"
    session.flush()
    status_path = path_of(voice_status_url(BASE, survey.token, attempt.id))
    seen = []
    for call_status in call_statuses:
        response = twilio_post(status_path, call_form(attempt, CallStatus=call_status))
        assert response.status_code == 204
        seen.append(reload(session, attempt).status)
    assert seen == attempt_statuses
    stored = reload(session, attempt)
    assert (stored.ended_at, stored.duration_seconds) == (None, None)
    after = reload(session, survey)
    assert (after.state, after.disposition, after.finished_at) == (SurveyState.IN_PROGRESS, None, None)


@pytest.mark.parametrize(
    ("voice_retries", "survey_state", "next_attempt_after"),
    [(None, SurveyState.SCHEDULED, timedelta(minutes=30)), ("", SurveyState.DONE, None)],
    ids=["retried", "last-attempt"],
)
def test_canceled_call_ends_the_attempt_and_the_retry_policy_settles_it_as_no_answer(
    session,
    twilio_post,
    create_survey,
    create_campaign,
    monkeypatch,
    now,
    voice_retries,
    survey_state,
    next_attempt_after,
):
    from scheduler.campaigns import CampaignDefinition

    definition = {"name": "voice-only", "channels": ["voice"]}
    if voice_retries is not None:
        definition["retry"] = {"voice": voice_retries}
    config = CampaignDefinition.model_validate(definition).model_dump(mode="json", exclude={"status"})
    survey, attempt = create_survey(campaign=create_campaign(name="voice-only", config=config))
    attempt.created_at = now  # a Monday morning: the default retry (30m 2h 1d) falls inside the window
    session.flush()
    monkeypatch.setattr("ivr.voice.utcnow", lambda: now)
    status_path = path_of(voice_status_url(BASE, survey.token, attempt.id))
    twilio_post(status_path, call_form(attempt, CallStatus="ringing"))
    response = twilio_post(status_path, call_form(attempt, CallStatus="canceled", CallDuration="0"))
    assert response.status_code == 204
    stored = reload(session, attempt)
    assert (stored.status, stored.duration_seconds) == (AttemptStatus.CANCELED, 0)
    assert stored.ended_at is not None and stored.ended_at.replace(tzinfo=None) == now.replace(tzinfo=None)
    after = reload(session, survey)
    assert (after.state, after.disposition) == (survey_state, "no_answer")
    assert after.first_attempt_at is not None  # the canceled call counts as an attempt
    if next_attempt_after is None:
        assert after.next_attempt_at is None and after.finished_at is not None
    else:
        assert after.next_attempt_at.replace(tzinfo=None) == (now + next_attempt_after).replace(tzinfo=None)
        assert after.finished_at is None
    # A late "ringing" after the end moves nothing back.
    twilio_post(status_path, call_form(attempt, CallStatus="ringing"))
    assert reload(session, attempt).status == AttemptStatus.CANCELED


def test_unknown_call_status_is_ignored_and_logged(session, twilio_post, create_survey, caplog):
    survey, attempt = create_survey()
    response = twilio_post(
        path_of(voice_status_url(BASE, survey.token, attempt.id)), call_form(attempt, CallStatus="teleported")
    )
    assert response.status_code == 204
    assert "unknown Twilio CallStatus 'teleported'" in caplog.text
    assert reload(session, attempt).status == AttemptStatus.QUEUED


def test_database_failure_answers_an_apology_not_a_trace(
    session, twilio_post, create_survey, monkeypatch, caplog
):
    survey, attempt = create_survey()

    def broken(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr("ivr.voice.load_survey", broken)  # the answer and Gather webhooks
    monkeypatch.setattr("ivr.voice.survey_by_token", broken)  # the status callbacks
    response = answer_call(twilio_post, survey, attempt)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "抱歉" in body and "<Hangup" in body
    assert "Traceback" not in body and "OperationalError" not in body
    assert "webhook /twilio/voice failed" in caplog.text
    status = twilio_post(path_of(voice_status_url(BASE, survey.token, attempt.id)), call_form(attempt))
    assert status.status_code == 503 and status.get_data() == b""


def test_the_apology_is_in_the_survey_language_its_urls_carry(
    session, twilio_post, create_survey, monkeypatch
):
    survey, attempt = create_survey(language="en-US")
    answered = answer_call(twilio_post, survey, attempt).get_data(as_text=True)
    assert "lang=en-US" in answered  # every next action URL says the survey's language

    def broken(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr("ivr.voice.load_survey", broken)
    token = survey.token
    for url in (voice_url(BASE, token, attempt.id, "en-US"), voice_gather_url(BASE, token, 1, "en-US")):
        body = twilio_post(path_of(url), call_form(attempt, Digits="1")).get_data(as_text=True)
        assert "We are sorry" in body and "<Hangup" in body and "抱歉" not in body


def test_webhook_takes_the_call_sid_when_the_dispatcher_has_not_stored_it(
    session, twilio_post, create_survey
):
    survey, attempt = create_survey()
    attempt.provider_id = None
    session.flush()
    answer_call(twilio_post, survey, attempt, CallSid="CA" + "5" * 32)
    assert reload(session, attempt).provider_id == "CA" + "5" * 32


@pytest.mark.parametrize(
    "call_sid", ["CA" + "f" * 100, "CA-../x", "", "C"], ids=["too-long", "punctuation", "blank", "short"]
)
def test_a_call_sid_twilio_never_sends_is_not_stored(session, twilio_post, create_survey, call_sid):
    survey, attempt = create_survey()
    attempt.provider_id = None
    session.flush()
    response = answer_call(twilio_post, survey, attempt, CallSid=call_sid)
    assert response.status_code == 200 and "<Gather" in response.get_data(as_text=True)
    assert reload(session, attempt).provider_id is None  # the status column holds 64 characters


def test_overlong_error_code_and_answered_by_are_cut_to_their_columns(session, twilio_post, create_survey):
    # PostgreSQL refuses a value longer than its column: the callback answered 503, and Twilio retried.
    survey, attempt = create_survey()
    answered_by = "unknown" + "x" * 100
    final = call_form(attempt, CallStatus="failed", ErrorCode=" \x00" + "3" * 200, AnsweredBy=answered_by)
    response = twilio_post(path_of(voice_status_url(BASE, survey.token, attempt.id)), final)
    assert response.status_code == 204
    stored = reload(session, attempt)
    assert (stored.status, stored.error_code, stored.answered_by) == (
        AttemptStatus.FAILED,
        "3" * 20,
        answered_by[:30],
    )
    assert reload(session, survey).disposition == "failed"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/" + "R" * 500,
        "javascript:alert(1)",
        "https://api.twilio.com/Recordings/RE1 and more",
        "https://api.twilio.com/Recordings/RE1\x00",
    ],
    ids=["longer-than-the-column", "not-http", "spaces", "nul"],
)
def test_a_recording_url_that_is_not_one_is_ignored(session, twilio_post, create_survey, caplog, url):
    survey, attempt = create_survey()
    answer_call(twilio_post, survey, attempt)
    press(twilio_post, survey, attempt, 0, "4")
    press(twilio_post, survey, attempt, 1, "3#")
    done = press(twilio_post, survey, attempt, 2, "#", RecordingUrl=url, RecordingDuration="12")
    assert done.status_code == 200 and "<Hangup" in done.get_data(as_text=True)
    assert recording_status(twilio_post, survey, attempt, url, "completed").status_code == 204
    assert comments(session, survey) == []  # as if nothing was recorded; the rating and categories stay
    assert answers(session, survey) == {"rating": "dissatisfied", "categories": "delay"}
    assert "is not a recording URL: ignored" in caplog.text


def test_dispositions_map_to_aapor_classes_in_one_table():
    from models.domain import AAPOR_CLASS, Disposition

    assert set(AAPOR_CLASS) == set(Disposition)
    assert AAPOR_CLASS[Disposition.COMPLETE] == "I" and AAPOR_CLASS[Disposition.PARTIAL] == "P"
    assert AAPOR_CLASS[Disposition.REFUSED] == "R" and AAPOR_CLASS[Disposition.BREAK_OFF] == "R"
    assert AAPOR_CLASS[Disposition.NOT_ELIGIBLE] == "NE" and AAPOR_CLASS[Disposition.NO_ANSWER] == "NC"


def test_the_whole_aapor_table_is_as_designed():
    # DESIGN §8: I complete, P partial, R refusal and break-off, NC non-contact, O other,
    # UH / UO unknown, NE not eligible.
    from models.domain import AAPOR_CLASS

    assert {str(disposition): str(aapor) for disposition, aapor in AAPOR_CLASS.items()} == {
        "complete": "I",
        "partial": "P",
        "break_off": "R",
        "refused": "R",
        "not_eligible": "NE",
        "machine": "NC",
        "no_answer": "NC",
        "busy": "NC",
        "failed": "UO",
        "not_contacted": "UH",
        "undelivered": "UO",
    }


def test_a_step_writes_only_the_columns_it_changes(session, create_survey, app):
    # The hot webhooks write back what was assigned; a state that stays "in progress" is not
    # written again (it is in two survey indexes, which every keypress would otherwise rewrite).
    from datetime import UTC, datetime

    from ivr import conversation
    from ivr.script import Digits
    from models.survey_ops import load_survey

    survey, _attempt = create_survey()
    session.commit()
    settings = app.extensions["returnvisit"]["settings"]
    now = datetime(2026, 11, 30, 3, tzinfo=UTC)
    record = load_survey(session, survey.token)
    conversation.begin(session, record, "voice", settings, now)
    assert record.assigned.keys() == {"script_state", "updated_at"}
    record.assigned.clear()
    conversation.advance(session, record, "voice", Digits("4"), settings, now)
    assert record.assigned.keys() == {"script_state", "updated_at"}
    session.rollback()
    record = load_survey(session, survey.token)
    object.__setattr__(record, "state", SurveyState.SCHEDULED)  # as read, before a call
    conversation.begin(session, record, "voice", settings, now)
    assert record.assigned["state"] == SurveyState.IN_PROGRESS


def test_a_verification_call_answered_without_the_script_tells_its_case(
    session, settings, twilio_post, create_survey
):
    # Answered, but the answer webhook never ran the script: a break-off, and the case must know.
    from models.cases import CaseState
    from models.cases_ops import answer_case, open_case_for
    from models.survey_ops import finish_survey, record_answer

    rated, _ = create_survey()
    rated_at = datetime(2026, 11, 16, tzinfo=UTC)
    record_answer(session, rated, "rating", "dissatisfied", channel="voice", now=rated_at)
    finish_survey(session, rated, "complete", rated_at)
    case = open_case_for(session, rated, settings, rated_at)
    visit = answer_case(session, case, "已整改", "officer1", settings, datetime(2026, 11, 17, 2, tzinfo=UTC))
    attempt = Attempt(survey_id=visit.id, channel="voice", number=1, status="ringing",
                      provider_id="CA" + "1" * 32, created_at=datetime(2026, 11, 18, 2, tzinfo=UTC))
    session.add(attempt)
    session.flush()
    response = twilio_post(
        path_of(voice_status_url(BASE, visit.token, attempt.id)),
        call_form(attempt, CallStatus="completed", CallDuration="5"),
    )
    assert response.status_code == 204
    assert reload(session, visit).disposition == "break_off"
    case = reload(session, case)
    assert (case.state, case.verification_result) == (CaseState.ANSWERED, "unverified")
