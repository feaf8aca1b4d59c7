"""SMS reply parsing (ivr/sms_parse.py): a table of real replies, then properties."""

from __future__ import annotations

import doctest
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr import sms_parse
from ivr.sms_parse import COMMENT_MAX_CHARS, Keyword, ParsedReply, parse_reply
from models.domain import DEFAULT_CATEGORY_DIGITS as CATEGORY_DIGITS
from models.domain import DEFAULT_GRADE_DIGITS as GRADE_DIGITS
from models.domain import Category, Grade

VS = Grade.VERY_SATISFIED
S = Grade.SATISFIED
BS = Grade.BASICALLY_SATISFIED
D = Grade.DISSATISFIED
VD = Grade.VERY_DISSATISFIED
STUCK, SHIRK, DELAY = Category.STUCK, Category.SHIRK, Category.DELAY
CHAOTIC, COLD, POOR = Category.CHAOTIC, Category.COLD, Category.POOR
OUT, IN, HELP = Keyword.OPT_OUT, Keyword.OPT_IN, Keyword.HELP
R = ParsedReply
RATE, CATS, VERIFY = "rating", "categories", "verification"
EMPTY = ParsedReply()

CASES = [
    # Keypad digits, ASCII and full-width, and Chinese numerals.
    ("1", RATE, R(grade=VS)),
    ("2", RATE, R(grade=S)),
    ("3", RATE, R(grade=BS)),
    ("4", RATE, R(grade=D)),
    ("5", RATE, R(grade=VD)),
    ("１", RATE, R(grade=VS)),
    ("５", RATE, R(grade=VD)),
    ("  3 ", RATE, R(grade=BS)),
    ("①", RATE, R(grade=VS)),
    ("一", RATE, R(grade=VS)),
    ("三", RATE, R(grade=BS)),
    ("五", RATE, R(grade=VD)),
    ("壹", RATE, R(grade=VS)),
    ("伍", RATE, R(grade=VD)),
    ("肆 叁", RATE, R(grade=D, categories=(DELAY,))),
    ("五一", RATE, R(comment="五一")),  # a numeral counts only standing alone
    # Scores: the reply digit through the script's mapping.
    ("5分", RATE, R(grade=VD)),
    ("打5分", RATE, R(grade=VD)),
    ("给五分", RATE, R(grade=VD)),
    ("2分", RATE, R(grade=S)),
    ("10分", RATE, R(comment="10分")),
    # Chinese grade words: the longest match wins.
    ("非常满意", RATE, R(grade=VS)),
    ("满意", RATE, R(grade=S)),
    ("基本满意", RATE, R(grade=BS)),
    ("不满意", RATE, R(grade=D)),
    ("非常不满意", RATE, R(grade=VD)),
    ("非常不满意 态度差", RATE, R(grade=VD, comment="态度差")),
    ("非常不满意态度差", RATE, R(grade=VD, comment="态度差")),
    ("满意，谢谢！", RATE, R(grade=S, comment="谢谢!")),  # the comment is in NFKC form
    ("不是很满意", RATE, R(comment="不是很满意")),
    ("很满意", RATE, R(comment="很满意")),
    ("不满意差", RATE, R(grade=D, categories=(POOR,))),
    # A grade word split by a space is one word; a negation before a satisfied word is no praise.
    ("不 满意", RATE, R(grade=D)),
    ("非常不 满意", RATE, R(grade=VD)),
    ("非常 不满意", RATE, R(grade=VD)),
    ("非常 满意", RATE, R(grade=VS)),
    ("基本 满意", RATE, R(grade=BS)),
    ("我 不 满意", RATE, R(grade=D, comment="我")),
    ("很不 满意", RATE, R(comment="很不 满意")),
    ("不太 满意 拖", RATE, R(categories=(DELAY,), comment="不太 满意")),
    ("不 满意", VERIFY, R(verified=False)),
    # Only a bad grade word opening a chunk is a grade: a satisfied one may be negated after it.
    ("满意度很低", RATE, R(comment="满意度很低")),
    ("满意才怪", RATE, R(comment="满意才怪")),
    ("非常满意谢谢", RATE, R(comment="非常满意谢谢")),
    # English grade words, any case or width; a sentence around them makes them text.
    ("very satisfied", RATE, R(grade=VS)),
    ("Satisfied", RATE, R(grade=S)),
    ("basically satisfied", RATE, R(grade=BS)),
    ("FAIRLY SATISFIED", RATE, R(grade=BS)),
    ("dissatisfied", RATE, R(grade=D)),
    ("unsatisfied", RATE, R(grade=D)),
    ("not satisfied", RATE, R(grade=D)),
    ("Very  Dissatisfied", RATE, R(grade=VD)),
    ("ｖｅｒｙ ｓａｔｉｓｆｉｅｄ", RATE, R(grade=VS)),
    ("i am not very satisfied", RATE, R(comment="i am not very satisfied")),
    ("Not satisfied, too slow", RATE, R(grade=D, comment="too slow")),
    ("dissatisfied delay cold", RATE, R(grade=D, categories=(DELAY, COLD))),
    # Category words, in any order with the grade; 差 inside a word is text.
    ("4 拖 太慢了", RATE, R(grade=D, categories=(DELAY,), comment="太慢了")),
    ("拖 4", RATE, R(grade=D, categories=(DELAY,))),
    ("4拖冷", RATE, R(grade=D, categories=(DELAY, COLD))),
    ("不满意 卡 推", RATE, R(grade=D, categories=(STUCK, SHIRK))),
    ("乱", RATE, R(categories=(CHAOTIC,))),
    ("差", RATE, R(categories=(POOR,))),
    ("差不多", RATE, R(comment="差不多")),
    ("态度差", RATE, R(comment="态度差")),
    ("4 拖 拖冷 拖", RATE, R(grade=D, categories=(DELAY, COLD))),
    ("5 poor, STUCK", RATE, R(grade=VD, categories=(POOR, STUCK))),
    ("4 the staff were cold", RATE, R(grade=D, comment="the staff were cold")),
    ("4delay", RATE, R(grade=D, categories=(DELAY,))),
    # Digits after a bad grade are categories.
    ("4 3 6", RATE, R(grade=D, categories=(DELAY, POOR))),
    ("5 1", RATE, R(grade=VD, categories=(STUCK,))),
    ("4 36", RATE, R(grade=D, categories=(DELAY, POOR))),
    ("4，3、6", RATE, R(grade=D, categories=(DELAY, POOR))),
    ("４ ３ ６", RATE, R(grade=D, categories=(DELAY, POOR))),
    ("4 7", RATE, R(grade=D, comment="7")),
    ("不满意 2", RATE, R(grade=D, categories=(SHIRK,))),
    ("拖 5 6", RATE, R(grade=VD, categories=(DELAY, POOR))),
    # Two different grades: ambiguous, the grade is left to a reprompt.
    ("1 2", RATE, R(ambiguous=True)),
    ("1 1", RATE, R(grade=VS)),
    ("3 满意", RATE, R(ambiguous=True)),
    ("满意 非常满意", RATE, R(ambiguous=True)),
    ("4 不满意", RATE, R(grade=D)),
    ("2 3 好", RATE, R(ambiguous=True, comment="好")),
    ("不满意 5分", RATE, R(ambiguous=True)),
    # Numbers that are no grade stay text.
    ("7", RATE, R(comment="7")),
    ("100", RATE, R(comment="100")),
    ("0", RATE, R(comment="0")),
    ("43", RATE, R(comment="43")),
    ("13800138000", RATE, R(comment="13800138000")),
    ("3天才办好", RATE, R(comment="3天才办好")),
    ("4 13800138000", RATE, R(grade=D, comment="13800138000")),
    ("太慢了，4，人很冷漠", RATE, R(grade=D, comment="太慢了 人很冷漠")),
    # Second step of a two-step conversation: digits are categories.
    ("3", CATS, R(categories=(DELAY,))),
    ("3 6", CATS, R(categories=(DELAY, POOR))),
    ("36#", CATS, R(categories=(DELAY, POOR))),
    ("1,2,3,4,5,6", CATS, R(categories=(STUCK, SHIRK, DELAY, CHAOTIC, COLD, POOR))),
    ("三 六", CATS, R(categories=(DELAY, POOR))),
    ("拖 太慢", CATS, R(categories=(DELAY,), comment="太慢")),
    ("9", CATS, R(comment="9")),
    ("不满意 3", CATS, R(grade=D, categories=(DELAY,))),
    # Verification visit: yes or no.
    ("1", VERIFY, R(verified=True)),
    ("2", VERIFY, R(verified=False)),
    ("是", VERIFY, R(verified=True)),
    ("是的，谢谢", VERIFY, R(verified=True, comment="谢谢")),
    ("对", VERIFY, R(verified=True)),
    ("yes", VERIFY, R(verified=True)),
    ("Y", VERIFY, R(verified=True)),
    ("否", VERIFY, R(verified=False)),
    ("不是", VERIFY, R(verified=False)),
    ("NO", VERIFY, R(verified=False)),
    ("n", VERIFY, R(verified=False)),
    ("满意", VERIFY, R(verified=True)),
    ("基本满意", VERIFY, R(verified=True)),
    ("不满意，还没办好", VERIFY, R(verified=False, comment="还没办好")),
    ("1 2", VERIFY, R(ambiguous=True)),
    ("是 不满意", VERIFY, R(ambiguous=True)),
    ("3", VERIFY, R(comment="3")),
    ("TD", VERIFY, R(keyword=OUT)),
    # Every keyword alone.
    ("TD", RATE, R(keyword=OUT)),
    ("T", RATE, R(keyword=OUT)),
    ("退订", RATE, R(keyword=OUT)),
    ("STOP", RATE, R(keyword=OUT)),
    ("STOPALL", RATE, R(keyword=OUT)),
    ("UNSUBSCRIBE", RATE, R(keyword=OUT)),
    ("CANCEL", RATE, R(keyword=OUT)),
    ("END", RATE, R(keyword=OUT)),
    ("QUIT", RATE, R(keyword=OUT)),
    ("START", RATE, R(keyword=IN)),
    ("UNSTOP", RATE, R(keyword=IN)),
    ("订阅", RATE, R(keyword=IN)),
    ("HELP", RATE, R(keyword=HELP)),
    ("INFO", RATE, R(keyword=HELP)),
    ("帮助", RATE, R(keyword=HELP)),
    # … with punctuation, case and width variants.
    ("TD。", RATE, R(keyword=OUT)),
    (" stop ", RATE, R(keyword=OUT)),
    ("td", RATE, R(keyword=OUT)),
    ("ＴＤ", RATE, R(keyword=OUT)),
    ("ｔｄ！", RATE, R(keyword=OUT)),
    ("Stop!!", RATE, R(keyword=OUT)),
    ("【退订】", RATE, R(keyword=OUT)),
    ("退订TD", RATE, R(keyword=OUT)),
    ("t.", RATE, R(keyword=OUT)),
    ("help?", RATE, R(keyword=HELP)),
    ("帮助！", RATE, R(keyword=HELP)),
    ("Start", RATE, R(keyword=IN)),
    # … and inside longer text, not keywords.
    ("td please stop calling", RATE, R(comment="td please stop calling")),
    ("我要退订", RATE, R(comment="我要退订")),
    ("stop start", RATE, R(comment="stop start")),
    ("STOP 1", RATE, R(grade=VS, comment="STOP")),
    ("help me", RATE, R(comment="help me")),
    # Nothing usable, emoji, control and invisible characters.
    ("", RATE, EMPTY),
    (None, RATE, EMPTY),
    ("   ", RATE, EMPTY),
    ("\t\r\n", RATE, EMPTY),
    ("。。。", RATE, EMPTY),
    ("😀", RATE, R(comment="😀")),
    ("👍👍👍", RATE, R(comment="👍👍👍")),
    ("1\x00", RATE, R(grade=VS)),
    ("\x07满意\x1b", RATE, R(grade=S)),
    ("4\r\n拖", RATE, R(grade=D, categories=(DELAY,))),
    ("\u200b5\ufeff", RATE, R(grade=VD)),
    ("太慢了\n\n人很冷漠", RATE, R(comment="太慢了 人很冷漠")),
]


