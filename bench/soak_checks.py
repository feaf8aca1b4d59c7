"""What the soak (bench/soak.py) checks after every tick: lost answers, duplicate dials, memory.

The expected answers are derived from the simulator's own records, not from the store: every input a
simulated citizen gave that the webhook acknowledged with 200 (a Gather's digits, a recording, an SMS
reply) is replayed through the pure survey engine, and what the engine says it answers must be in
the store, with the same value. The dials are counted at the gateway: an attempt handed to it twice,
or an attempt of an earlier tick handed to it again, is a duplicate dial; each attempt a tick wrote
must have been handed to it once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.script import (
    Digits,
    Hangup,
    Input,
    ItemContext,
    Recording,
    RecordingSkipped,
    Script,
    SmsReply,
    StepResult,
    awaiting,
    start,
    step,
)
from ivr.simulator import CallRecord, SmsRecord
from ivr.sms import _sms_reply  # the webhook's own reading of a parsed reply (the "8" rule)
from ivr.sms_parse import Keyword, parse_reply
from models.surveys import Answer, Survey
from scheduler.gateway import CallRequest, GatewayResult, SmsRequest

# The prompts name the item; which answers a step produces does not depend on them.
_CONTEXT = ItemContext("soak", "", "", date(2026, 1, 1))
_TOKENS_PER_QUERY = 500
Replayed = tuple[str | None, list[tuple[str, str]]]  # the survey token, the answers in order


class CountingGateway:
    """The simulated gateway, counting which attempts the dispatcher handed to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.handed: Counter[int] = Counter()  # attempt id -> times dialled or texted, this tick

    def place_call(self, request: CallRequest) -> GatewayResult:
        self.handed[request.attempt_id] += 1
        return self.inner.place_call(request)

    def send_sms(self, request: SmsRequest) -> GatewayResult:
        self.handed[request.attempt_id] += 1
        return self.inner.send_sms(request)


@dataclass
class Ledger:
    """Everything the soak checked so far, summed over its ticks."""

    expected_answers: int = 0
    lost_answers: int = 0  # acknowledged, not in the store
    changed_answers: int = 0  # in the store with another value
    unexpected_answers: int = 0  # in the store, never given
    dials: int = 0  # calls and texts handed to the gateway
    duplicate_dials: int = 0
    undialled_attempts: int = 0  # written in a tick but never handed to the gateway
    webhook_requests: int = 0
    webhook_failures: int = 0  # not answered 2xx (or not reachable)
    simulator_errors: int = 0
    replay_mismatches: int = 0  # a Gather for another step than the replay expected
    _last_dialled: int = field(default=0, repr=False)  # the highest attempt id of earlier ticks
    examples: list[str] = field(default_factory=list, repr=False)

    def note(self, text: str) -> None:
        """Keep the first few problems to print."""
        if len(self.examples) < 10:
            self.examples.append(text)

    def check_dials(self, handed: Counter[int], attempts_created: int) -> None:
        """Count a tick's dials: an attempt dialled twice, or again after its tick, is a duplicate."""
        self.dials += sum(handed.values())
        twice = sum(count - 1 for count in handed.values() if count > 1)
        # Attempt ids only grow: one of an earlier tick at the gateway again is a second dial.
        again = sum(count for attempt, count in handed.items() if attempt <= self._last_dialled)
        if twice or again:
            self.note(f"{twice} attempts dialled twice, {again} dialled again after their tick")
        self.duplicate_dials += twice + again
        if attempts_created != len(handed):
            self.note(f"{attempts_created} attempts written, {len(handed)} handed to the gateway")
            self.undialled_attempts += max(0, attempts_created - len(handed))
        self._last_dialled = max([self._last_dialled, *handed])

    def check_answers(
        self, session: Session, records: Sequence[CallRecord | SmsRecord], script: Script
    ) -> None:
        """Compare the answers the citizens gave in these calls and texts with the store."""
        expected = expected_answers(records, script, self)
        stored: dict[str, dict[str, str]] = {token: {} for token in expected}
        tokens = list(expected)
        for start_at in range(0, len(tokens), _TOKENS_PER_QUERY):
            rows = session.execute(
                select(Survey.token, Answer.question, Answer.value)
                .join(Answer, Answer.survey_id == Survey.id)
                .where(Survey.token.in_(tokens[start_at : start_at + _TOKENS_PER_QUERY]))
            )
            for token, question, value in rows:
                stored[token][question] = value
        for token, answers in expected.items():
            self.expected_answers += len(answers)
            for question, value in answers.items():
                if question not in stored[token]:
                    self.lost_answers += 1
                    self.note(f"survey {token}: {question}={value!r} acknowledged but not stored")
                elif stored[token][question] != value:
                    self.changed_answers += 1
                    self.note(
                        f"survey {token}: {question} stored {stored[token][question]!r}, given {value!r}"
                    )
            for question in stored[token].keys() - answers.keys():
                self.unexpected_answers += 1
                self.note(f"survey {token}: {question} stored but never given")


