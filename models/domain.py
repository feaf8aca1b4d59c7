"""Domain vocabulary shared by every layer: grades, categories, channels, dispositions.

Pure Python: no SQLAlchemy, Flask or twilio, so the survey engine may import it.
"""

from __future__ import annotations

from enum import StrEnum


class Grade(StrEnum):
    """The five satisfaction grades, stored semantically (never as keypad digits)."""

    VERY_SATISFIED = "very_satisfied"  # 非常满意
    SATISFIED = "satisfied"  # 满意
    BASICALLY_SATISFIED = "basically_satisfied"  # 基本满意
    DISSATISFIED = "dissatisfied"  # 不满意
    VERY_DISSATISFIED = "very_dissatisfied"  # 非常不满意

    @property
    def is_bad(self) -> bool:
        """Whether this grade is a bad review that opens a rectification case."""
        return self in BAD_GRADES


BAD_GRADES = frozenset({Grade.DISSATISFIED, Grade.VERY_DISSATISFIED})
SATISFIED_GRADES = frozenset(
    {Grade.VERY_SATISFIED, Grade.SATISFIED, Grade.BASICALLY_SATISFIED}
)
# Default keypad / SMS digit for each grade (the script may override it).
DEFAULT_GRADE_DIGITS: dict[str, Grade] = {
    "1": Grade.VERY_SATISFIED,
    "2": Grade.SATISFIED,
    "3": Grade.BASICALLY_SATISFIED,
    "4": Grade.DISSATISFIED,
    "5": Grade.VERY_DISSATISFIED,
}
GRADE_WORDS_ZH: dict[Grade, str] = {
    Grade.VERY_SATISFIED: "非常满意",
    Grade.SATISFIED: "满意",
    Grade.BASICALLY_SATISFIED: "基本满意",
    Grade.DISSATISFIED: "不满意",
    Grade.VERY_DISSATISFIED: "非常不满意",
}
# Default weights of the satisfaction index (DESIGN §8).
DEFAULT_GRADE_WEIGHTS: dict[Grade, int] = {
    Grade.VERY_SATISFIED: 100,
    Grade.SATISFIED: 80,
    Grade.BASICALLY_SATISFIED: 60,
    Grade.DISSATISFIED: 30,
    Grade.VERY_DISSATISFIED: 0,
}


class Category(StrEnum):
    """Complaint categories of a bad review (卡 推 拖 乱 冷 差); several may apply."""

    STUCK = "stuck"  # 1 卡: obstruction, making things difficult
    SHIRK = "shirk"  # 2 推: pushing the citizen elsewhere
    DELAY = "delay"  # 3 拖: procrastination
    CHAOTIC = "chaotic"  # 4 乱: improper procedures
    COLD = "cold"  # 5 冷: poor service attitude
    POOR = "poor"  # 6 差: poor professional competence


DEFAULT_CATEGORY_DIGITS: dict[str, Category] = {
    "1": Category.STUCK,
    "2": Category.SHIRK,
    "3": Category.DELAY,
    "4": Category.CHAOTIC,
    "5": Category.COLD,
    "6": Category.POOR,
}
CATEGORY_WORDS_ZH: dict[Category, str] = {
    Category.STUCK: "卡",
    Category.SHIRK: "推",
    Category.DELAY: "拖",
    Category.CHAOTIC: "乱",
    Category.COLD: "冷",
    Category.POOR: "差",
}


class Channel(StrEnum):
    """How a citizen is contacted."""

    VOICE = "voice"  # an outbound IVR call
    SMS = "sms"  # an outbound text with replies


class Disposition(StrEnum):
    """Final (or latest) outcome of a survey."""

    COMPLETE = "complete"  # rated and reached the end of the script
    PARTIAL = "partial"  # rated, did not finish
    BREAK_OFF = "break_off"  # answered, hung up before rating
    REFUSED = "refused"  # asked never to be contacted again
    NOT_ELIGIBLE = "not_eligible"  # did not handle this item / number not eligible
    MACHINE = "machine"  # an answering machine picked up
    NO_ANSWER = "no_answer"  # rang out
    BUSY = "busy"  # line busy
    FAILED = "failed"  # the call or message could not be placed
    NOT_CONTACTED = "not_contacted"  # expired before any contact could be made
    UNDELIVERED = "undelivered"  # the SMS never reached the handset


class AaporClass(StrEnum):
    """AAPOR final disposition classes (DESIGN §8)."""

    I = "I"  # noqa: E741 - complete interview
    P = "P"  # partial interview
    R = "R"  # refusal and break-off
    NC = "NC"  # non-contact
    O = "O"  # noqa: E741 - other
    UH = "UH"  # unknown if household / occupied
    UO = "UO"  # unknown, other
    NE = "NE"  # not eligible


AAPOR_CLASS: dict[Disposition, AaporClass] = {
    Disposition.COMPLETE: AaporClass.I,
    Disposition.PARTIAL: AaporClass.P,
    Disposition.BREAK_OFF: AaporClass.R,
    Disposition.REFUSED: AaporClass.R,
    Disposition.NOT_ELIGIBLE: AaporClass.NE,
    Disposition.MACHINE: AaporClass.NC,
    Disposition.NO_ANSWER: AaporClass.NC,
    Disposition.BUSY: AaporClass.NC,
    Disposition.FAILED: AaporClass.UO,
    Disposition.NOT_CONTACTED: AaporClass.UH,
    Disposition.UNDELIVERED: AaporClass.UO,
}
