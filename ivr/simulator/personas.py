"""Simulated citizens: who picks up, which keys they press, what they record and text back.

A persona is asked by the phone network at each point where a real caller would act. It sees what was
said (the prompt texts since its last input) and the Gather or Record it is in, never our database.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ivr.simulator.network import CallRecord


class Hangup(Enum):
    """The caller hangs up instead of answering."""

    HANGUP = "hangup"  # the only member: a sentinel distinct from every key string


HANGUP = Hangup.HANGUP

PickUp = Literal["answer", "machine", "no-answer", "busy", "failed"]
PICK_UPS: tuple[str, ...] = ("answer", "machine", "no-answer", "busy", "failed")


@dataclass(frozen=True)
class HangUpAfter:
    """The caller speaks for `seconds` into a Record, then hangs up."""

    seconds: int


Press = str | None | Hangup  # keys (may end with the finish key), None = silence
RecordResult = int | None | Hangup | HangUpAfter  # seconds spoken, None = silence


@dataclass(frozen=True)
class Speech:
    """One thing the caller heard: a Say text or a Play URL."""

    kind: Literal["say", "play"]
    text: str  # the Say text, or the URL of the Play
    voice: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class GatherSpec:
    """The attributes of the Gather the caller is in (Twilio's defaults filled in)."""

    action: str  # absolute
    num_digits: int | None  # None = no limit
    finish_on_key: str  # "" = no finish key
    timeout: int
    action_on_empty_result: bool
    input: str

    @property
    def multi_digit(self) -> bool:
        """Whether the caller may enter several digits ended by the finish key."""
        return (self.num_digits is None or self.num_digits > 1) and bool(self.finish_on_key)


@dataclass(frozen=True)
class RecordSpec:
    """The attributes of the Record the caller is in (Twilio's defaults filled in)."""

    action: str  # absolute
    max_length: int
    finish_on_key: str
    timeout: int
    play_beep: bool
    recording_status_callback: str | None  # absolute


class Persona(Protocol):
    """A simulated citizen, asked by the network at each point a caller would act."""

    def pick_up(self, call: CallRecord) -> PickUp:
        """Decide what happens when the phone rings."""
        ...

    def hear(self, speech: Speech) -> None:
        """Take note of one Say or Play (a terminal prints it)."""
        ...

    def press(self, prompt_texts: Sequence[str], gather: GatherSpec) -> Press:
        """Return the keys pressed in a Gather, None for silence, or HANGUP."""
        ...

    def record(self, prompt_texts: Sequence[str], spec: RecordSpec) -> RecordResult:
        """Return the seconds spoken into a Record, None for silence, HANGUP or HangUpAfter."""
        ...

    def reply_sms(self, texts_received: Sequence[str]) -> str | None:
        """Return the text sent back after reading the conversation so far, or None."""
        ...

    def sms_delivery(self) -> tuple[str, str | None]:
        """Return the final status of a text sent to this citizen and its error code."""
        ...


class ScriptedPersona:
    """A caller who follows a fixed script; when the script runs out, they hang up."""

    def __init__(
        self,
        keys: Iterable[Press] = (),
        *,
        pick_up: PickUp = "answer",
        record_seconds: Iterable[RecordResult] = (),
        sms_replies: Iterable[str | None] = (),
        sms_delivery: tuple[str, str | None] = ("delivered", None),
    ) -> None:
        if pick_up not in PICK_UPS:
            raise ValueError(f"unknown pick-up decision {pick_up!r}")
        self._pick_up: PickUp = pick_up
        self._keys: deque[Press] = deque(keys)
        self._recordings: deque[RecordResult] = deque(record_seconds)
        self._replies: deque[str | None] = deque(sms_replies)
        self._delivery = sms_delivery
        self.heard: list[Speech] = []
        self.prompts: list[tuple[str, ...]] = []  # the prompt texts of each Gather and Record

    def pick_up(self, call: CallRecord) -> PickUp:
        """Return the scripted pick-up decision."""
        return self._pick_up

    def hear(self, speech: Speech) -> None:
        """Keep what was heard for assertions."""
        self.heard.append(speech)

    def press(self, prompt_texts: Sequence[str], gather: GatherSpec) -> Press:
        """Return the next scripted keys."""
        self.prompts.append(tuple(prompt_texts))
        return self._keys.popleft() if self._keys else HANGUP

    def record(self, prompt_texts: Sequence[str], spec: RecordSpec) -> RecordResult:
        """Return the next scripted recording."""
        self.prompts.append(tuple(prompt_texts))
        return self._recordings.popleft() if self._recordings else HANGUP

    def reply_sms(self, texts_received: Sequence[str]) -> str | None:
        """Return the next scripted reply, None when there is none left."""
        return self._replies.popleft() if self._replies else None

    def sms_delivery(self) -> tuple[str, str | None]:
        """Return the scripted delivery status."""
        return self._delivery


_PRESS_DIGIT = re.compile(r"(?:按|press\s*|reply\s*|回复)(\d)", re.IGNORECASE)
_OPT_OUT_LINE = re.compile(r"回复\s*TD\s*退订|reply\s+stop\s+to\s+opt\s+out\.?", re.IGNORECASE)
_ASKS_REPLY = re.compile(r"回复|reply|[?？]", re.IGNORECASE)
_ASKS_CATEGORIES = re.compile(r"原因|went wrong", re.IGNORECASE)
# Free-text SMS answers per grade digit, as citizens write them.
_FREE_TEXT: dict[str, tuple[str, ...]] = {
    "1": ("非常满意", "1 谢谢", "非常满意，效率很高"),
    "2": ("满意", "2", "满意，谢谢"),
    "3": ("基本满意", "3 还行", "基本满意吧"),
    "4": ("4 拖 太慢了", "不满意，跑了三趟", "4 推"),
    "5": ("5分 态度差", "非常不满意 卡", "5 冷 没人理"),
}
_CATEGORY_WORDS = "卡推拖乱冷差"


def _mentioned_digits(texts: Sequence[str]) -> set[str]:
    return set(_PRESS_DIGIT.findall(" ".join(texts)))


class RandomPersona:
    """A caller drawn at random with a seeded rng: the same seed plays the same way."""

    def __init__(
        self,
        rng: random.Random,
        *,
        answer_rate: float = 0.7,
        machine_rate: float = 0.05,
        busy_rate: float = 0.05,
        failed_rate: float = 0.01,
        grade_weights: Sequence[float] = (40, 30, 15, 10, 5),
        bad_category_digits: str = "123456",
        invalid_key_rate: float = 0.05,
        hangup_rate: float = 0.03,
        silence_rate: float = 0.03,
        optout_rate: float = 0.01,
        comment_rate: float = 0.5,
        sms_reply_rate: float = 0.8,
        sms_free_text_rate: float = 0.3,
        sms_undelivered_rate: float = 0.02,
    ) -> None:
        if len(grade_weights) != 5:
            raise ValueError("grade_weights needs five weights, very satisfied first")
        self.rng = rng
        self.answer_rate, self.machine_rate = answer_rate, machine_rate
        self.busy_rate, self.failed_rate = busy_rate, failed_rate
        self.grade_weights = tuple(grade_weights)
        self.bad_category_digits = bad_category_digits
        self.invalid_key_rate, self.hangup_rate = invalid_key_rate, hangup_rate
        self.silence_rate, self.optout_rate = silence_rate, optout_rate
        self.comment_rate = comment_rate
        self.sms_reply_rate, self.sms_free_text_rate = sms_reply_rate, sms_free_text_rate
        self.sms_undelivered_rate = sms_undelivered_rate

    def pick_up(self, call: CallRecord) -> PickUp:
        """Answer, let a machine answer, or not, by the configured rates."""
        roll = self.rng.random()
        for decision, rate in (
            ("answer", self.answer_rate),
            ("machine", self.machine_rate),
            ("busy", self.busy_rate),
            ("failed", self.failed_rate),
        ):
            if roll < rate:
                return decision  # type: ignore[return-value]
            roll -= rate
        return "no-answer"

    def hear(self, speech: Speech) -> None:
        """Listen (a random caller takes no notes)."""

    def press(self, prompt_texts: Sequence[str], gather: GatherSpec) -> Press:
        """Press a rating, categories or a yes/no digit, sometimes badly."""
        roll = self.rng.random()
        if roll < self.hangup_rate:
            return HANGUP
        roll -= self.hangup_rate
        if roll < self.silence_rate:
            return None
        roll -= self.silence_rate
        end = gather.finish_on_key[:1] if gather.multi_digit else ""
        if roll < self.invalid_key_rate:
            return "7" + end
        roll -= self.invalid_key_rate
        mentioned = _mentioned_digits(prompt_texts)
        if roll < self.optout_rate and "0" in mentioned:
            return "0"
        if gather.multi_digit:
            count = 1 if self.rng.random() < 0.6 else 2
            digits = self.rng.sample(self.bad_category_digits, min(count, len(self.bad_category_digits)))
            return "".join(sorted(digits)) + end
        if "5" in mentioned:
            return self._grade_digit()
        if "2" in mentioned:  # a yes / no menu: satisfied 1, not 2
            return "1" if self._grade_digit() in "123" else "2"
        return "1"

    def record(self, prompt_texts: Sequence[str], spec: RecordSpec) -> RecordResult:
        """Leave a comment of a few seconds, or stay silent."""
        roll = self.rng.random()
        if roll < self.hangup_rate:
            return HANGUP
        if roll < self.hangup_rate + self.comment_rate:
            return self.rng.randint(3, max(3, min(30, spec.max_length)))
        return None

    def reply_sms(self, texts_received: Sequence[str]) -> str | None:
        """Answer the last text if it asks something: a digit, a word or free text."""
        if not texts_received:
            return None
        last = _OPT_OUT_LINE.sub("", texts_received[-1])
        if not _ASKS_REPLY.search(last) or self.rng.random() >= self.sms_reply_rate:
            return None
        free_text = self.rng.random() < self.sms_free_text_rate
        if _ASKS_CATEGORIES.search(last):
            digit = self.rng.choice(self.bad_category_digits)
            return _CATEGORY_WORDS[int(digit) - 1] if free_text and digit in "123456" else digit
        grade = self._grade_digit()
        if "5" not in _mentioned_digits([last]):  # a yes / no question
            return "1" if grade in "123" else "2"
        return self.rng.choice(_FREE_TEXT[grade]) if free_text else grade

    def sms_delivery(self) -> tuple[str, str | None]:
        """Deliver most texts; a few are undelivered (30003, unreachable handset)."""
        if self.rng.random() < self.sms_undelivered_rate:
            return ("undelivered", "30003")
        return ("delivered", None)

    def _grade_digit(self) -> str:
        return self.rng.choices("12345", weights=self.grade_weights)[0]


class TerminalPersona:
    """A person at a terminal: hears the prompts printed, answers with the keyboard."""

    def __init__(
        self,
        input_fn: Callable[[str], str] = input,
        print_fn: Callable[[str], object] = print,
        *,
        pick_up: PickUp = "answer",
    ) -> None:
        self._input = input_fn
        self._print = print_fn
        self._pick_up: PickUp = pick_up
        self._texts_shown = 0

    def pick_up(self, call: CallRecord) -> PickUp:
        """Announce the call and answer it."""
        from models.phones import mask_phone

        self._print(f"[ringing] {call.from_} is calling {mask_phone(call.to)}")
        return self._pick_up

    def hear(self, speech: Speech) -> None:
        """Print what is said (or the audio played)."""
        self._print(speech.text if speech.kind == "say" else f"[audio] {speech.text}")

    def press(self, prompt_texts: Sequence[str], gather: GatherSpec) -> Press:
        """Read keys: an empty line is silence, h or end of input hangs up."""
        end = f", end with {gather.finish_on_key}" if gather.multi_digit else ""
        line = self._read(f"keys{end} (empty = silence, h = hang up)> ")
        if line is None:
            return HANGUP
        return line or None

    def record(self, prompt_texts: Sequence[str], spec: RecordSpec) -> RecordResult:
        """Read how many seconds the caller speaks."""
        line = self._read(f"[beep] seconds you speak, up to {spec.max_length} (empty = silence)> ")
        if line is None:
            return HANGUP
        if not line:
            return None
        try:
            return max(0, int(line))
        except ValueError:
            return len(line) // 3 + 1  # typed the comment itself: about three characters a second

    def reply_sms(self, texts_received: Sequence[str]) -> str | None:
        """Print the texts received since the last reply and read the answer."""
        if len(texts_received) < self._texts_shown:  # a new conversation
            self._texts_shown = 0
        for text in texts_received[self._texts_shown :]:
            self._print(f"[sms] {text}")
        self._texts_shown = len(texts_received)
        line = self._read("reply (empty = none)> ")
        return line or None

    def sms_delivery(self) -> tuple[str, str | None]:
        """Every text reaches the terminal."""
        return ("delivered", None)

    def _read(self, prompt: str) -> str | None:
        try:
            line = self._input(prompt).strip()
        except EOFError:
            return None
        return None if line.lower() in ("h", "hangup") else line
