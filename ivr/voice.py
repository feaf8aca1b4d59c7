"""Voice webhooks: the answered call, each Gather or Record action, call and recording status.

URLs (see ivr/urls.py): POST /twilio/voice?survey=T&attempt=A&lang=L,
/twilio/voice/gather?survey=T&seq=N&lang=L, /twilio/voice/status?survey=T&attempt=A,
/twilio/voice/recording?survey=T.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response
from werkzeug.datastructures import MultiDict

from ivr import conversation, web
from ivr.script import Digits, Hangup, Input, Recording, RecordingSkipped, StepResult, awaiting
from ivr.twilio_adapter import (
    SAY_LANGUAGE,
    Voice,
    is_machine,
    map_call_status,
    records,
    render_hangup,
    render_voice,
)
from ivr.urls import recording_status_url, voice_gather_url
from ivr.webhooks import form_text, no_content, twilio_webhook, twiml_response, unavailable
from models.base import utcnow
from models.cases_ops import finish_survey_and_case, open_case_for
from models.domain import Channel, Disposition
from models.settings import Settings
from models.survey_ops import (
    SurveyRecord,
    answers_of,
    attempt_of,
    load_survey,
    record_answer,
    save_survey,
    survey_by_token,
)
from models.surveys import (
    FINAL_ATTEMPT_STATUSES,
    Answer,
    Attempt,
    AttemptStatus,
    Survey,
    SurveyState,
    attempt_progress,
)

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/twilio/voice")
VOICE = Channel.VOICE.value

GOODBYE = {
    "zh-CN": "本次回访已经结束，感谢您的支持，再见。",
    "en-US": "This survey has already ended. Thank you, goodbye.",
}
APOLOGY = {
    "zh-CN": "非常抱歉，系统暂时无法完成本次回访，我们会另行与您联系。再见。",
    "en-US": "We are sorry, the survey cannot continue right now. We will contact you again. Goodbye.",
}


def voice_for(settings: Settings, language: str) -> Voice:
    """Return the Twilio voice that speaks a script language."""
    name = settings.twilio.voice_en if language.startswith("en") else settings.twilio.voice_zh
    return Voice(name=name, language=SAY_LANGUAGE.get(language, language))


def _default_language() -> str:
    return web.settings().app.language


def apology() -> Response:
    """The TwiML a caller hears when the webhook cannot do its work (e.g. the database is down).

    Spoken in the survey's language when the URL carries it (lang=): the survey cannot be read.
    """
    language = web.current_request().args.get("lang", "")
    if language not in APOLOGY:
        language = _default_language()
    return twiml_response(render_hangup([APOLOGY[language]], voice_for(web.settings(), language)))


def _goodbye(survey: Survey | SurveyRecord | None) -> Response:
    language = survey.language if survey and survey.language in GOODBYE else _default_language()
    return twiml_response(render_hangup([GOODBYE[language]], voice_for(web.settings(), language)))


def _render(survey: SurveyRecord, result: StepResult) -> str:
    settings = web.settings()
    base = settings.app.public_base_url
    seq = int(result.state["seq"])
    return render_voice(
        result,
        voice_for(settings, survey.language),
        voice_gather_url(base, survey.token, seq, survey.language),
        recording_status_url(base, survey.token) if records(result) else None,
    )


_REPLIES_KEPT = 4  # a Twilio retry repeats one of the last few requests of a call


def remembered(stored: dict[str, Any], call_sid: str, request_key: str, twiml: str) -> dict[str, Any]:
    """Return a voice script state that also keeps `twiml` as the answer to this call's `request_key`.

    The last few answers of the call are kept, newest last, so a repeated webhook gets the same TwiML
    and a stale one the current step's (the newest). Each document is stored once, so the survey row
    every Gather reads and rewrites stays as small as it can be.
    """
    replies = dict(stored.get("replies") or {}) if stored.get("call_sid") == call_sid else {}
    replies.pop(request_key, None)
    replies[request_key] = twiml
    state = {key: value for key, value in stored.items() if key != "last_twiml"}  # an older version's copy
    state.update(call_sid=call_sid, replies=dict(list(replies.items())[-_REPLIES_KEPT:]))
    return state


def _remember(survey: SurveyRecord, call_sid: str, request_key: str, twiml: str) -> None:
    survey.script_state = remembered(survey.script_state or {}, call_sid, request_key, twiml)


def _current_twiml(stored: dict[str, Any]) -> str | None:
    """The TwiML of the call's current step: the newest answer kept (an older version kept a copy)."""
    replies = stored.get("replies")
    if replies:
        return str(next(reversed(replies.values())))
    return str(stored["last_twiml"]) if stored.get("last_twiml") else None


