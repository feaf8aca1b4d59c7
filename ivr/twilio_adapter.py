"""The Twilio edge: check signatures, map call statuses, render engine results as TwiML.

With the REST gateway, the only module that imports twilio (DESIGN §3). Views parse the request
and call the engine; everything Twilio-shaped that goes back out is built here.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from ivr.script import Ask, StepResult
from models.surveys import AttemptStatus

log = logging.getLogger(__name__)

# Twilio's <Say language=...> code for each script language.
SAY_LANGUAGE = {"zh-CN": "cmn-CN", "en-US": "en-US"}


@functools.lru_cache(maxsize=4)
def _validator(auth_token: str) -> RequestValidator:
    return RequestValidator(auth_token)


def sign_request(auth_token: str, url: str, params: Mapping[str, Any]) -> str:
    """Return the X-Twilio-Signature Twilio would send for this URL and form."""
    return str(_validator(auth_token).compute_signature(url, params))


class _EveryValue:
    """A form as RequestValidator reads it first: its names, and every value of a name by getall().

    The validator asks for `getall` (the multidict of aiohttp and others) before `getlist`: given
    werkzeug's form directly, each parameter costs it a raised and caught AttributeError.
    """

    __slots__ = ("_form",)

    def __init__(self, form: Any) -> None:
        self._form = form

    def __iter__(self) -> Any:
        return iter(self._form)

    def getall(self, name: str) -> list[str]:
        return list(self._form.getlist(name))


def is_valid_signature(auth_token: str, url: str, params: Any, signature: str | None) -> bool:
    """Return whether a request's X-Twilio-Signature matches its URL and form."""
    if not signature or not signature.isascii():
        return False  # a real one is base64; compare_digest refuses non-ASCII text (a 500, not a 403)
    validator = _validator(auth_token)
    # Twilio signs the URL as configured, which is ours exactly: one HMAC settles the usual case. The
    # library's full check (the URL with and without a port, a signed JSON body) decides the rest.
    every = _EveryValue(params) if hasattr(params, "getlist") else params
    if hmac.compare_digest(str(validator.compute_signature(url, every)), signature):
        return True
    return bool(validator.validate(url, params, signature))


@dataclass(frozen=True)
class Voice:
    """How prompts are spoken: Twilio voice name and language code."""

    name: str
    language: str


def _say(parent: Any, texts: list[str], voice: Voice) -> None:
    for text in texts:
        parent.say(text, voice=voice.name, language=voice.language)


def asked(result: StepResult) -> Ask | None:
    """Return what the step asks the caller (None when the call ends with it)."""
    return None if result.done else result.ask


def records(result: StepResult) -> bool:
    """Return whether the step records a comment (only a Record names a recording callback)."""
    ask = asked(result)
    return ask is not None and ask.kind == "record"


def render_voice(
    result: StepResult, voice: Voice, action_url: str, recording_status_url: str | None = None
) -> str:
    """Render one engine step as TwiML: prompts, then a Gather or Record, or a hang-up."""
    ask = asked(result)
    # Every call of a script hears the same few documents but for the survey's URLs: the document is
    # built once with placeholders (an ElementTree per request costs more than the rest of the step).
    template = _voice_template(tuple(result.say), voice, ask, recording_status_url is not None)
    return template.replace(_ACTION, _attribute(action_url)).replace(
        _RECORDING_STATUS, _attribute(recording_status_url or "")
    )


# Placeholders no prompt or URL contains; replaced by the XML-escaped URLs of the survey.
_ACTION = "__returnvisit_action_url__"
_RECORDING_STATUS = "__returnvisit_recording_status_url__"


def _attribute(value: str) -> str:
    return xml_escape(value, {'"': "&quot;"})


