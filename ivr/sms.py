"""SMS webhooks: a citizen's text (POST /twilio/sms) and a survey text's delivery status.

URLs (see ivr/urls.py): POST /twilio/sms (the messaging webhook of our numbers) and
POST /twilio/sms/status?survey=T&attempt=A (the status callback of one survey text).

What an inbound text gets (DESIGN §6, issue 4):

* Every inbound text is stored as a Message first, once per MessageSid. Our reply is stored as an
  outbound Message whose provider id is "<MessageSid>/reply" (Twilio gives the reply its own sid, which
  a TwiML reply never tells us), so a repeated webhook gets the first reply again and changes nothing.
* A keyword alone in the text comes first. Opt-out (TD, 退订, STOP …): an OptOut for every channel,
  every open SMS survey of the number ends as refused, one confirmation. Opt-in (START, UNSTOP, 订阅):
  the citizen's own and the carrier's opt-outs are revoked (a staff entry stays: staff decided it).
  Help (HELP, INFO, 帮助): the organisation and how to reply and opt out.
* Otherwise the text answers the open survey routed by models/sms_routing.py: the engine continues
  the conversation (grade, categories, comment, clarifying reprompt, thanks).
* A text after the survey closed: stored as late on that survey; the first one is answered "this
  survey has ended", later ones are not (an auto-responder must not start a loop of texts).
* A text from a number we never surveyed (or not to the number that texted it): stored with no survey
  and not answered — replying to arbitrary numbers would send paid texts to people who never agreed
  to any (SMS pumping); keywords are still answered, as carriers require.

Delivery status: queued < sent < delivered, then undelivered / failed / canceled are final; a callback
never moves a text back. ErrorCode 21610 (the citizen unsubscribed at the carrier): an SMS OptOut
(source carrier) and the survey ends as undelivered — they did not refuse this survey, the text just
cannot reach them. 21211 / 21614 (invalid number / not a mobile): the survey ends as not eligible.
Other failures: the retry policy decides (scheduler.outcomes.settle_attempt).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from datetime import datetime

from flask import Blueprint, Response
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from ivr import conversation, web
from ivr.script import ItemContext, Script, SmsReply, awaiting, default_script, question
from ivr.sms_parse import Keyword, ParsedReply, parse_reply
from ivr.twilio_adapter import map_message_status, render_message
from ivr.webhooks import form_text, no_content, twilio_webhook, twiml_response, unavailable
from models.base import utcnow
from models.cases_ops import finish_survey_and_case
from models.domain import Channel, Disposition
from models.driver_sql import DriverStatement
from models.messages import Direction, Message
from models.optouts import OptOut, OptOutChannel, OptOutSource
from models.phones import normalize_phone
from models.settings import Settings
from models.sms_routing import closed_sms_survey, open_sms_survey, open_sms_surveys, set_attempt_status
from models.survey_ops import (
    SurveyRecord,
    add_opt_out,
    attempt_of,
    insert_once,
    save_survey,
    survey_by_token,
)
from models.surveys import (
    ATTEMPT_PROGRESS,
    FINAL_ATTEMPT_STATUSES,
    Attempt,
    AttemptStatus,
    Survey,
    SurveyState,
    attempt_progress,
)

log = logging.getLogger(__name__)
bp = Blueprint("sms", __name__, url_prefix="/twilio/sms")
SMS = Channel.SMS.value
RECEIVED = "received"  # Message.status of an inbound text
REPLY_SUFFIX = "/reply"
# Message rows are written with Core inserts: two a request, no unit-of-work needed.
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_REPLY_BODY = select(MESSAGES.c.body).where(MESSAGES.c.provider_id == bindparam("sid"))
_MESSAGE_COLUMNS = [
    "direction",
    "provider_id",
    "survey_id",
    "from_e164",
    "to_e164",
    "body",
    "status",
    "late",
    "created_at",
]
_OUTBOUND = DriverStatement(
    insert(MESSAGES).values({name: bindparam(name, type_=MESSAGES.c[name].type) for name in _MESSAGE_COLUMNS})
)
_INBOUND_ONCE = insert_once(MESSAGES, ["provider_id"], _MESSAGE_COLUMNS)

ENDED = {
    "zh-CN": "本次回访已经结束，感谢您的回复。",
    "en-US": "This survey has ended. Thank you for your reply.",
}
OPTED_IN = {
    "zh-CN": "您已重新订阅{org}政务服务回访短信。回复TD退订",
    "en-US": "You will receive {org} return-visit messages again. Reply TD to opt out.",
}
HELP = {
    "zh-CN": "【{org}】政务服务回访短信：回复1至5评价办理情况，也可直接写下您的意见。回复TD退订。",
    "en-US": "{org} return visits: reply 1 to 5 to rate the service you received, or write your "
    "comments. Reply TD to opt out.",
}
# HELP in a survey that awaits another answer (the categories, a verification): this, then its question.
HELP_ABOUT = {
    "zh-CN": "【{org}】政务服务回访短信，请按以下提示回复：",
    "en-US": "{org} return visits. Please reply as follows:",
}
# ErrorCodes of a status callback that end the survey at once.
CARRIER_OPT_OUT_CODES = frozenset({"21610"})  # the citizen replied STOP to the carrier
NOT_ELIGIBLE_CODES = frozenset({"21211", "21614"})  # invalid number, not a mobile number
_SID = re.compile(r"[A-Za-z0-9]{2,40}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ERROR_CODE_LENGTH = min(
    Attempt.__table__.c.error_code.type.length, Message.__table__.c.error_code.type.length
)  # what both columns hold


def _no_reply() -> Response:
    return twiml_response(render_message([]))


def _language(tag: str | None) -> str:
    return "en-US" if (tag or "").lower().startswith("en") else "zh-CN"


def _message_sid(form: MultiDict[str, str]) -> str | None:
    raw = (form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or "").strip()
    if _SID.fullmatch(raw):
        return raw
    if raw:
        log.warning("inbound SMS with a malformed MessageSid: not deduplicated")
    return None


def _token(args: MultiDict[str, str]) -> str | None:
    # Survey tokens are URL-safe; anything else (a NUL byte makes PostgreSQL raise) names no survey.
    token = args.get("survey", "")
    return token if _TOKEN.fullmatch(token) else None


def _attempt_id(args: MultiDict[str, str]) -> int | None:
    # An id beyond the integer column's range would make PostgreSQL raise rather than find nothing.
    raw = args.get("attempt", "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**31 else None


def _number(form: MultiDict[str, str], field: str, settings: Settings) -> tuple[str | None, str | None]:
    """Return (E.164 or None, the text to store) of a phone field of the form."""
    raw = form.get(field, "").replace("\x00", "").strip()
    e164 = _e164(raw[:64], settings.phones.default_region) if raw else None
    return e164, (e164 or raw[:20] or None)


@functools.lru_cache(maxsize=4096)
def _e164(raw: str, region: str) -> str | None:
    # Our own numbers (To) come in every request and take phonenumbers' slow path: remember them.
    return normalize_phone(raw, region=region).e164


@bp.post("")
@twilio_webhook(_no_reply)
def inbound() -> Response:
    """A citizen's text: answer a keyword, continue their survey, or keep it as late or unknown."""
    form = web.current_request().form
    session = web.webhook_session()
    settings = web.settings()
    now = utcnow()
    sid = _message_sid(form)
    citizen, sender = _number(form, "From", settings)
    _, ours = _number(form, "To", settings)
    body = form.get("Body", "").replace("\x00", "")  # PostgreSQL text cannot hold NUL

    route = open_sms_survey(session, citizen, ours, for_update=True) if citizen and ours else None
    survey = route.survey if route else None
    closed = closed_sms_survey(session, citizen, ours) if citizen and ours and not survey else None
    linked = survey or closed
    message = {
        "direction": Direction.INBOUND.value,
        "provider_id": sid,
        "survey_id": linked.id if linked else None,
        "from_e164": sender,
        "to_e164": ours,
        "body": body,
        "status": RECEIVED,
        "late": closed is not None,
        "created_at": now,
    }
    if not _insert_once(session, message):
        session.rollback()
        return _replay(session, sid)  # a repeated webhook (or a concurrent one) of a stored text

    script = conversation.script_for(session, survey) if survey else default_script()
    state = conversation.conversation_state(survey, SMS) if survey else None
    expect = awaiting(state) if state else "rating"
    parsed = parse_reply(
        body, grade_digits=script.grade_digits, category_digits=script.category_digits, expect=expect
    )
    language = _language(linked.language if linked else settings.app.language)
    if parsed.keyword is not None:
        texts = _keyword(session, parsed.keyword, citizen, survey, script, language, settings)
    elif survey is not None and state is not None:
        if route and attempt_progress(route.attempt_status) < attempt_progress(AttemptStatus.DELIVERED):
            # A reply proves the text arrived.
            set_attempt_status(session, route.attempt_id, AttemptStatus.DELIVERED.value)
        sms_reply = _sms_reply(parsed, script, expect)
        texts = conversation.advance(session, survey, SMS, sms_reply, settings, now).say
    elif survey is not None:
        log.info("SMS for survey %s, whose conversation is not by SMS now: kept", survey.id)
        texts = []
    elif closed is not None:
        texts = [] if _answered_late(session, closed) else [ENDED[language]]
    else:
        texts = []
    if texts:
        outbound = {
            **message,
            "direction": Direction.OUTBOUND.value,
            "provider_id": sid + REPLY_SUFFIX if sid else None,
            "from_e164": ours,
            "to_e164": sender,
            "body": "\n".join(texts),
            "status": AttemptStatus.QUEUED.value,
        }
        _OUTBOUND.rows(session, outbound)
    if survey is not None:
        save_survey(session, survey)
    session.commit()
    return twiml_response(render_message(texts))