def _replay(survey: SurveyRecord, call_sid: str, request_key: str) -> str | None:
    stored = survey.script_state or {}
    if stored.get("call_sid") != call_sid:
        return None
    return (stored.get("replies") or {}).get(request_key)


# A duration Twilio reports in seconds, kept within a day: the columns are 32-bit integers, and a
# forged or garbled "1e300" or "inf" must not reach the database or overflow int().
_LONGEST_SECONDS = 86_400


def _form_int(form: MultiDict[str, str], name: str) -> int | None:
    try:
        return min(max(0, int(float(form.get(name, "")))), _LONGEST_SECONDS)
    except (ValueError, OverflowError):  # not a number, NaN, or infinite
        return None


# What a webhook writes to a column from Twilio's form must fit it: a signed but garbled or forged
# form (a 200-character ErrorCode, a CallSid of punctuation) must not make the database refuse a row.
_CALL_SID = re.compile(r"[A-Za-z0-9]{2,64}")
_RECORDING_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]+")
_RECORDING_URL_LENGTH = Answer.__table__.c.recording_url.type.length
_ANSWERED_BY_LENGTH = Attempt.__table__.c.answered_by.type.length
_ERROR_CODE_LENGTH = Attempt.__table__.c.error_code.type.length


def _recording_url(form: MultiDict[str, str]) -> str:
    """The RecordingUrl Twilio sent, or "" when there is none that could be one (logged)."""
    url = form.get("RecordingUrl", "")
    if url and (len(url) > _RECORDING_URL_LENGTH or not _RECORDING_URL.fullmatch(url)):
        log.warning("RecordingUrl of %d characters is not a recording URL: ignored", len(url))
        return ""
    return url


@bp.post("")
@twilio_webhook(apology)
def answered() -> Response:
    """The citizen picked up: greet them and ask the first question (or hang up on a machine)."""
    req = web.current_request()
    session = web.webhook_session()
    now = utcnow()
    survey = load_survey(session, req.args.get("survey"), for_update=True)
    call_sid = req.form.get("CallSid", "")
    if survey is None:
        return _goodbye(None)
    stored = survey.script_state
    current = _current_twiml(stored) if call_sid and stored.get("call_sid") == call_sid else None
    if current:
        # Twilio repeated the answer webhook of a call already under way: the current step again.
        return twiml_response(current)
    attempt = attempt_of(session, survey, req.args.get("attempt"))
    if attempt is not None:
        _note_call(attempt, call_sid)
    if survey.state == SurveyState.DONE:
        return _goodbye(survey)
    answered_by = form_text(req.form, "AnsweredBy", _ANSWERED_BY_LENGTH)
    if is_machine(answered_by):
        # Hang up; the final status callback records the attempt as a machine and settles it.
        if attempt is not None:
            attempt.answered_by = answered_by
        session.commit()
        return twiml_response(render_hangup([], voice_for(web.settings(), survey.language)))
    if attempt is not None:
        attempt.status = AttemptStatus.IN_PROGRESS
        attempt.answered_by = answered_by or attempt.answered_by
        attempt.started_at = attempt.started_at or now
    result = conversation.begin(session, survey, VOICE, web.settings(), now)
    twiml = _render(survey, result)
    _remember(survey, call_sid, "answer", twiml)
    save_survey(session, survey)
    session.commit()
    return twiml_response(twiml)


def _note_call(attempt: Attempt, call_sid: str) -> None:
    # The webhook may arrive before the dispatcher stored the provider id: take it from Twilio.
    if call_sid and not attempt.provider_id and _CALL_SID.fullmatch(call_sid):
        attempt.provider_id = call_sid


def _input_for(form: MultiDict[str, str], state: dict[str, Any]) -> Input:
    digits = form.get("Digits")
    if digits == "hangup":
        return Hangup()
    if awaiting(state) == "comment":
        url = _recording_url(form)
        duration = _form_int(form, "RecordingDuration") or 0
        return Recording(url=url, duration=duration) if url and duration > 0 else RecordingSkipped()
    return Digits(digits=(digits or "").strip())


