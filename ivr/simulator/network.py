"""A simulated Twilio account: plays calls by interpreting TwiML, exchanges texts with the webhooks.

Toward the webhook app it behaves like Twilio: every request is a signed, form-encoded POST with
Twilio's parameter names, and status callbacks come in Twilio's order. Supported TwiML: Say, Play,
Pause, Gather (DTMF, with nested Say / Play / Pause), Record, Redirect, Hangup, Reject; Message in the
reply to an inbound text. Deviations, kept on purpose:
- every request is a POST, whatever a `method` attribute says (our webhooks are POST-only);
- a Gather posts as soon as the persona has answered (Twilio first waits for the finish key,
  `numDigits` or `timeout`; the simulated duration counts that wait);
- the recording status callback is posted right after the Record's action request;
- any other verb ends the call with an error, as does a TwiML response that is not 200 with a
  <Response> (Twilio would say "an application error has occurred" and hang up).
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Literal
from urllib.parse import urljoin
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

from ivr.simulator.personas import (
    HANGUP,
    PICK_UPS,
    GatherSpec,
    HangUpAfter,
    Persona,
    Press,
    RecordResult,
    RecordSpec,
    Speech,
)
from ivr.simulator.transport import Transport, TransportError
from ivr.sms_text import count_segments

API_VERSION = "2010-04-01"
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
SMS_STATUSES = {  # final delivery status -> the statuses reported, in order
    "delivered": ("queued", "sent", "delivered"),
    "undelivered": ("queued", "sent", "undelivered"),
    "failed": ("queued", "failed"),
}
RING_SECONDS = {"answer": 6, "machine": 4, "busy": 2, "no-answer": 30, "failed": 0}
Signer = Callable[[str, str, Mapping[str, str]], str]
RequestKind = Literal["twiml", "status", "recording", "sms"]
Target = tuple[str, dict[str, str]]  # the next URL to request and the extra form fields
_CONTINUE: Target = ("continue", {})  # a Gather or Record that falls through to the next verb


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Sign a request as Twilio does (the TwiML adapter is the one module that imports twilio)."""
    from ivr.twilio_adapter import sign_request

    return sign_request(auth_token, url, params)


@dataclass
class WebhookRequest:
    """One request the network made to the webhook app, and the answer."""

    kind: RequestKind
    url: str
    form: dict[str, str]
    status: int | None  # None when the webhook could not be reached
    body: str


@dataclass(frozen=True)
class Recording:
    """A voice comment the caller left."""

    sid: str
    url: str
    duration: int


