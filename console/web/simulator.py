"""The browser simulator: a keypad that plays the real IVR script through the webhook app, and an
SMS conversation pane. Both create try-out surveys (campaign "simulator-try-out", as `returnvisit call`
does): their answers, cases and figures are real."""

from __future__ import annotations

import io
import math
import re
import struct
import threading
import wave

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as browser
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from console.call import TRY_OUT_CAMPAIGN, CallError, prepare_call
from console.web.access import STAFF, department_scope, require_department, roles_required
from console.web.sim_sms import SmsTryError, conversation, send_reply, start_sms
from console.web.sim_voice import CallState, Step, VoicePlayer, new_call_sid
from ivr import web
from ivr.simulator import FlaskTransport
from ivr.urls import voice_status_url, voice_url
from models.base import utcnow
from models.campaigns import Campaign
from models.items import ServiceItem
from models.survey_ops import answers_of
from models.surveys import Survey, SurveyKind, SurveyState
from scheduler.campaigns import LANGUAGES

bp = Blueprint("simulator", __name__, url_prefix="/simulator")
CALL_KEY = "sim_call"
SMS_KEY = "sim_sms"
_SID = re.compile(r"RE[0-9a-f]{32}")
_lock = threading.Lock()


def webhook_app() -> Flask:
    """Return the public webhook app this console drives in-process (built once, same store)."""
    extensions = current_app.extensions
    with _lock:
        if "returnvisit_webhooks" not in extensions:
            from ivr.app import create_app

            app = create_app(web.settings(), session_factory=web.session_factory())
            extensions["returnvisit_webhooks"] = app
        return extensions["returnvisit_webhooks"]  # type: ignore[no-any-return]


def _player() -> VoicePlayer:
    settings = web.settings()
    return VoicePlayer(FlaskTransport(webhook_app()), settings.twilio.auth_token, settings.twilio.account_sid)


def _items() -> list[ServiceItem]:
    stmt = (
        select(ServiceItem)
        .where(ServiceItem.phone_e164.is_not(None))
        .order_by(ServiceItem.completed_at.desc(), ServiceItem.id.desc())
        .limit(20)
    )
    scope = department_scope()
    if scope is not None:
        stmt = stmt.where(ServiceItem.department_id.in_(scope))
    return list(web.db_session().scalars(stmt))


def _survey(key: str) -> Survey | None:
    survey_id = (browser.get(key) or {}).get("survey") if key == SMS_KEY else None
    if key == CALL_KEY and browser.get(CALL_KEY):
        token = browser[CALL_KEY]["token"]
        return web.db_session().scalars(select(Survey).where(Survey.token == token)).first()
    return web.db_session().get(Survey, survey_id) if survey_id else None


def _keep_call(call: CallState) -> None:
    # The session cookie is signed, not encrypted: the citizen's number stays in the store.
    browser[CALL_KEY] = {key: value for key, value in call.as_dict().items() if key != "to"}


def _call(survey: Survey | None) -> CallState | None:
    """Return the call kept in the session, with the number it rings read from its survey's item."""
    if not browser.get(CALL_KEY):
        return None
    phone = survey.item.phone_e164 if survey is not None else None
    return CallState.from_dict({**browser[CALL_KEY], "to": phone or ""})


def _page(step: Step | None = None, status: int = 200) -> ResponseReturnValue:
    session = web.db_session()
    session.expire_all()  # the webhook app changed rows through its own session
    call_survey = _survey(CALL_KEY)
    call = _call(call_survey)
    sms_survey = _survey(SMS_KEY)
    return render_template(
        "simulator.html",
        items=_items(),
        languages=LANGUAGES,
        call=call,
        step=step,
        call_survey=call_survey,
        call_answers=answers_of(session, call_survey) if call_survey else {},
        sms_survey=sms_survey,
        sms_messages=conversation(session, sms_survey) if sms_survey else [],
        sms_answers=answers_of(session, sms_survey) if sms_survey else {},
    ), status


@bp.get("")
@roles_required(*STAFF)
def index() -> ResponseReturnValue:
    """Show the keypad and the SMS pane."""
    return _page()


def _item_from_form() -> ServiceItem:
    text = request.form.get("item", "").strip()
    session = web.db_session()
    item = session.scalars(select(ServiceItem).where(ServiceItem.external_id == text)).first()
    if item is None and text.isdigit():
        item = session.get(ServiceItem, int(text))
    if item is None:
        abort(404)
    require_department(item.department_id)
    return item


def _language() -> str:
    language = request.form.get("language", "")
    return language if language in LANGUAGES else web.settings().app.language


def _open_try_out(item: ServiceItem, channel: str) -> Survey | None:
    """Return the item's unfinished try-out survey on a channel, if any (one per item and campaign)."""
    stmt = (
        select(Survey)
        .join(Campaign, Campaign.id == Survey.campaign_id)
        .where(Campaign.name == TRY_OUT_CAMPAIGN, Survey.item_id == item.id, Survey.kind == SurveyKind.SURVEY)
    )
    survey = web.db_session().scalars(stmt).first()
    if survey is not None and survey.state == SurveyState.DONE:
        raise CallError(_("Item %(id)s was tried out already (survey %(s)s): choose another item.",
                          id=item.external_id, s=survey.id))
    return survey