def _answered_late(session: Session, survey: SurveyRecord) -> bool:
    # "Ended" goes out once per survey, so an auto-responder cannot start a loop of texts with us.
    late_reply = select(MESSAGES.c.id).where(
        MESSAGES.c.survey_id == survey.id,
        MESSAGES.c.direction == Direction.OUTBOUND.value,
        MESSAGES.c.late.is_(True),
    )
    return session.scalar(late_reply.limit(1)) is not None


def _insert_once(session: Session, values: Mapping[str, object]) -> bool:
    """Store the inbound text unless its MessageSid is stored already; return whether it was."""
    dialect = session.get_bind().dialect.name
    once = _INBOUND_ONCE["postgresql" if dialect == "postgresql" else "sqlite"]
    return bool(once.rows(session, values))


def _replay(session: Session, sid: str | None) -> Response:
    stored = session.connection().execute(_REPLY_BODY, {"sid": f"{sid}{REPLY_SUFFIX}"}).scalar()
    return twiml_response(render_message([stored] if stored else []))


def _sms_reply(parsed: ParsedReply, script: Script, expect: str) -> SmsReply:
    # "8" alone answers the invitation's "未办理此事项请回复8" (did not handle this item).
    not_eligible = (
        expect == "rating"
        and bool(script.keys.not_eligible)
        and parsed.grade is None
        and not parsed.categories
        and parsed.comment == script.keys.not_eligible
    )
    return SmsReply(
        grade=parsed.grade,
        categories=parsed.categories,
        comment=None if not_eligible else parsed.comment,
        optout=False,
        ambiguous=parsed.ambiguous,
        not_eligible=not_eligible,
        verified=parsed.verified,
    )