@dataclass
class CallRecord:
    """Everything that happened on one simulated call."""

    sid: str
    to: str
    from_: str
    url: str
    outcome: str | None = None  # the persona's pick-up decision
    status: str = "queued"  # Twilio's CallStatus, final once the call is over
    answered_by: str | None = None  # human / machine_start, with machine detection only
    hung_up_by: Literal["caller", "app"] | None = None
    started_at: datetime | None = None
    duration: int = 0  # simulated seconds from answer to hang-up
    speech: list[Speech] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # what the caller pressed, finish keys included
    recordings: list[Recording] = field(default_factory=list)
    requests: list[WebhookRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def said(self) -> list[str]:
        """Return the texts of every Say, in order."""
        return [speech.text for speech in self.speech if speech.kind == "say"]

    def forms(self, kind: str) -> list[dict[str, str]]:
        """Return the forms posted of one kind (twiml, status, recording)."""
        return [request.form for request in self.requests if request.kind == kind]


@dataclass
class SmsRecord:
    """One outbound text, its status callbacks and the conversation that followed."""

    sid: str
    to: str
    from_: str
    body: str
    status: str = "queued"  # Twilio's MessageStatus, final once delivery is settled
    error_code: str | None = None
    received: list[str] = field(default_factory=list)  # what the citizen read: our text, then replies
    replies: list[str] = field(default_factory=list)  # what the citizen texted back
    requests: list[WebhookRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def forms(self, kind: str) -> list[dict[str, str]]:
        """Return the forms posted of one kind (status, sms)."""
        return [request.form for request in self.requests if request.kind == kind]


def parse_twiml(body: str) -> Element:
    """Parse a TwiML document; raise ValueError unless it is a <Response>."""
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, ValueError) as error:
        raise ValueError(f"not TwiML ({error})") from error
    if root.tag != "Response":
        raise ValueError(f"TwiML root is <{root.tag}>, not <Response>")
    return root


def parse_message_replies(body: str) -> list[str]:
    """Return the texts of the <Message> verbs of a messaging response ("" is no reply)."""
    if not body.strip():
        return []
    replies = []
    for message in parse_twiml(body).iter("Message"):
        nested = message.find("Body")
        node = nested if nested is not None else message
        replies.append((node.text or "").strip())
    return replies


class PhoneNetwork:
    """A simulated Twilio account that places calls and texts against our webhook app."""

    def __init__(
        self,
        transport: Transport,
        auth_token: str,
        *,
        account_sid: str | None = None,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        signer: Signer | None = None,
        max_requests: int = 50,
        recordings_url: str | None = None,
    ) -> None:
        # Where the simulated recordings can be played: Twilio's URL shape by default; the demo
        # gives the console's /simulator/recordings, which serves a tone as long as the recording.
        self.recordings_url = recordings_url
        self.transport = transport
        self.auth_token = auth_token
        self._rng = rng
        self.account_sid = account_sid or self.new_sid("AC")
        self.clock = clock or (lambda: datetime.now(UTC))
        self.signer = signer or twilio_signature
        self.max_requests = max_requests

    def recording_url(self, sid: str, seconds: int) -> str:
        """Return the RecordingUrl of a simulated recording."""
        if self.recordings_url:
            return f"{self.recordings_url.rstrip('/')}/{sid}.wav?seconds={seconds}"
        return f"https://api.twilio.com/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{sid}"

    def new_sid(self, prefix: str) -> str:
        """Return a new Twilio-style id: a two-letter prefix and 32 hex digits."""
        digits = f"{self._rng.getrandbits(128):032x}" if self._rng else secrets.token_hex(16)
        return prefix + digits

    def post(
        self, kind: RequestKind, url: str, form: dict[str, str], record: CallRecord | SmsRecord
    ) -> int | None:
        """Sign and POST one webhook request, log it on `record`; return the status or None."""
        headers = {
            "X-Twilio-Signature": self.signer(self.auth_token, url, form),
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        try:
            status, body = self.transport.post(url, form, headers)
        except TransportError as error:
            record.requests.append(WebhookRequest(kind, url, form, None, ""))
            record.errors.append(str(error))
            return None
        record.requests.append(WebhookRequest(kind, url, form, status, body))
        if kind in ("status", "recording") and not 200 <= status < 300:
            record.errors.append(f"{kind} callback {url} answered HTTP {status}")
        return status

    def run_call(
        self,
        to: str,
        from_: str,
        url: str,
        *,
        persona: Persona,
        status_callback: str | None = None,
        status_events: Iterable[str] = CALL_EVENTS,
        machine_detection: bool = False,
        call_sid: str | None = None,
    ) -> CallRecord:
        """Dial `to` and play the call to its end in this thread; return what happened."""
        events = set(status_events)
        if unknown := events - set(CALL_EVENTS):
            raise ValueError(f"unknown status callback events {sorted(unknown)}")
        record = CallRecord(call_sid or self.new_sid("CA"), to, from_, url, started_at=self.clock())
        outcome = persona.pick_up(record)
        if outcome not in PICK_UPS:
            raise ValueError(f"unknown pick-up decision {outcome!r}")
        record.outcome = outcome
        answered = outcome in ("answer", "machine")
        if machine_detection and answered:
            record.answered_by = "human" if outcome == "answer" else "machine_start"
        progress = _StatusReporter(self, record, status_callback, events)
        progress.send("initiated", "initiated", 0)
        if outcome != "failed":
            progress.send("ringing", "ringing", 1)
        ring = RING_SECONDS[outcome]
        if not answered:
            record.status = outcome
            progress.send("completed", outcome, ring, CallDuration="0")
            return record
        record.status = "in-progress"
        progress.send("answered", "in-progress", ring)
        listener: Persona = persona if outcome == "answer" else _AnsweringMachine(persona)
        session = _CallSession(self, record, listener)
        session.run(url)
        record.duration = max(1, math.ceil(session.seconds))
        record.status = "completed"
        progress.send("completed", "completed", ring + record.duration, CallDuration=str(record.duration))
        return record

    def deliver_sms(
        self,
        from_: str,
        to: str,
        body: str,
        url: str,
        *,
        message_sid: str | None = None,
        record: SmsRecord | None = None,
    ) -> tuple[int | None, list[str]]:
        """Deliver an inbound text to the messaging webhook; return its status and reply texts."""
        sid = message_sid or self.new_sid("SM")
        record = record or SmsRecord(sid, to, from_, body)
        form = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(max(1, count_segments(body).segments)),
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
        }
        status = self.post("sms", url, form, record)
        if status is None:
            return None, []
        if status != 200:
            record.errors.append(f"messaging webhook {url} answered HTTP {status}")
            return status, []
        try:
            return status, parse_message_replies(record.requests[-1].body)
        except ValueError as error:
            record.errors.append(f"{url}: {error}")
            return status, []

    def run_outbound_sms(
        self,
        to: str,
        from_: str,
        body: str,
        *,
        persona: Persona,
        status_callback: str | None = None,
        inbound_url: str | None = None,
        message_sid: str | None = None,
        max_rounds: int = 5,
    ) -> SmsRecord:
        """Send a text: report its delivery, then let the persona reply while our app asks more."""
        record = SmsRecord(message_sid or self.new_sid("SM"), to, from_, body)
        final, error_code = persona.sms_delivery()
        if final not in SMS_STATUSES:
            raise ValueError(f"unknown SMS delivery status {final!r}")
        for status in SMS_STATUSES[final]:
            record.status = status
            if status_callback is None:
                continue
            form = {
                "MessageSid": record.sid,
                "SmsSid": record.sid,
                "AccountSid": self.account_sid,
                "From": from_,
                "To": to,
                "MessageStatus": status,
                "SmsStatus": status,
                "ApiVersion": API_VERSION,
            }
            if status == final and error_code:
                form["ErrorCode"] = error_code
            self.post("status", status_callback, form, record)
        record.error_code = error_code
        if final != "delivered" or inbound_url is None:
            return record
        record.received.append(body)
        for _ in range(max_rounds):
            reply = persona.reply_sms(tuple(record.received))
            if not reply:
                break
            record.replies.append(reply)
            _, texts = self.deliver_sms(to, from_, reply, inbound_url, record=record)
            if not texts:
                break
            record.received.extend(texts)
        return record


class _StatusReporter:
    """Posts the call progress events a call subscribed to, numbered in order."""

    def __init__(self, network: PhoneNetwork, record: CallRecord, url: str | None, events: set[str]):
        self.network, self.record, self.url, self.events = network, record, url, events
        self.sequence = 0

    def send(self, event: str, call_status: str, offset: int, **extra: str) -> None:
        if self.url is None or event not in self.events:
            return
        record = self.record
        at = (record.started_at or self.network.clock()) + timedelta(seconds=offset)
        form = {
            "CallSid": record.sid,
            "AccountSid": self.network.account_sid,
            "From": record.from_,
            "To": record.to,
            "Called": record.to,
            "Caller": record.from_,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
            "CallStatus": call_status,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.sequence),
            "Timestamp": format_datetime(at.astimezone(UTC)),
            **extra,
        }
        if record.answered_by and call_status in ("in-progress", "completed"):
            form["AnsweredBy"] = record.answered_by
        self.sequence += 1
        self.network.post("status", self.url, form, record)


