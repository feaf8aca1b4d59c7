"""A survey call played step by step from the browser through the real webhook app.

Twilio's part is played here: each step signs a request as Twilio does, posts it to the public app
in this process (ivr.simulator.FlaskTransport) and reads the TwiML that comes back — the Says, then
the Gather or Record the caller is asked for. The state between two steps is a small dict the
console keeps in the user's session; everything else lives in the database, as with a real call.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urljoin
from xml.etree.ElementTree import Element

from ivr.simulator import FlaskTransport, parse_twiml
from ivr.simulator.network import API_VERSION
from ivr.twilio_adapter import sign_request

MAX_DOCUMENTS = 20  # TwiML documents fetched for one step before giving up (a redirect loop)


@dataclass
class Wait:
    """What the caller is asked for: keys at a Gather, or speech at a Record."""

    kind: str  # "gather" or "record"
    action: str
    fallthrough: str | None  # the Redirect after it: requested when nothing was entered
    num_digits: int | None = None
    finish_on_key: str = "#"
    max_length: int | None = None
    recording_callback: str | None = None


@dataclass
class CallState:
    """One simulated call: who, which survey, where the call is (JSON-ready for the session)."""

    token: str
    attempt_id: int
    call_sid: str
    to: str
    from_: str
    voice_url: str
    status_url: str
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)
    wait: Wait | None = None
    ended: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallState:
        wait = data.get("wait")
        return cls(**{**data, "wait": Wait(**wait) if wait else None})


@dataclass
class Step:
    """What the caller heard in one step, and whether the call goes on."""

    said: list[str]
    errors: list[str] = field(default_factory=list)


class VoicePlayer:
    """Plays one step of a call against the webhook app."""

    def __init__(self, transport: FlaskTransport, auth_token: str, account_sid: str) -> None:
        self.transport = transport
        self.auth_token = auth_token
        self.account_sid = account_sid

    def _post(self, url: str, form: dict[str, str]) -> tuple[int, str]:
        headers = {
            "X-Twilio-Signature": sign_request(self.auth_token, url, form),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return self.transport.post(url, form, headers)

    def _form(self, call: CallState, **extra: str) -> dict[str, str]:
        return {
            "CallSid": call.call_sid,
            "AccountSid": self.account_sid,
            "From": call.from_,
            "To": call.to,
            "Called": call.to,
            "Caller": call.from_,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
            "AnsweredBy": "human",
            **extra,
        }

    def _status(self, call: CallState, status: str, **extra: str) -> None:
        form = self._form(call, CallStatus=status, CallbackSource="call-progress-events", **extra)
        self._post(call.status_url, form)

    def answer(self, call: CallState) -> Step:
        """Ring and pick up: the greeting and the first question."""
        self._status(call, "ringing")
        return self._run(call, call.voice_url, {})

    def press(self, call: CallState, keys: str) -> Step:
        """Enter keys at the current Gather ('' is silence until the timeout)."""
        wait = call.wait
        if wait is None or wait.kind != "gather":
            return Step([], ["the call is not waiting for keys"])
        digits, finished_on = _collect(keys, wait)
        call.keys.append(keys or "∅")
        call.seconds += len(keys) or 5
        if not digits:  # Twilio posts no action for an empty Gather: the next verb runs
            return self._fall_through(call, wait)
        return self._run(call, wait.action, {"Digits": digits, "FinishedOnKey": finished_on})

    def record(self, call: CallState, seconds: int, recording_url: str, recording_sid: str) -> Step:
        """Speak for `seconds` into the current Record (0 is silence)."""
        wait = call.wait
        if wait is None or wait.kind != "record":
            return Step([], ["the call is not recording"])
        seconds = max(0, min(seconds, wait.max_length or seconds))
        call.keys.append(f"🎙 {seconds}s")
        call.seconds += seconds or 5
        if not seconds:
            return self._fall_through(call, wait)
        extra = {
            "RecordingUrl": recording_url,
            "RecordingSid": recording_sid,
            "RecordingDuration": str(seconds),
            "Digits": "#",
        }
        step = self._run(call, wait.action, extra)
        if wait.recording_callback:
            form = {
                "AccountSid": self.account_sid,
                "CallSid": call.call_sid,
                "RecordingSid": recording_sid,
                "RecordingUrl": recording_url,
                "RecordingStatus": "completed",
                "RecordingDuration": str(seconds),
                "RecordingChannels": "1",
                "RecordingSource": "RecordVerb",
                "ErrorCode": "0",
            }
            self._post(wait.recording_callback, form)
        return step

    def hang_up(self, call: CallState) -> Step:
        """The caller hangs up: Twilio reports the call completed."""
        if not call.ended:
            self._end(call)
        return Step([])

    def _end(self, call: CallState) -> None:
        call.ended, call.wait = True, None
        self._status(call, "completed", CallDuration=str(max(1, int(call.seconds))))

    def _fall_through(self, call: CallState, wait: Wait) -> Step:
        if wait.fallthrough:
            return self._run(call, wait.fallthrough, {})
        self._end(call)
        return Step([])

    def _run(self, call: CallState, url: str, extra: dict[str, str]) -> Step:
        step = Step([])
        target: tuple[str, dict[str, str]] | None = (url, extra)
        for _ in range(MAX_DOCUMENTS):
            if target is None:
                break
            doc_url, form_extra = target
            status, body = self._post(doc_url, self._form(call, **form_extra))
            if status != 200:
                step.errors.append(f"{doc_url} answered HTTP {status}")
                self._end(call)
                return step
            try:
                root = parse_twiml(body)
            except ValueError as error:
                step.errors.append(str(error))
                self._end(call)
                return step
            target = self._interpret(call, root, doc_url, step)
        if call.wait is None and not call.ended:
            self._end(call)
        return step

    def _interpret(
        self, call: CallState, root: Element, doc_url: str, step: Step
    ) -> tuple[str, dict[str, str]] | None:
        call.wait = None
        verbs = list(root)
        for index, verb in enumerate(verbs):
            if verb.tag == "Say":
                self._say(call, verb, step)
            elif verb.tag in ("Gather", "Record"):
                following = verbs[index + 1] if index + 1 < len(verbs) else None
                fallthrough = (
                    urljoin(doc_url, (following.text or "").strip())
                    if following is not None and following.tag == "Redirect"
                    else None
                )
                for child in verb:
                    if child.tag == "Say":
                        self._say(call, child, step)
                action = urljoin(doc_url, verb.get("action") or doc_url)
                if verb.tag == "Gather":
                    num = verb.get("numDigits")
                    call.wait = Wait("gather", action, fallthrough, int(num) if num else None,
                                     verb.get("finishOnKey", "#"))
                else:
                    callback = verb.get("recordingStatusCallback")
                    call.wait = Wait("record", action, fallthrough, None, verb.get("finishOnKey", "#"),
                                     int(verb.get("maxLength", "3600")),
                                     urljoin(doc_url, callback) if callback else None)
                return None
            elif verb.tag == "Redirect" and (verb.text or "").strip():
                return urljoin(doc_url, (verb.text or "").strip()), {}
            elif verb.tag in ("Hangup", "Reject"):
                break
        self._end(call)
        return None

    @staticmethod
    def _say(call: CallState, verb: Element, step: Step) -> None:
        text = "".join(verb.itertext()).strip()
        if text:
            step.said.append(text)
            call.seconds += len(text) / 5


def _collect(keys: str, wait: Wait) -> tuple[str, str]:
    """Return the Digits Twilio posts and the finish key pressed, as Twilio gathers them."""
    digits = ""
    for key in keys:
        if key not in "0123456789*#":
            continue
        if wait.finish_on_key and key in wait.finish_on_key:
            return digits, key
        digits += key
        if wait.num_digits and len(digits) >= wait.num_digits:
            return digits, ""
    return digits, ""


def new_call_sid() -> str:
    """Return a Twilio-style CallSid."""
    return "CA" + secrets.token_hex(16)