@bp.post("/gather")
@twilio_webhook(apology)
def gathered() -> Response:
    """Keys were pressed (or not) at a menu, or a comment was recorded: take the next step."""
    req = web.current_request()
    session = web.webhook_session()
    now = utcnow()
    survey = load_survey(session, req.args.get("survey"), for_update=True)
    call_sid = req.form.get("CallSid", "")
    if survey is None:
        return _goodbye(None)
    request_key = f"gather:{req.args.get('seq', '')}"
    replay = _replay(survey, call_sid, request_key)
    if replay:
        return twiml_response(replay)
    state = conversation.conversation_state(survey, VOICE)
    if survey.state == SurveyState.DONE or state is None:
        return _goodbye(survey)
    if str(state.get("seq")) != req.args.get("seq"):
        # A stale action from an earlier step: answer with the current step again.
        current = _current_twiml(survey.script_state)
        return twiml_response(current) if current else _goodbye(survey)
    result = conversation.advance(session, survey, VOICE, _input_for(req.form, state), web.settings(), now)
    twiml = _render(survey, result)
    _remember(survey, call_sid, request_key, twiml)
    save_survey(session, survey)
    session.commit()
    return twiml_response(twiml)


@bp.post("/status")
@twilio_webhook(unavailable)
def call_status() -> Response:
    """A call status callback: keep the attempt current; settle the survey when the call ended."""
    req = web.current_request()
    session = web.db_session()
    now = utcnow()
    survey = survey_by_token(session, req.args.get("survey"), for_update=True)
    if survey is None:
        return no_content()
    attempt = attempt_of(session, survey, req.args.get("attempt"))
    if attempt is None:
        return no_content()
    answered_by = form_text(req.form, "AnsweredBy", _ANSWERED_BY_LENGTH) or attempt.answered_by
    status = map_call_status(req.form.get("CallStatus"), answered_by)
    if status is None:
        return no_content()
    _note_call(attempt, req.form.get("CallSid", ""))
    if attempt.status in FINAL_ATTEMPT_STATUSES:
        session.commit()
        return no_content()  # a late or repeated callback never moves a finished attempt back
    attempt.answered_by = answered_by
    attempt.error_code = form_text(req.form, "ErrorCode", _ERROR_CODE_LENGTH) or attempt.error_code
    if status not in FINAL_ATTEMPT_STATUSES:
        if attempt_progress(status) > attempt_progress(attempt.status):
            attempt.status = status  # a late "initiated" never moves a ringing or answered call back
        session.commit()
        return no_content()
    attempt.status = status
    attempt.ended_at = now
    attempt.duration_seconds = _form_int(req.form, "CallDuration")
    _settle(session, survey, attempt, now)
    session.commit()
    return no_content()


# What a call that ended without a conversation means for the survey's (latest) disposition.
_NO_CONVERSATION = {
    AttemptStatus.BUSY: Disposition.BUSY,
    AttemptStatus.NO_ANSWER: Disposition.NO_ANSWER,
    AttemptStatus.MACHINE: Disposition.MACHINE,
    AttemptStatus.FAILED: Disposition.FAILED,
    AttemptStatus.CANCELED: Disposition.NO_ANSWER,
    AttemptStatus.COMPLETED: Disposition.BREAK_OFF,
}


def _settle(session: Any, survey: Survey, attempt: Attempt, now: Any) -> None:
    if survey.state == SurveyState.DONE:
        return
    state = conversation.conversation_state(survey, VOICE)
    call_sid = (survey.script_state or {}).get("call_sid")
    if state is not None and attempt.status == AttemptStatus.COMPLETED and call_sid == attempt.provider_id:
        # The citizen hung up mid-script: what was answered is kept (partial or break-off).
        conversation.advance(session, survey, VOICE, Hangup(), web.settings(), now)
        return
    if attempt.status == AttemptStatus.COMPLETED:
        # Answered, but our answer webhook never ran the script (e.g. it failed): a break-off.
        finish_survey_and_case(session, survey, Disposition.BREAK_OFF.value, web.settings(), now)
        return
    from scheduler.outcomes import settle_attempt

    survey.disposition = _NO_CONVERSATION[AttemptStatus(attempt.status)].value
    settle_attempt(session, survey, attempt, web.settings(), now)


@bp.post("/recording")
@twilio_webhook(unavailable)
def recording_status() -> Response:
    """The recorded comment is stored: keep its URL and duration with the answer."""
    req = web.current_request()
    session = web.db_session()
    now = utcnow()
    survey = survey_by_token(session, req.args.get("survey"), for_update=True)
    url = _recording_url(req.form)
    if survey is None or not url or req.form.get("RecordingStatus", "completed") != "completed":
        return no_content()
    duration = _form_int(req.form, "RecordingDuration")
    comment = answers_of(session, survey).get("comment")
    if comment is None:
        record_answer(
            session, survey, "comment", url, channel=VOICE, now=now, recording_duration=duration or 0
        )
        # The Record action never ran the script (the caller hung up first): the case learns it here.
        open_case_for(session, survey, web.settings(), now)
    else:
        comment.recording_url = url
        comment.recording_duration = duration if duration is not None else comment.recording_duration
    session.commit()
    return no_content()