@functools.lru_cache(maxsize=1024)
def _voice_template(say: tuple[str, ...], voice: Voice, ask: Ask | None, with_recording_status: bool) -> str:
    texts = list(say)
    response = VoiceResponse()
    if ask is None:
        _say(response, texts, voice)
        response.hangup()
    elif ask.kind == "record":
        _say(response, texts, voice)
        response.record(
            action=_ACTION,
            method="POST",
            max_length=ask.max_length,
            finish_on_key=ask.finish_on_key or "#",
            timeout=ask.timeout or 5,
            play_beep=True,
            recording_status_callback=_RECORDING_STATUS if with_recording_status else None,
            recording_status_callback_method="POST" if with_recording_status else None,
        )
        # Twilio skips the action when nothing was recorded and runs the next verb: say it was skipped.
        response.redirect(_ACTION, method="POST")
    else:
        gather = response.gather(
            action=_ACTION,
            method="POST",
            input="dtmf",
            num_digits=ask.num_digits,
            finish_on_key=ask.finish_on_key if ask.finish_on_key else "",
            timeout=ask.timeout or 5,
        )
        _say(gather, texts, voice)
        # No keys before the timeout: Twilio falls through to here, which the view reads as silence.
        response.redirect(_ACTION, method="POST")
    return str(response)


def render_hangup(texts: list[str], voice: Voice) -> str:
    """Say a few words and hang up (goodbyes, apologies, machines)."""
    response = VoiceResponse()
    _say(response, texts, voice)
    response.hangup()
    return str(response)


def render_message(texts: list[str]) -> str:
    """Render an SMS reply (empty list: answer with no message)."""
    body = "\n".join(texts)
    if not body:
        return _message_template(None if not texts else "")
    # As for voice, the document is built once; the text is escaped as ElementTree escapes it.
    return _message_template(_MESSAGE).replace(_MESSAGE, xml_escape(body))


_MESSAGE = "__returnvisit_message__"


@functools.lru_cache(maxsize=4)
def _message_template(body: str | None) -> str:
    response = MessagingResponse()
    if body is not None:
        response.message(body)
    return str(response)


# Twilio's CallStatus values and what they mean for an attempt.
CALL_STATUS: dict[str, AttemptStatus] = {
    "queued": AttemptStatus.QUEUED,
    "initiated": AttemptStatus.QUEUED,
    "ringing": AttemptStatus.RINGING,
    "in-progress": AttemptStatus.IN_PROGRESS,
    "answered": AttemptStatus.IN_PROGRESS,
    "completed": AttemptStatus.COMPLETED,
    "busy": AttemptStatus.BUSY,
    "no-answer": AttemptStatus.NO_ANSWER,
    "failed": AttemptStatus.FAILED,
    "canceled": AttemptStatus.CANCELED,
}
# Twilio's MessageStatus values for outbound texts.
MESSAGE_STATUS: dict[str, AttemptStatus] = {
    "accepted": AttemptStatus.QUEUED,
    "scheduled": AttemptStatus.QUEUED,
    "queued": AttemptStatus.QUEUED,
    "sending": AttemptStatus.QUEUED,
    "sent": AttemptStatus.SENT,
    "delivered": AttemptStatus.DELIVERED,
    "read": AttemptStatus.DELIVERED,
    "undelivered": AttemptStatus.UNDELIVERED,
    "failed": AttemptStatus.FAILED,
    "canceled": AttemptStatus.CANCELED,
}


def is_machine(answered_by: str | None) -> bool:
    """Return whether answering-machine detection says a machine or fax picked up."""
    return answered_by is not None and (answered_by.startswith("machine") or answered_by == "fax")


def map_call_status(call_status: str | None, answered_by: str | None = None) -> AttemptStatus | None:
    """Map Twilio's CallStatus (and AnsweredBy) to an attempt status; None when unknown (logged)."""
    status = CALL_STATUS.get((call_status or "").strip().lower())
    if status is None:
        log.warning("unknown Twilio CallStatus %r: ignored", call_status)
        return None
    if status == AttemptStatus.COMPLETED and is_machine(answered_by):
        return AttemptStatus.MACHINE
    return status


def map_message_status(message_status: str | None) -> AttemptStatus | None:
    """Map Twilio's MessageStatus to an attempt status; None when unknown (logged)."""
    status = MESSAGE_STATUS.get((message_status or "").strip().lower())
    if status is None:
        log.warning("unknown Twilio MessageStatus %r: ignored", message_status)
    return status