class _AnsweringMachine:
    """A voicemail greeting: hears everything, presses nothing, says nothing."""

    def __init__(self, owner: Persona) -> None:
        self.owner = owner

    def pick_up(self, call: CallRecord) -> Literal["machine"]:
        return "machine"

    def hear(self, speech: Speech) -> None:
        self.owner.hear(speech)

    def press(self, prompt_texts: object, gather: GatherSpec) -> Press:
        return None

    def record(self, prompt_texts: object, spec: RecordSpec) -> RecordResult:
        return None

    def reply_sms(self, texts_received: object) -> None:
        return None

    def sms_delivery(self) -> tuple[str, str | None]:
        return self.owner.sms_delivery()


class _CallSession:
    """Interprets the TwiML of one answered call, verb by verb, document by document."""

    def __init__(self, network: PhoneNetwork, record: CallRecord, persona: Persona) -> None:
        self.network, self.record, self.persona = network, record, persona
        self.seconds = 0.0  # simulated time since the answer
        self.prompt: list[str] = []  # texts said since the caller last acted
        self.requests = 0
        self.callbacks: list[Target] = []  # recording status callbacks due after the next request

    def form(self, extra: Mapping[str, str]) -> dict[str, str]:
        record = self.record
        form = {
            "CallSid": record.sid,
            "AccountSid": self.network.account_sid,
            "From": record.from_,
            "To": record.to,
            "Called": record.to,
            "Caller": record.from_,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
        }
        if record.answered_by:
            form["AnsweredBy"] = record.answered_by
        form.update(extra)
        return form

    def run(self, url: str) -> None:
        target: Target | None = (url, {})
        while target is not None:
            doc_url, extra = target
            root = self.fetch(doc_url, extra)
            for callback_url, form in self.callbacks:
                self.network.post("recording", callback_url, form, self.record)
            self.callbacks.clear()
            if root is None or self.record.hung_up_by == "caller":
                return  # after a hang-up during a Record, Twilio posts the action but ignores its answer
            try:
                target = self.execute(root, doc_url)
            except ValueError as error:  # a malformed attribute, e.g. timeout="soon"
                self.record.errors.append(f"{doc_url}: {error}")
                return

    def fetch(self, url: str, extra: Mapping[str, str]) -> Element | None:
        if self.requests >= self.network.max_requests:
            self.record.errors.append(f"stopped after {self.requests} TwiML requests (a loop?)")
            return None
        self.requests += 1
        status = self.network.post("twiml", url, self.form(extra), self.record)
        if status is None:
            return None
        if status != 200:
            self.record.errors.append(f"{url} answered HTTP {status}")
            return None
        try:
            return parse_twiml(self.record.requests[-1].body)
        except ValueError as error:
            self.record.errors.append(f"{url}: {error}")
            return None

    def execute(self, root: Element, doc_url: str) -> Target | None:
        for verb in root:
            if verb.tag in ("Say", "Play", "Pause"):
                self.speak(verb)
                continue
            if verb.tag in ("Gather", "Record"):
                act = self.gather if verb.tag == "Gather" else self.record_verb
                target = act(verb, doc_url)
                if target is _CONTINUE:
                    continue
                return target
            if verb.tag == "Redirect" and (verb.text or "").strip():
                return urljoin(doc_url, (verb.text or "").strip()), {}
            if verb.tag in ("Hangup", "Reject"):
                break
            self.record.errors.append(f"{doc_url}: unsupported or empty <{verb.tag}>")
            return None
        self.record.hung_up_by = "app"
        return None

    def speak(self, verb: Element) -> None:
        if verb.tag == "Pause":
            self.seconds += int(verb.get("length", "1"))
            return
        loops = max(1, int(verb.get("loop", "1")))  # loop="0" (forever) counts once
        text = "".join(verb.itertext()).strip()
        if verb.tag == "Say":
            speech = Speech("say", text, verb.get("voice"), verb.get("language"))
            self.prompt.append(text)
            self.seconds += len(text) / 5 * loops
        else:
            speech = Speech("play", text)
            self.seconds += 5 * loops
        self.record.speech.append(speech)
        self.persona.hear(speech)

    def gather(self, verb: Element, doc_url: str) -> Target | None:
        num_digits = verb.get("numDigits")
        spec = GatherSpec(
            action=urljoin(doc_url, verb.get("action") or doc_url),
            num_digits=int(num_digits) if num_digits else None,
            finish_on_key=verb.get("finishOnKey", "#"),
            timeout=int(verb.get("timeout", "5")),
            action_on_empty_result=verb.get("actionOnEmptyResult", "false").lower() == "true",
            input=verb.get("input", "dtmf"),
        )
        for child in verb:
            if child.tag not in ("Say", "Play", "Pause"):
                self.record.errors.append(f"{doc_url}: <{child.tag}> cannot be nested in <Gather>")
                return None
            self.speak(child)
        pressed = self.persona.press(tuple(self.prompt), spec) if "dtmf" in spec.input.split() else None
        self.prompt.clear()
        if pressed is HANGUP:
            self.record.hung_up_by = "caller"
            self.seconds += 1
            return None
        keys = pressed or ""
        if keys:
            self.record.keys.append(keys)
        digits, finished_on, complete = _collect_digits(keys, spec)
        self.seconds += len(keys) + (0 if complete else spec.timeout)
        if not digits and not spec.action_on_empty_result:
            return _CONTINUE
        return spec.action, {"Digits": digits, "FinishedOnKey": finished_on}

    def record_verb(self, verb: Element, doc_url: str) -> Target | None:
        callback = verb.get("recordingStatusCallback")
        spec = RecordSpec(
            action=urljoin(doc_url, verb.get("action") or doc_url),
            max_length=int(verb.get("maxLength", "3600")),
            finish_on_key=verb.get("finishOnKey", "1234567890*#"),
            timeout=int(verb.get("timeout", "5")),
            play_beep=verb.get("playBeep", "true").lower() != "false",
            recording_status_callback=urljoin(doc_url, callback) if callback else None,
        )
        result = self.persona.record(tuple(self.prompt), spec)
        self.prompt.clear()
        hung_up = result is HANGUP or isinstance(result, HangUpAfter)
        spoken = result.seconds if isinstance(result, HangUpAfter) else result
        seconds = min(max(spoken, 0), spec.max_length) if isinstance(spoken, int) else 0
        # Speaking ends with the finish key (about a second); silence ends after `timeout`.
        self.seconds += seconds if hung_up else seconds + (1 if seconds else spec.timeout)
        if hung_up:
            self.record.hung_up_by = "caller"
        if not seconds:  # Twilio requests no action for an empty recording: on to the next verb
            return None if hung_up else _CONTINUE
        sid = self.network.new_sid("RE")
        recording = Recording(sid, self.network.recording_url(sid, seconds), seconds)
        self.record.recordings.append(recording)
        extra = {"RecordingUrl": recording.url, "RecordingSid": sid, "RecordingDuration": str(seconds)}
        if hung_up:
            extra["Digits"] = "hangup"
        elif seconds < spec.max_length and spec.finish_on_key:  # else it ended at maxLength or in silence
            extra["Digits"] = "#" if "#" in spec.finish_on_key else spec.finish_on_key[0]
        if spec.recording_status_callback:
            self.callbacks.append((spec.recording_status_callback, self.recording_form(recording)))
        return spec.action, extra

    def recording_form(self, recording: Recording) -> dict[str, str]:
        started = (self.record.started_at or self.network.clock()) + timedelta(seconds=self.seconds)
        return {
            "AccountSid": self.network.account_sid,
            "CallSid": self.record.sid,
            "RecordingSid": recording.sid,
            "RecordingUrl": recording.url,
            "RecordingStatus": "completed",
            "RecordingDuration": str(recording.duration),
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
            "RecordingStartTime": format_datetime(started.astimezone(UTC)),
            "ErrorCode": "0",
        }


def _collect_digits(keys: str, spec: GatherSpec) -> tuple[str, str, bool]:
    """Return the Digits Twilio posts, the finish key pressed, and whether input ended before timeout."""
    digits = ""
    for key in keys:
        if key not in "0123456789*#":
            continue
        if spec.finish_on_key and key in spec.finish_on_key:
            return digits, key, True
        digits += key
        if spec.num_digits and len(digits) >= spec.num_digits:
            return digits, "", True
    return digits, "", False
