"""The public webhook URLs given to Twilio (and the simulator), built from the public base URL.

Pure string functions: the gateway, the webhook views and the simulator share them, so a URL Twilio
calls is always the URL whose signature the webhook checks.
"""

from __future__ import annotations

from urllib.parse import quote_plus


def _url(base: str, path: str, **params: object) -> str:
    # urlencode's own text for str and int values (every parameter here), in half its time: the
    # Gather webhook builds its next action URL on every request.
    query = "&".join(f"{key}={quote_plus(str(value))}" for key, value in params.items() if value is not None)
    return f"{base.rstrip('/')}{path}" + (f"?{query}" if query else "")


def voice_url(base: str, token: str, attempt_id: int, language: str | None = None) -> str:
    """Return the URL Twilio requests when the citizen answers.

    `language` (lang=) is the survey's: a webhook that cannot reach the database apologises in it.
    """
    return _url(base, "/twilio/voice", survey=token, attempt=attempt_id, lang=language)


def voice_gather_url(base: str, token: str, seq: int, language: str | None = None) -> str:
    """Return the action URL of a Gather or Record at step `seq` (lang= as voice_url's)."""
    return _url(base, "/twilio/voice/gather", survey=token, seq=seq, lang=language)


def voice_status_url(base: str, token: str, attempt_id: int) -> str:
    """Return the call status callback URL of an attempt."""
    return _url(base, "/twilio/voice/status", survey=token, attempt=attempt_id)


def recording_status_url(base: str, token: str) -> str:
    """Return the recording status callback URL of a survey."""
    return _url(base, "/twilio/voice/recording", survey=token)


def sms_inbound_url(base: str) -> str:
    """Return the messaging webhook URL (configured on the Twilio number)."""
    return _url(base, "/twilio/sms")


def sms_status_url(base: str, token: str, attempt_id: int) -> str:
    """Return the message status callback URL of an attempt."""
    return _url(base, "/twilio/sms/status", survey=token, attempt=attempt_id)
