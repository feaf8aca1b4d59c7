"""The Twilio edge: check signatures, map call statuses, render engine results as TwiML.

With the REST gateway, the only module that imports twilio (DESIGN §3). Views parse the request
and call the engine; everything Twilio-shaped that goes back out is built here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from ivr.script import StepResult
from models.surveys import AttemptStatus

log = logging.getLogger(__name__)

# Twilio's <Say language=...> code for each script language.
SAY_LANGUAGE = {"zh-CN": "cmn-CN", "en-US": "en-US"}


def sign_request(auth_token: str, url: str, params: Mapping[str, Any]) -> str:
    """Return the X-Twilio-Signature Twilio would send for this URL and form."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


def is_valid_signature(auth_token: str, url: str, params: Any, signature: str | None) -> bool:
    """Return whether a request's X-Twilio-Signature matches its URL and form."""
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, params, signature))


@dataclass(frozen=True)
class Voice:
    """How prompts are spoken: Twilio voice name and language code."""

    name: str
    language: str


def _say(parent: Any, texts: list[str], voice: Voice) -> None:
    for text in texts:
        parent.say(text, voice=voice.name, language=voice.language)


def render_voice(
    result: StepResult, voice: Voice, action_url: str, recording_status_url: str | None = None
) -> str:
    """Render one engine step as TwiML: prompts, then a Gather or Record, or a hang-up."""
    response = VoiceResponse()
    ask = result.ask
    if result.done or ask is None:
        _say(response, result.say, voice)
        response.hangup()
    elif ask.kind == "record":
        _say(response, result.say, voice)
        response.record(
            action=action_url,
            method="POST",
            max_length=ask.max_length,
            finish_on_key=ask.finish_on_key or "#",
            timeout=ask.timeout or 5,
            play_beep=True,
            recording_status_callback=recording_status_url,
            recording_status_callback_method="POST" if recording_status_url else None,
        )
        # Twilio skips the action when nothing was recorded and runs the next verb: say it was skipped.
        response.redirect(action_url, method="POST")
    else:
        gather = response.gather(
            action=action_url,
            method="POST",
            input="dtmf",
            num_digits=ask.num_digits,
            finish_on_key=ask.finish_on_key if ask.finish_on_key else "",
            timeout=ask.timeout or 5,
        )
        _say(gather, result.say, voice)
        # No keys before the timeout: Twilio falls through to here, which the view reads as silence.
        response.redirect(action_url, method="POST")
    return str(response)


def render_hangup(texts: list[str], voice: Voice) -> str:
    """Say a few words and hang up (goodbyes, apologies, machines)."""
    response = VoiceResponse()
    _say(response, texts, voice)
    response.hangup()
    return str(response)


def render_message(texts: list[str]) -> str:
    """Render an SMS reply (empty list: answer with no message)."""
    response = MessagingResponse()
    if texts:
        response.message("\n".join(texts))
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
