"""Run a survey script: an input goes in, prompts, answers and an outcome come out.

Modelled on nyaruka/goflow. Pure: no I/O, no clock; the conversation state is a plain
JSON-serialisable dict that the caller stores between webhook requests.

Outcomes: complete once every question that applies is answered (the voice comment is
optional, so a hang-up at the comment prompt is complete); partial when rated but cut short;
break_off when cut short before a rating; refused on the opt-out key or an SMS opt-out, even
after a rating; not_eligible on the not-eligible key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ivr.script.definition import Flow, ItemContext, Script, Verdict
from models.domain import Category, Channel, Disposition, Grade

STATE_VERSION = 1
# Nodes of a conversation; the node is where the next input is awaited.
RATING = "rating"
CATEGORIES = "categories"
COMMENT = "comment"
VERIFICATION = "verification"
END = "end"
_NODES = frozenset({RATING, CATEGORIES, COMMENT, VERIFICATION, END})
# The SMS counterpart of each voice prompt that ends or asks.
_SMS_PROMPTS = {
    "thanks": "sms_thanks",
    "give_up": "sms_thanks",
    "optout": "sms_optout",
    "not_eligible": "sms_not_eligible",
    RATING: "sms_invite",
    VERIFICATION: "sms_verification",
    CATEGORIES: "sms_categories",
}
_INTROS = {RATING: "greeting", VERIFICATION: "verification_greeting"}


@dataclass(frozen=True)
class Digits:
    """Keys pressed at a menu, with or without the finish key; "" is silence (timeout)."""

    digits: str


@dataclass(frozen=True)
class Recording:
    """A voice comment was recorded."""

    url: str
    duration: int  # seconds


@dataclass(frozen=True)
class RecordingSkipped:
    """The comment prompt ended without a recording."""


@dataclass(frozen=True)
class SmsReply:
    """An SMS reply as the SMS parser read it; one reply may answer several questions."""

    grade: Grade | None = None
    categories: tuple[Category, ...] = ()
    comment: str | None = None  # free text; replaces the voice comment
    optout: bool = False  # TD, 退订, STOP ...
    ambiguous: bool = False  # contradictory: grade, categories and verified are ignored
    not_eligible: bool = False  # "did not handle this item"
    verified: bool | None = None  # the verification answer; a grade is read when it is None


@dataclass(frozen=True)
class Hangup:
    """The caller hung up, or the SMS survey closed before it ended."""


Input = Digits | Recording | RecordingSkipped | SmsReply | Hangup


@dataclass(frozen=True)
class Ask:
    """The input awaited next: a Gather, a Record or an SMS reply."""

    kind: Literal["digits", "record", "sms_reply"]
    num_digits: int | None = None  # None: until finish_on_key or the timeout
    finish_on_key: str = ""
    timeout: int | None = None  # seconds of silence
    max_length: int | None = None  # seconds of recording


@dataclass(frozen=True)
class AnswerEvent:
    """One answer, emitted once, at the step it arrives."""

    key: str  # rating, categories, comment, verification, eligible
    value: str  # a Grade, comma-joined Category keys, a Verdict, comment text or recording URL
    duration: int | None = None  # seconds of a recorded comment (value is its URL)
    more: bool = False  # adds to the answer already given (a later SMS reply's free text)


@dataclass(frozen=True)
class StepResult:
    """What one step produced; for SMS, `say` is sent as one message joined by newlines."""

    state: dict[str, Any]
    say: list[str]
    ask: Ask | None
    answers: list[AnswerEvent] = field(default_factory=list)
    optout: bool = False  # the caller must record an OptOut
    outcome: Disposition | None = None  # set when the conversation ended

    @property
    def done(self) -> bool:
        """Whether the conversation ended (hang up, send nothing more)."""
        return self.outcome is not None


@dataclass
class _State:
    flow: Flow
    channel: Channel
    node: str
    seq: int = 0  # increments on each step: a repeated webhook post carries an old value
    invalid: int = 0  # consecutive invalid or empty inputs
    repeats: int = 0
    answered: list[str] = field(default_factory=list)
    grade: Grade | None = None
    outcome: Disposition | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "flow": self.flow.value,
            "channel": self.channel.value,
            "node": self.node,
            "seq": self.seq,
            "invalid": self.invalid,
            "repeats": self.repeats,
            "answered": list(self.answered),
            "grade": self.grade.value if self.grade else None,
            "outcome": self.outcome.value if self.outcome else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _State:
        try:
            if data["version"] != STATE_VERSION:
                raise ValueError(f"version {data['version']!r}")
            counters = [data["seq"], data["invalid"], data["repeats"]]
            if not all(type(n) is int and n >= 0 for n in counters):
                raise ValueError("seq, invalid and repeats must be non-negative integers")
            if data["node"] not in _NODES:
                raise ValueError(f"node {data['node']!r}")
            answered = data["answered"]
            if not isinstance(answered, list) or not all(isinstance(k, str) for k in answered):
                raise ValueError("answered must be a list of question keys")
            return cls(
                flow=Flow(data["flow"]),
                channel=Channel(data["channel"]),
                node=data["node"],
                seq=data["seq"],
                invalid=data["invalid"],
                repeats=data["repeats"],
                answered=list(answered),
                grade=Grade(data["grade"]) if data["grade"] is not None else None,
                outcome=Disposition(data["outcome"]) if data["outcome"] is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a survey state: {exc}") from exc


class _Turn:
    """One step in progress: collects prompts and answers, then builds the result."""

    def __init__(self, script: Script, ctx: ItemContext, state: _State) -> None:
        self.script = script
        self.ctx = ctx
        self.state = state
        self.say: list[str] = []
        self.answers: list[AnswerEvent] = []
        self.optout = False

    @property
    def sms(self) -> bool:
        return self.state.channel is Channel.SMS

    def prompt(self, key: str) -> None:
        self.say.append(self.script.render(_SMS_PROMPTS[key] if self.sms else key, self.ctx))

    def answer(self, key: str, value: str, duration: int | None = None) -> None:
        if key not in self.state.answered:
            self.state.answered.append(key)
            self.answers.append(AnswerEvent(key, value, duration))

    def comment(self, text: str) -> None:
        """Keep SMS free text: the first reply's is the comment, every later one adds to it."""
        if COMMENT in self.state.answered:
            self.answers.append(AnswerEvent(COMMENT, text, more=True))
        else:
            self.answer(COMMENT, text)

    def rate(self, grade: Grade) -> None:
        self.state.grade = grade
        self.answer(RATING, grade.value)

    def categorise(self, categories: tuple[Category, ...]) -> None:
        unique = dict.fromkeys(categories)  # dedupe, keep order
        self.answer(CATEGORIES, ",".join(category.value for category in unique))

    def ask(self, node: str, *, full: bool) -> StepResult:
        """Ask the question at `node`; `full` adds the greeting before a first menu."""
        self.state.node = node
        if full and not self.sms and node in _INTROS:
            self.prompt(_INTROS[node])
        self.prompt(node)
        return self._result(self._ask_for(node))

    def advance(self) -> StepResult:
        """After an answer: ask the next question that applies, or thank and end."""
        self.state.invalid = 0
        node = self._next_node()
        if node is None:
            return self.end(Disposition.COMPLETE, "thanks")
        return self.ask(node, full=True)

    def invalid(self, *, no_input: bool = False) -> StepResult:
        self.state.invalid += 1
        if self.state.invalid >= self.script.max_invalid:
            return self.end(self.outcome_so_far(), "give_up")
        if self.sms:
            self.say.append(self.script.render("sms_clarify", self.ctx))
        else:
            self.prompt("no_input" if no_input else "invalid")
        return self.ask(self.state.node, full=False)

    def repeat(self) -> StepResult:
        self.state.repeats += 1
        if self.state.repeats > self.script.max_repeats:
            return self.invalid()
        return self.ask(self.state.node, full=True)

    def refuse(self) -> StepResult:
        self.optout = True
        return self.end(Disposition.REFUSED, "optout")

    def not_eligible(self) -> StepResult:
        self.answer("eligible", "no")
        return self.end(Disposition.NOT_ELIGIBLE, "not_eligible")

    def end(self, outcome: Disposition, prompt: str | None) -> StepResult:
        self.state.node = END
        self.state.outcome = outcome
        if prompt is not None:
            self.prompt(prompt)
        return self._result(None)

    def outcome_so_far(self) -> Disposition:
        """Outcome of a conversation cut short: the comment is optional, the rating is not."""
        if self.state.node == COMMENT:
            return Disposition.COMPLETE
        if RATING in self.state.answered:
            return Disposition.PARTIAL
        return Disposition.BREAK_OFF

    def _next_node(self) -> str | None:
        grade = self.state.grade
        if self.state.flow is Flow.VERIFICATION or grade is None:
            return None
        order = (CATEGORIES, COMMENT)
        after = order.index(self.state.node) + 1 if self.state.node in order else 0
        for node in order[after:]:
            if node in self.state.answered or (node == COMMENT and self.sms):
                continue  # an SMS comment is free text in any reply, never a question
            when = self.script.ask_categories if node == CATEGORIES else self.script.ask_comment
            if when.applies_to(grade):
                return node
        return None

    def _ask_for(self, node: str) -> Ask:
        script = self.script
        if self.sms:
            return Ask("sms_reply")
        if node == CATEGORIES:
            return Ask(
                "digits",
                finish_on_key=script.keys.finish,
                timeout=script.categories_timeout_seconds,
            )
        if node == COMMENT:
            return Ask(
                "record",
                finish_on_key=script.keys.finish,
                timeout=script.timeout_seconds,
                max_length=script.comment_max_seconds,
            )
        return Ask("digits", num_digits=1, timeout=script.timeout_seconds)

    def _result(self, ask: Ask | None) -> StepResult:
        return StepResult(
            state=self.state.to_dict(),
            say=self.say,
            ask=ask,
            answers=self.answers,
            optout=self.optout,
            outcome=self.state.outcome,
        )