def _keyword(
    session: Session,
    keyword: Keyword,
    citizen: str | None,
    survey: SurveyRecord | None,
    script: Script,
    language: str,
    settings: Settings,
) -> list[str]:
    now = utcnow()
    if keyword is Keyword.HELP:
        return _help(session, survey, script, language, settings)
    if keyword is Keyword.OPT_IN:
        if citizen:
            session.execute(
                update(OptOut)
                .where(
                    OptOut.phone_e164 == citizen,
                    OptOut.revoked_at.is_(None),
                    OptOut.source != OptOutSource.STAFF,
                )
                .values(revoked_at=now)
            )
        return [OPTED_IN[language].format(org=settings.app.org)]
    # Opt-out. A number we could not read is one we never text: there is nothing to record.
    texts: list[str] = []
    if citizen:
        add_opt_out(session, citizen, channel=OptOutChannel.ALL, source=OptOutSource.SMS_KEYWORD, now=now)
        for open_survey in open_sms_surveys(session, citizen):
            if survey is not None and open_survey.id == survey.id:
                open_survey = survey  # one record per row: the caller writes this one back
            if conversation.conversation_state(open_survey, SMS) is None:
                finish_survey_and_case(session, open_survey, Disposition.REFUSED.value, settings, now)
            else:
                result = conversation.advance(session, open_survey, SMS, SmsReply(optout=True), settings, now)
                if open_survey is survey:
                    texts = result.say
            if open_survey is not survey:
                save_survey(session, open_survey)
    if not texts:
        ctx = (
            conversation.context_for(session, survey, settings)
            if survey
            else ItemContext(settings.app.org, "", "", now.date(), language)
        )
        texts = [script.render("sms_optout", ctx)]
    return texts


