"""Read a citizen's SMS reply to a survey text: a grade, categories, a comment or a keyword.

`parse_reply` is pure and total: it never raises, gives the same result for the same text, and the
same result for two texts with the same NFKC form. How a reply is read (DESIGN §6):

* The text is NFKC-normalised (full-width "１" and "ＴＤ" become "1" and "TD", "①" becomes "1"),
  control and invisible format characters are dropped (line breaks become spaces), and English is
  compared case-folded.
* Keyword: the reply holds nothing but keywords of one kind, apart from whitespace, punctuation and
  symbols ("TD。", " stop ", "TD退订"). A keyword among other words ("td please stop calling") is
  comment text.
* The rest of the reply is cut into chunks at whitespace, punctuation and symbols. A chunk is read as
  values only when it is made of values from end to end: ASCII digits ("4", "436"), grade words
  ("不满意"), category characters ("拖", "拖冷"), a score ("5分", "打5分", "给五分"), a Chinese
  numeral standing alone ("五"), English keys ("4delay"). So "差" is a category while "态度差" and
  "差不多" are comment text, and "3天" is not a grade. A chunk that only begins with a bad grade
  word keeps the grade and the rest is comment ("非常不满意态度差"); one that only begins with a
  satisfied word is text ("满意度很低", "满意才怪"), so the citizen is asked again rather than a
  complaint being read as praise. A grade word split by a space is read whole ("不 满意", "非常 不满意"),
  and a satisfied word right after a chunk holding a negation ("很不 满意", "不太 满意") gives no
  grade. English words joined by spaces
  are read as one run and count only when every word is a value ("very satisfied", "dissatisfied
  delay"); "i am not satisfied" is comment text: there is no guessing at negation.
* Digits: the first grade digit gives the grade; after a bad grade, digits are categories ("4 3 6",
  "4 36"; a run of up to six category digits is split); after a satisfied grade another grade digit
  makes the reply ambiguous ("1 2") and leaves the grade None, a repeat ("1 1") is harmless. A score
  ("5分") is the reply digit 5 looked up in `grade_digits`, not five points out of five. Numbers that
  are neither ("7", "100", a phone number) stay in the comment. With ``expect="categories"`` (the
  second step of a two-step conversation) digits are always categories.
* With ``expect="verification"`` the reply answers "are you satisfied with how it was handled?":
  1 / 是 / 是的 / 对 / yes / y and the satisfied grade words give ``verified=True``; 2 / 否 / 不是 /
  不 / no / n and the bad grade words give False; the grade is left None.
* The comment is the text not read as values, in its NFKC form (so "，" and "！" come back as ","
  and "!"), whitespace collapsed, separators trimmed, cut at 1000 characters; None if nothing is left.
  The message itself is kept as received (models/messages.py); this is only its readable remainder.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from models.domain import (
    CATEGORY_WORDS_ZH,
    DEFAULT_CATEGORY_DIGITS,
    DEFAULT_GRADE_DIGITS,
    GRADE_WORDS_ZH,
    Category,
    Grade,
)

logger = logging.getLogger(__name__)

COMMENT_MAX_CHARS = 1000
# A concatenated SMS is at most about 1,600 characters; anything far longer is cut, not refused.
_MAX_INPUT_CHARS = 5000


class Keyword(StrEnum):
    """A reply that is a command rather than an answer."""

    OPT_OUT = "opt_out"  # never send this number a survey again (TD, 退订, STOP …)
    OPT_IN = "opt_in"  # undo an earlier opt-out (START, UNSTOP, 订阅)
    HELP = "help"  # send the help text (HELP, INFO, 帮助)


@dataclass(frozen=True)
class ParsedReply:
    """What one SMS reply says."""

    grade: Grade | None = None
    categories: tuple[Category, ...] = ()  # in order of appearance, without repeats
    comment: str | None = None  # the text not read as values, trimmed; None if nothing is left
    keyword: Keyword | None = None  # only when the keyword is alone in the message
    ambiguous: bool = False  # two different grades (or yes and no) given; grade/verified left None
    verified: bool | None = None  # the answer to a verification visit (expect="verification")

    @property
    def is_empty(self) -> bool:
        """Whether the reply carries nothing at all (an ambiguous reply is not empty)."""
        return (
            self.grade is None
            and not self.categories
            and self.comment is None
            and self.keyword is None
            and self.verified is None
            and not self.ambiguous
        )


_KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        ("td", "t", "退订", "stop", "stopall", "unsubscribe", "cancel", "end", "quit"),
        Keyword.OPT_OUT,
    ),
    **dict.fromkeys(("start", "unstop", "订阅"), Keyword.OPT_IN),
    **dict.fromkeys(("help", "info", "帮助"), Keyword.HELP),
}
_GRADE_PHRASES_EN: dict[tuple[str, ...], Grade] = {
    ("very", "satisfied"): Grade.VERY_SATISFIED,
    ("satisfied",): Grade.SATISFIED,
    ("basically", "satisfied"): Grade.BASICALLY_SATISFIED,
    ("fairly", "satisfied"): Grade.BASICALLY_SATISFIED,
    ("dissatisfied",): Grade.DISSATISFIED,
    ("unsatisfied",): Grade.DISSATISFIED,
    ("not", "satisfied"): Grade.DISSATISFIED,
    ("very", "dissatisfied"): Grade.VERY_DISSATISFIED,
    ("very", "unsatisfied"): Grade.VERY_DISSATISFIED,
}
_CATEGORY_WORDS_EN = {category.value: category for category in Category}
_VERIFY_WORDS_EN = {"yes": True, "y": True, "no": False, "n": False}
_VERIFY_WORDS_ZH = {"是": True, "是的": True, "对": True, "否": False, "不是": False, "不": False}
_VERIFY_DIGITS = {"1": True, "2": False}
_NUMERALS_ZH = dict(zip("一二三四五六壹贰叁肆伍陆貳參陸", "123456123456236", strict=True))

_CHUNK_RE = re.compile(r"[^\W_]+")  # a run of letters and digits of any script
_ASCII_WORD_RE = re.compile(r"[A-Za-z]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_SCORE_RE = re.compile("[打给給]?([0-9]|[" + "".join(_NUMERALS_ZH) + "])分")
_ENGLISH_GAP_RE = re.compile(r"[\s'’-]+")  # what may join two English words into one run
_KEYWORD_PART_RE = re.compile(r"[A-Za-z]+|[^\W_A-Za-z]+")
_COMMENT_TRIM = " ,，、;；:：.。·#*"  # separators, and keypad habits like "36#"
_KEPT_FORMAT_CHARS = frozenset("\u200d") | frozenset(map(chr, range(0xE0020, 0xE0080)))  # emoji
# A grade word typed with a space inside ("不 满意", "非常 不满意"): joined before the text is cut.
_SPLIT_GRADE_RE = re.compile(r"(?<![^\W_])(非常不|非常|基本|不)\s+(?=不?满意)")
_NEGATIONS = frozenset("不没未别")  # a chunk holding one negates a satisfied word right after it


@dataclass(frozen=True)
class _Item:
    """One value found in the text, with where it is (so the comment can leave it out)."""

    start: int
    end: int
    grade: Grade | None = None
    category: Category | None = None
    number: str | None = None  # ASCII digits as typed, or a Chinese numeral's digit
    score: bool = False  # number given as "5分": always a grade digit, never a category
    verified: bool | None = None


def _zh_words(verification: bool) -> tuple[tuple[str, _Item], ...]:
    """List the Chinese value words, longest first ("非常不满意" before "不满意" before "满意")."""
    words = {word: _Item(0, 0, grade=grade) for grade, word in GRADE_WORDS_ZH.items()}
    words |= {word: _Item(0, 0, category=category) for category, word in CATEGORY_WORDS_ZH.items()}
    if verification:
        words |= {word: _Item(0, 0, verified=value) for word, value in _VERIFY_WORDS_ZH.items()}
    return tuple(sorted(words.items(), key=lambda pair: (-len(pair[0]), pair[0])))


_ZH_WORDS = {False: _zh_words(False), True: _zh_words(True)}
_ZH_GRADE_WORDS = tuple(
    sorted(((w, g) for g, w in GRADE_WORDS_ZH.items()), key=lambda p: (-len(p[0]), p[0]))
)


def parse_reply(
    text: str | None,
    *,
    grade_digits: Mapping[str, Grade] = DEFAULT_GRADE_DIGITS,
    category_digits: Mapping[str, Category] = DEFAULT_CATEGORY_DIGITS,
    expect: str = "rating",
) -> ParsedReply:
    """Read an SMS reply; `expect` is "rating", "categories" or "verification".

    >>> parse_reply("4 拖 太慢了")
    ParsedReply(grade=<Grade.DISSATISFIED: 'dissatisfied'>, categories=(<Category.DELAY: 'delay'>,), \
comment='太慢了', keyword=None, ambiguous=False, verified=None)
    >>> parse_reply("１").grade, parse_reply("五").grade, parse_reply("满意").grade
    (<Grade.VERY_SATISFIED: 'very_satisfied'>, <Grade.VERY_DISSATISFIED: 'very_dissatisfied'>, \
<Grade.SATISFIED: 'satisfied'>)
    >>> r = parse_reply("非常不满意 态度差"); r.grade, r.comment
    (<Grade.VERY_DISSATISFIED: 'very_dissatisfied'>, '态度差')
    >>> r = parse_reply("4 3 6"); r.grade, r.categories
    (<Grade.DISSATISFIED: 'dissatisfied'>, (<Category.DELAY: 'delay'>, <Category.POOR: 'poor'>))
    >>> r = parse_reply("1 2"); r.grade, r.ambiguous
    (None, True)
    >>> parse_reply("36", expect="categories").categories
    (<Category.DELAY: 'delay'>, <Category.POOR: 'poor'>)
    >>> parse_reply("是的", expect="verification").verified
    True
    >>> parse_reply("TD。").keyword, parse_reply("td please stop calling").keyword
    (<Keyword.OPT_OUT: 'opt_out'>, None)
    >>> r = parse_reply("100"); r.grade, r.comment
    (None, '100')
    >>> parse_reply(None).is_empty
    True
    """
    try:
        return _parse(text, grade_digits, category_digits, expect)
    except Exception:  # a webhook must always get an answer; the tests check this never happens
        logger.exception("SMS reply could not be parsed; kept as a comment")
        kept = text[:COMMENT_MAX_CHARS].strip() if isinstance(text, str) else ""
        return ParsedReply(comment=kept or None)


def _parse(
    text: str | None,
    grade_digits: Mapping[str, Grade],
    category_digits: Mapping[str, Category],
    expect: str,
) -> ParsedReply:
    """Parse without the safety net (the tests call this to see real errors)."""
    if not text:
        return ParsedReply()
    clean = _clean(text)[:_MAX_INPUT_CHARS]
    keyword = _keyword(clean)
    if keyword is not None:
        return ParsedReply(keyword=keyword)
    verification = expect == "verification"
    clean = _SPLIT_GRADE_RE.sub(r"\1", clean)
    items = _read_items(clean, verification)
    if verification:
        return _read_verification(clean, items, grade_digits)
    grade: Grade | None = None
    ambiguous = False
    categories: list[Category] = []
    used: list[_Item] = []
    for item in items:
        if item.category is not None:
            categories.append(item.category)
            used.append(item)
            continue
        if item.grade is not None:
            candidate: Grade | None = item.grade
        elif item.number is None:
            continue
        elif item.score:
            candidate = grade_digits.get(item.number)
        elif expect == "categories" or (grade is not None and grade.is_bad and not ambiguous):
            found = _as_categories(item.number, category_digits)
            if found:
                categories.extend(found)
                used.append(item)
            continue
        else:
            candidate = grade_digits.get(item.number)
        if candidate is None:
            continue
        used.append(item)
        if grade is None:
            grade = candidate
        elif candidate != grade:
            ambiguous = True
    return ParsedReply(
        grade=None if ambiguous else grade,
        categories=tuple(dict.fromkeys(categories)),
        comment=_comment(clean, used),
        ambiguous=ambiguous,
    )


def _read_verification(
    clean: str, items: list[_Item], grade_digits: Mapping[str, Grade]
) -> ParsedReply:
    """Read a verification answer: yes/no words, 1/2, or a grade word standing for yes or no."""
    verified: bool | None = None
    ambiguous = False
    categories: list[Category] = []
    used: list[_Item] = []
    for item in items:
        answer = item.verified
        if item.category is not None:
            categories.append(item.category)
            used.append(item)
            continue
        grade = item.grade
        if item.number is not None:
            if item.score:
                grade = grade_digits.get(item.number)
            else:
                answer = _VERIFY_DIGITS.get(item.number)
        if grade is not None:
            answer = not grade.is_bad
        if answer is None:
            continue
        used.append(item)
        if verified is None:
            verified = answer
        elif answer != verified:
            ambiguous = True
    return ParsedReply(
        categories=tuple(dict.fromkeys(categories)),
        comment=_comment(clean, used),
        ambiguous=ambiguous,
        verified=None if ambiguous else verified,
    )


def _clean(text: str) -> str:
    """NFKC-normalise; drop control and invisible format characters, line breaks become spaces."""
    kept = []
    for char in unicodedata.normalize("NFKC", text):
        category = unicodedata.category(char)
        if category == "Cc":
            if char.isspace():
                kept.append(" ")
        elif category == "Cs" or (category == "Cf" and char not in _KEPT_FORMAT_CHARS):
            continue
        else:
            kept.append(char)
    return "".join(kept)


def _keyword(clean: str) -> Keyword | None:
    """Return the keyword when the reply holds nothing but keywords of one kind."""
    kinds = {_KEYWORDS.get(part.casefold()) for part in _KEYWORD_PART_RE.findall(clean)}
    if len(kinds) == 1:
        return kinds.pop()
    return None


def _read_items(clean: str, verification: bool) -> list[_Item]:
    """Find the values of the reply, chunk by chunk, in order."""
    chunks = [match.span() for match in _CHUNK_RE.finditer(clean)]
    items: list[_Item] = []
    index = 0
    while index < len(chunks):
        start, end = chunks[index]
        if not _ASCII_WORD_RE.fullmatch(clean, start, end):
            found = _read_chunk(clean, start, end, verification)
            if found and _negated(clean, chunks, index, found[0]):
                found = found[1:]  # "很不 满意": the satisfied word is not what the citizen said
            items.extend(found)
            index += 1
            continue
        last = index + 1  # gather the run of English words joined by spaces
        while (
            last < len(chunks)
            and _ASCII_WORD_RE.fullmatch(clean, *chunks[last])
            and _ENGLISH_GAP_RE.fullmatch(clean, chunks[last - 1][1], chunks[last][0])
        ):
            last += 1
        items.extend(_read_english(clean, chunks[index:last], verification))
        index = last
    return items


def _negated(clean: str, chunks: list[tuple[int, int]], index: int, first: _Item) -> bool:
    """Whether a satisfied grade word opening chunk `index` follows a negation across a space."""
    if first.grade is None or first.grade.is_bad or first.start != chunks[index][0] or index == 0:
        return False
    before_start, before_end = chunks[index - 1]
    return clean[before_end : first.start].isspace() and not _NEGATIONS.isdisjoint(
        clean[before_start:before_end]
    )


def _read_english(clean: str, spans: list[tuple[int, int]], verification: bool) -> list[_Item]:
    """Read a run of English words: values only if every word is part of one."""
    words = [clean[start:end].lower() for start, end in spans]
    items: list[_Item] = []
    index = 0
    while index < len(words):
        pair = tuple(words[index : index + 2])
        if len(pair) == 2 and pair in _GRADE_PHRASES_EN:
            grade = _GRADE_PHRASES_EN[pair]
            items.append(_Item(spans[index][0], spans[index + 1][1], grade=grade))
            index += 2
            continue
        item = _english_word(words[index], *spans[index], verification)
        if item is None:
            return []
        items.append(item)
        index += 1
    return items


def _english_word(word: str, start: int, end: int, verification: bool) -> _Item | None:
    """Look up one English value word (already lower-cased)."""
    if (word,) in _GRADE_PHRASES_EN:
        return _Item(start, end, grade=_GRADE_PHRASES_EN[(word,)])
    if word in _CATEGORY_WORDS_EN:
        return _Item(start, end, category=_CATEGORY_WORDS_EN[word])
    if verification and word in _VERIFY_WORDS_EN:
        return _Item(start, end, verified=_VERIFY_WORDS_EN[word])
    return None


def _read_chunk(clean: str, start: int, end: int, verification: bool) -> list[_Item]:
    """Read a chunk that must be values end to end, or that begins with a bad Chinese grade word."""
    numeral = _NUMERALS_ZH.get(clean[start:end])
    if numeral is not None:
        return [_Item(start, end, number=numeral)]
    items: list[_Item] = []
    position = start
    while position < end:
        item = _value_at(clean, position, end, verification)
        if item is None:
            break
        items.append(item)
        position = item.end
    if position == end:
        return items
    for word, grade in _ZH_GRADE_WORDS:
        if clean.startswith(word, start, end):
            # "不满意态度差" is a complaint; "满意度很低" or "满意才怪" is not praise.
            return [_Item(start, start + len(word), grade=grade)] if grade.is_bad else []
    return []


def _value_at(clean: str, position: int, end: int, verification: bool) -> _Item | None:
    """Read the value that starts at `position`, if one does."""
    if match := _SCORE_RE.match(clean, position, end):
        digit = _NUMERALS_ZH.get(match[1], match[1])
        return _Item(position, match.end(), number=digit, score=True)
    if match := _DIGITS_RE.match(clean, position, end):
        return _Item(position, match.end(), number=match[0])
    if match := _ASCII_WORD_RE.match(clean, position, end):
        return _english_word(match[0].lower(), position, match.end(), verification)
    for word, item in _ZH_WORDS[verification]:
        if clean.startswith(word, position, end):
            return replace(item, start=position, end=position + len(word))
    return None


def _as_categories(number: str, category_digits: Mapping[str, Category]) -> list[Category]:
    """Read a number as categories: one category digit, or a short run of them ("36")."""
    if number in category_digits:
        return [category_digits[number]]
    if len(number) <= len(category_digits) and all(d in category_digits for d in number):
        return [category_digits[digit] for digit in number]
    return []


def _comment(clean: str, used: Iterable[_Item]) -> str | None:
    """Keep the text that was not read as values, tidied and cut to COMMENT_MAX_CHARS."""
    pieces = []
    position = 0
    for item in sorted(used, key=lambda item: item.start):
        pieces.append(clean[position : item.start])
        position = item.end
    pieces.append(clean[position:])
    tidy = (re.sub(r"\s+", " ", piece).strip(_COMMENT_TRIM) for piece in pieces)
    comment = " ".join(piece for piece in tidy if piece)[:COMMENT_MAX_CHARS].rstrip()
    return comment or None