def expected_answers(
    records: Iterable[CallRecord | SmsRecord], script: Script, ledger: Ledger
) -> dict[str, dict[str, str]]:
    """Return, per survey token, the first value of each answer given and acknowledged."""
    expected: dict[str, dict[str, str]] = {}
    for record in records:
        ledger.simulator_errors += len(record.errors)
        for request in record.requests:
            ledger.webhook_requests += 1
            if request.status is None or not 200 <= request.status < 300:
                ledger.webhook_failures += 1
                ledger.note(f"{request.kind} {urlsplit(request.url).path} answered {request.status}")
        replay = _replay_call if isinstance(record, CallRecord) else _replay_sms
        token, answers = replay(record, script, ledger)
        if token is not None:
            into = expected.setdefault(token, {})
            for question, value in answers:
                into.setdefault(question, value)  # the store keeps the first answer to a question
    return expected


def _query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {key: values[0] for key, values in parse_qs(parts.query).items()}


def _ended(state: dict[str, Any] | None) -> bool:
    return state is None or state.get("outcome") is not None


def _replay_call(record: CallRecord, script: Script, ledger: Ledger) -> Replayed:
    token = None
    state: dict[str, Any] | None = None
    answers: list[tuple[str, str]] = []

    def apply(result: StepResult) -> None:
        nonlocal state
        state = result.state
        answers.extend((answer.key, answer.value) for answer in result.answers)

    for request in record.requests:
        path, query = _query(request.url)
        token = query.get("survey", token)
        acknowledged = request.status is not None and 200 <= request.status < 300
        if not acknowledged:
            continue
        if request.kind == "twiml" and path.endswith("/twilio/voice"):
            if state is None and re.search(r"<(Gather|Record)\b", request.body):
                apply(start(script, _CONTEXT, "survey", "voice"))
        elif request.kind == "twiml" and path.endswith("/twilio/voice/gather") and not _ended(state):
            assert state is not None
            if query.get("seq") != str(state["seq"]):
                ledger.replay_mismatches += 1
                ledger.note(f"survey {token}: Gather of step {query.get('seq')}, replay at {state['seq']}")
                continue
            apply(step(script, _CONTEXT, state, _voice_input(request.form, state)))
        elif request.kind == "status" and request.form.get("CallStatus") == "completed" and not _ended(state):
            assert state is not None
            apply(step(script, _CONTEXT, state, Hangup()))  # the webhook ends a cut-off conversation
        elif request.kind == "recording" and request.form.get("RecordingStatus", "completed") == "completed":
            answers.append(("comment", request.form.get("RecordingUrl", "")))
    return token, answers


def _voice_input(form: dict[str, str], state: dict[str, Any]) -> Input:
    # What ivr/voice.py makes of a Gather or Record action's form.
    digits = form.get("Digits")
    if digits == "hangup":
        return Hangup()
    if awaiting(state) == "comment":
        url, duration = form.get("RecordingUrl", ""), int(form.get("RecordingDuration") or 0)
        return Recording(url=url, duration=duration) if url and duration > 0 else RecordingSkipped()
    return Digits(digits=(digits or "").strip())


def _replay_sms(record: SmsRecord, script: Script, ledger: Ledger) -> Replayed:
    token = None
    for request in record.requests:
        if request.kind == "status":
            token = _query(request.url)[1].get("survey", token)
    # The survey's SMS conversation opened when the text was composed, at dispatch.
    state: dict[str, Any] = start(script, _CONTEXT, "survey", "sms").state
    answers: list[tuple[str, str]] = []
    for request in record.requests:
        if request.kind != "sms" or request.status != 200 or _ended(state):
            continue
        expect = awaiting(state)
        parsed = parse_reply(
            request.form.get("Body", ""),
            grade_digits=script.grade_digits,
            category_digits=script.category_digits,
            expect=expect,
        )
        if parsed.keyword is Keyword.OPT_OUT:
            reply = SmsReply(optout=True)
        elif parsed.keyword is not None:
            continue  # help and opt-in are answered, they answer nothing
        else:
            reply = _sms_reply(parsed, script, expect)
        result = step(script, _CONTEXT, state, reply)
        state = result.state
        answers.extend((answer.key, answer.value) for answer in result.answers)
    return token, answers


@dataclass(frozen=True)
class MemorySample:
    """This process's memory after one tick, in MB."""

    rss: float  # all resident pages
    anon: float  # the process's own: Python's heap, SQLite's page cache (bounded), drivers
    file: float  # file-backed: code, libraries, any mapped file


def memory_sample() -> MemorySample:
    """Return this process's resident memory now (Linux /proc)."""
    status = Path("/proc/self/status").read_text()

    def field_mb(name: str) -> float:
        match = re.search(rf"{name}:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    return MemorySample(field_mb("VmRSS"), field_mb("RssAnon"), field_mb("RssFile"))


@dataclass(frozen=True)
class MemoryVerdict:
    """RSS at 10 %, 50 % and 100 % of the run, and whether the last half stayed flat."""

    at_10: float
    at_50: float
    at_100: float
    growth_mb: float  # over the last half
    flat: bool


def memory_verdict(samples: Sequence[float], *, ratio: float = 0.10, mb: float = 20.0) -> MemoryVerdict:
    """Judge RSS samples taken after every tick: flat when the last half grew < `ratio` or < `mb`."""
    if not samples:
        raise ValueError("no RSS samples: the soak ran no tick")

    def at(fraction: float) -> float:
        return samples[min(len(samples) - 1, max(0, round(fraction * len(samples)) - 1))]

    middle, end = at(0.5), samples[-1]
    growth = end - middle
    return MemoryVerdict(at(0.1), middle, end, growth, growth < mb or growth < ratio * middle)