def _help(
    session: Session, survey: SurveyRecord | None, script: Script, language: str, settings: Settings
) -> list[str]:
    """The help text; where the survey awaits more than a rating, with the question it awaits."""
    state = conversation.conversation_state(survey, SMS) if survey else None
    if survey is None or state is None or awaiting(state) == "rating":
        return [HELP[language].format(org=settings.app.org)]
    asked = question(script, conversation.context_for(session, survey, settings), state)
    return [HELP_ABOUT[language].format(org=settings.app.org), *asked]


@bp.post("/status")
@twilio_webhook(unavailable)
def message_status() -> Response:
    """A survey text's status callback: move the attempt forward; settle the survey if it failed."""
    req = web.current_request()
    session = web.db_session()
    now = utcnow()
    status = map_message_status(req.form.get("MessageStatus") or req.form.get("SmsStatus"))
    error_code = form_text(req.form, "ErrorCode", _ERROR_CODE_LENGTH)
    sid = _message_sid(req.form)
    if status is not None and sid is not None:
        # Like the attempt below: forward only, and a delivered text stays delivered.
        limit = min(attempt_progress(status), attempt_progress(AttemptStatus.DELIVERED))
        earlier = [s.value for s, rank in ATTEMPT_PROGRESS.items() if rank < limit]
        session.execute(
            update(Message)
            .where(
                Message.provider_id == sid,
                Message.direction == Direction.OUTBOUND,
                Message.status.in_(earlier),
            )
            .values(status=status.value, error_code=error_code)
        )
    survey = survey_by_token(session, _token(req.args), for_update=True)
    attempt = attempt_of(session, survey, _attempt_id(req.args)) if survey else None
    if survey is None or attempt is None or status is None:
        session.commit()
        return no_content()
    if sid and not attempt.provider_id:
        attempt.provider_id = sid  # the callback came before the dispatcher stored the sid
    current = attempt_progress(attempt.status)
    if current >= attempt_progress(status) or current == attempt_progress(AttemptStatus.DELIVERED):
        session.commit()
        return no_content()  # repeated, out of order, or after the text was delivered (or replied to)
    attempt.status = status
    attempt.error_code = error_code or attempt.error_code
    if status in FINAL_ATTEMPT_STATUSES:
        attempt.ended_at = now
        _settle(session, survey, attempt, error_code, now)
    session.commit()
    return no_content()


def _settle(
    session: Session, survey: Survey, attempt: Attempt, error_code: str | None, now: datetime
) -> None:
    if survey.state == SurveyState.DONE:
        return
    if error_code in CARRIER_OPT_OUT_CODES:
        phone = survey.item.phone_e164
        if phone:
            add_opt_out(session, phone, channel=OptOutChannel.SMS, source=OptOutSource.CARRIER, now=now)
        finish_survey_and_case(session, survey, Disposition.UNDELIVERED.value, web.settings(), now)
        return
    if error_code in NOT_ELIGIBLE_CODES:
        finish_survey_and_case(session, survey, Disposition.NOT_ELIGIBLE.value, web.settings(), now)
        return
    from scheduler.outcomes import settle_attempt

    failed = attempt.status in (AttemptStatus.FAILED, AttemptStatus.CANCELED)
    survey.disposition = (Disposition.FAILED if failed else Disposition.UNDELIVERED).value
    settle_attempt(session, survey, attempt, web.settings(), now)