def start(
    script: Script,
    ctx: ItemContext,
    flow: Flow | str = Flow.SURVEY,
    channel: Channel | str = Channel.VOICE,
) -> StepResult:
    """Open a conversation: the greeting and first question of a call or survey text."""
    flow, channel = Flow(flow), Channel(channel)
    node = RATING if flow is Flow.SURVEY else VERIFICATION
    return _Turn(script, ctx, _State(flow, channel, node)).ask(node, full=True)


def awaiting(state: Mapping[str, Any]) -> str:
    """Return what a stored state waits for: rating, categories, comment, verification or end.

    The SMS webhook passes it to the reply parser as `expect`. Only the version and the node are
    checked here (every webhook asks before its step, which checks the whole state).
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"not a survey state: {type(state).__name__}")
    node, version = state.get("node"), state.get("version")
    if version != STATE_VERSION:
        raise ValueError(f"not a survey state: version {version!r}")
    if not isinstance(node, str) or node not in _NODES:
        raise ValueError(f"not a survey state: node {node!r}")
    return node


def question(script: Script, ctx: ItemContext, state: Mapping[str, Any]) -> list[str]:
    """Return the question a conversation awaits, as its channel asks it; [] once it has ended.

    Nothing changes: an SMS HELP reply repeats the current question (a rating, the categories, the
    verification) so the citizen's next reply is read as what they were told.
    """
    current = _State.from_dict(state)
    if current.outcome is not None or current.node == END:
        return []
    turn = _Turn(script, ctx, current)
    if turn.sms and current.node not in _SMS_PROMPTS:
        return []  # an SMS conversation never asks for the comment
    turn.prompt(current.node)
    return turn.say


def step(script: Script, ctx: ItemContext, state: Mapping[str, Any], user_input: Input) -> StepResult:
    """Apply one input to a stored state; a finished conversation ignores further input."""
    current = _State.from_dict(state)
    if current.outcome is not None:
        return StepResult(state=current.to_dict(), say=[], ask=None, outcome=current.outcome)
    current.seq += 1
    turn = _Turn(script, ctx, current)
    if isinstance(user_input, Hangup):
        return turn.end(turn.outcome_so_far(), None)
    if turn.sms:
        return _on_sms(turn, user_input) if isinstance(user_input, SmsReply) else turn.invalid()
    if current.node == COMMENT:
        if isinstance(user_input, Recording) and user_input.url and user_input.duration > 0:
            turn.answer(COMMENT, user_input.url, user_input.duration)
        return turn.advance()  # the comment is optional: anything else skips it
    if isinstance(user_input, Digits):
        return _on_keys(turn, user_input.digits)
    return turn.invalid()


def _on_keys(turn: _Turn, raw: str) -> StepResult:
    script, node = turn.script, turn.state.node
    pressed = raw.strip()
    if not pressed:
        return turn.invalid(no_input=True)
    entry = pressed.removesuffix(script.keys.finish)
    if not entry:
        return turn.invalid()
    if entry == script.keys.optout:
        return turn.refuse()
    if entry == script.keys.not_eligible:
        return turn.not_eligible()
    if entry == script.keys.repeat:
        return turn.repeat()
    if node == RATING and entry in script.grade_digits:
        turn.rate(script.grade_digits[entry])
        return turn.advance()
    if node == VERIFICATION and entry in script.verification_digits:
        turn.answer(VERIFICATION, script.verification_digits[entry].value)
        return turn.advance()
    if node == CATEGORIES and all(digit in script.category_digits for digit in entry):
        turn.categorise(tuple(script.category_digits[digit] for digit in entry))
        return turn.advance()
    return turn.invalid()


def _on_sms(turn: _Turn, reply: SmsReply) -> StepResult:
    script, node = turn.script, turn.state.node
    if reply.optout:
        return turn.refuse()
    if reply.not_eligible:
        return turn.not_eligible()
    answered = False
    if not reply.ambiguous:
        if node == RATING and reply.grade is not None:
            turn.rate(reply.grade)
            if reply.categories and script.ask_categories.applies_to(reply.grade):
                turn.categorise(reply.categories)
            answered = True
        elif node == CATEGORIES and reply.categories:
            turn.categorise(reply.categories)
            answered = True
        elif node == VERIFICATION:
            verdict = _verdict(reply)
            if verdict is not None:
                turn.answer(VERIFICATION, verdict.value)
                answered = True
    comment = (reply.comment or "").strip()
    if comment:
        turn.comment(comment)  # free text is kept even when nothing else was read
        # Reasons written in words answer the categories question.
        answered = answered or (node == CATEGORIES and not reply.ambiguous)
    return turn.advance() if answered else turn.invalid()


def _verdict(reply: SmsReply) -> Verdict | None:
    if reply.verified is not None:
        return Verdict.SATISFIED if reply.verified else Verdict.DISSATISFIED
    if reply.grade is not None:
        return Verdict.DISSATISFIED if reply.grade.is_bad else Verdict.SATISFIED
    return None