@pytest.mark.parametrize(("text", "expect", "expected"), CASES)
def test_reply_is_read_as_a_citizen_means_it(text, expect, expected):
    assert parse_reply(text, expect=expect) == expected


def test_table_covers_enough_replies():
    assert len(CASES) >= 70


def test_long_reply_never_raises_and_comment_is_cut():
    text = "4 " + "太慢了" * 533  # 1,601 characters
    reply = parse_reply(text)
    assert reply.grade is D
    assert reply.comment == ("太慢了" * 334)[:COMMENT_MAX_CHARS]
    assert len(reply.comment) == COMMENT_MAX_CHARS


def test_far_too_long_reply_is_cut_not_refused():
    reply = parse_reply("拖 " * 100_000)
    assert reply.categories == (DELAY,)


def test_script_digit_mapping_is_honoured():
    reversed_digits = {"1": VD, "2": D, "3": BS, "4": S, "5": VS}
    assert parse_reply("5", grade_digits=reversed_digits).grade is VS
    assert parse_reply("5分", grade_digits=reversed_digits).grade is VS
    reply = parse_reply("1 3", grade_digits=reversed_digits, category_digits={"3": COLD})
    assert reply == R(grade=VD, categories=(COLD,))


def test_unknown_expect_reads_a_rating():
    assert parse_reply("4 3", expect="nonsense") == R(grade=D, categories=(DELAY,))