@bp.post("/call")
@roles_required(*STAFF)
def call_start() -> ResponseReturnValue:
    """Ring the item's citizen (played here): the greeting and the first question."""
    session, settings, now = web.db_session(), web.settings(), utcnow()
    item = _item_from_form()
    try:
        existing = _open_try_out(item, "voice")
        survey, attempt = prepare_call(
            session, settings, survey_id=existing.id if existing else None,
            item_id=None if existing else item.id, language=_language(), now=now,
        )
    except CallError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("simulator.index"))
    session.commit()  # the webhook app reads the survey and attempt through its own session
    base = settings.app.public_base_url
    call = CallState(
        token=survey.token, attempt_id=attempt.id, call_sid=new_call_sid(), to=item.phone_e164 or "",
        from_=attempt.from_number or settings.twilio.voice_from,
        voice_url=voice_url(base, survey.token, attempt.id, survey.language),
        status_url=voice_status_url(base, survey.token, attempt.id),
    )
    step = _player().answer(call)
    _keep_call(call)
    return _page(step)


def _current_call() -> CallState:
    call = _call(_survey(CALL_KEY))
    if call is None:
        abort(409)
    web.db_session().commit()  # no transaction of ours may be open while the webhook app writes
    return call


@bp.post("/call/keys")
@roles_required(*STAFF)
def call_keys() -> ResponseReturnValue:
    """Press keys at the current menu (the Silence button sends none)."""
    call = _current_call()
    keys = "" if "silence" in request.form else request.form.get("keys", "").strip()[:20]
    step = _player().press(call, keys)
    _keep_call(call)
    return _page(step)


@bp.post("/call/record")
@roles_required(*STAFF)
def call_record() -> ResponseReturnValue:
    """Speak into the recording for some seconds (0: say nothing)."""
    call = _current_call()
    try:
        seconds = max(0, min(600, int(request.form.get("seconds", "0") or 0)))
    except ValueError:
        seconds = 0
    sid = "RE" + new_call_sid()[2:]
    url = url_for("simulator.recording", sid=sid, seconds=seconds, _external=True)
    step = _player().record(call, seconds, url, sid)
    _keep_call(call)
    return _page(step)


@bp.post("/call/hangup")
@roles_required(*STAFF)
def call_hangup() -> ResponseReturnValue:
    """Hang up (or close a finished call)."""
    call = _current_call()
    step = _player().hang_up(call)
    _keep_call(call)
    return _page(step)


@bp.post("/call/clear")
@roles_required(*STAFF)
def call_clear() -> ResponseReturnValue:
    """Forget the finished call shown on the page."""
    browser.pop(CALL_KEY, None)
    return redirect(url_for("simulator.index"))


@bp.post("/sms")
@roles_required(*STAFF)
def sms_start() -> ResponseReturnValue:
    """Send the survey text of an item (played here) and open the conversation pane."""
    session, settings, now = web.db_session(), web.settings(), utcnow()
    item = _item_from_form()
    try:
        survey = start_sms(session, settings, item, _language(), now)
    except SmsTryError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("simulator.index"))
    session.commit()
    browser[SMS_KEY] = {"survey": survey.id}
    return redirect(url_for("simulator.index"))


@bp.post("/sms/reply")
@roles_required(*STAFF)
def sms_reply() -> ResponseReturnValue:
    """Text back as the citizen; the webhook's answer appears in the pane."""
    survey = _survey(SMS_KEY)
    body = request.form.get("body", "").strip()[:500]
    if survey is None:
        abort(409)
    require_department(survey.department_id)
    if body:
        phone = survey.item.phone_e164 or ""
        web.db_session().commit()
        status, _replies = send_reply(webhook_app(), web.settings(), phone, body)
        if status != 200:
            flash(_("The messaging webhook answered %(status)s.", status=status), "error")
    return redirect(url_for("simulator.index"))


@bp.post("/sms/clear")
@roles_required(*STAFF)
def sms_clear() -> ResponseReturnValue:
    """Close the conversation pane."""
    browser.pop(SMS_KEY, None)
    return redirect(url_for("simulator.index"))


@bp.get("/recordings/<sid>.wav")
def recording(sid: str) -> Response:
    """Serve a simulated voice comment: a soft tone as long as the caller 'spoke'."""
    if not _SID.fullmatch(sid):
        abort(404)
    seconds = max(1, min(60, request.args.get("seconds", 3, type=int) or 1))
    return Response(_tone(seconds), mimetype="audio/wav")


def _tone(seconds: int, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        step = 2 * math.pi * 440 / rate
        frames = (struct.pack("<h", int(3000 * math.sin(step * n))) for n in range(seconds * rate))
        out.writeframes(b"".join(frames))
    return buffer.getvalue()