@pytest.mark.parametrize(
    ("reply", "empty"),
    [
        (EMPTY, True),
        (R(grade=S), False),
        (R(categories=(POOR,)), False),
        (R(comment="x"), False),
        (R(keyword=HELP), False),
        (R(verified=False), False),
        (R(ambiguous=True), False),
    ],
)
def test_is_empty_means_nothing_at_all(reply, empty):
    assert reply.is_empty is empty


def test_docstring_examples_hold():
    assert doctest.testmod(sms_parse).failed == 0


def test_an_unexpected_error_is_kept_as_a_comment(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(sms_parse, "_parse", broken)
    assert parse_reply(" 太慢了 ") == R(comment="太慢了")
    assert "could not be parsed" in caplog.text


# Properties. They call the unguarded `_parse` so a bug shows as an error, not as a comment.

EXPECTS = st.sampled_from([RATE, CATS, VERIFY])
PIECES = st.sampled_from(
    [
        *"12345670９１①一三五六壹伍卡推拖乱冷差分打给是否不",
        "非常满意", "满意", "基本满意", "不满意", "非常不满意", "态度差", "差不多", "太慢了",
        "TD", "ｔｄ", "退订", "STOP", "start", "订阅", "HELP", "帮助", "satisfied", "very",
        "not", "delay", "cold", "yes", "n", "13800138000", "😀", "👍🏽", "\u200d", "\x00", "\n",
    ]
)
SEPARATORS = st.sampled_from(["", " ", "  ", ",", "，", "、", "。", "!", "-", "'", "#", "\t"])
MIXTURES = st.lists(st.tuples(PIECES, SEPARATORS), max_size=12).map(
    lambda parts: "".join(piece + sep for piece, sep in parts)
)


def _check(text, expect):
    reply = sms_parse._parse(text, GRADE_DIGITS, CATEGORY_DIGITS, expect)
    assert isinstance(reply, ParsedReply)
    assert reply.comment is None or 0 < len(reply.comment) <= COMMENT_MAX_CHARS
    assert reply.comment is None or reply.comment == reply.comment.strip()
    assert len(set(reply.categories)) == len(reply.categories)
    assert not (reply.ambiguous and (reply.grade or reply.verified is not None))
    assert reply.keyword is None or reply == R(keyword=reply.keyword)
    return reply


@given(st.text(), EXPECTS)
def test_never_raises_on_any_text(text, expect):
    _check(text, expect)


@given(MIXTURES, EXPECTS)
def test_never_raises_on_mixtures_of_values_and_keywords(text, expect):
    _check(text, expect)


@given(st.one_of(st.text(), MIXTURES), EXPECTS)
def test_same_text_gives_same_result(text, expect):
    assert _check(text, expect) == _check(text, expect)


@given(st.one_of(st.text(), MIXTURES), EXPECTS, st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"]))
def test_nfkc_equivalent_texts_give_same_result(text, expect, form):
    assert _check(unicodedata.normalize(form, text), expect) == _check(text, expect)


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)), EXPECTS)
def test_full_width_text_reads_like_ascii(text, expect):
    full_width = "".join(chr(ord(char) + 0xFEE0) for char in text)
    assert _check(full_width, expect) == _check(text, expect)
