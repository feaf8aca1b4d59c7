"""The survey engine: every transition, the TOML loader, and properties over random inputs.

Plain unit tests: no app, no database. `converse` checks at every step that the state survives a
JSON round trip and continues from the round-tripped copy, as the webhooks do.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.script import (
    AnswerEvent,
    Ask,
    AskWhen,
    Digits,
    Flow,
    Hangup,
    Input,
    ItemContext,
    Recording,
    RecordingSkipped,
    Script,
    ScriptError,
    SmsReply,
    StepResult,
    awaiting,
    default_script,
    load_script,
    parse_script,
    question,
    start,
    step,
)
from models.domain import Category, Channel, Disposition, Grade

DEFAULT_TOML = Path(__file__).resolve().parent.parent / "ivr" / "scripts" / "default.toml"
ZH = ItemContext(
    org="杭州市", department="市场监督管理局", matter="企业设立登记", completed_on=date(2024, 3, 5)
)
EN = ItemContext(
    org="Hangzhou",
    department="the Market Regulation Bureau",
    matter="company registration",
    completed_on=date(2024, 3, 5),
    language="en-US",
)
RATING_ZH = (
    "请您对本次办理进行评价："
    "非常满意请按1，满意请按2，基本满意请按3，不满意请按4，非常不满意请按5，重听请按9。"
)


@pytest.fixture
def script() -> Script:
    return default_script()


def text(key: str, ctx: ItemContext = ZH) -> str:
    return default_script().render(key, ctx)


def converse(
    inputs: Sequence[Input],
    *,
    script: Script | None = None,
    ctx: ItemContext = ZH,
    flow: Flow = Flow.SURVEY,
    channel: Channel = Channel.VOICE,
) -> list[StepResult]:
    """Start a conversation and feed it `inputs`; return every result, the start first."""
    script = script or default_script()
    results = [start(script, ctx, flow, channel)]
    for user_input in inputs:
        state = json.loads(json.dumps(results[-1].state))
        assert state == results[-1].state
        results.append(step(script, ctx, state, user_input))
    assert json.loads(json.dumps(results[-1].state)) == results[-1].state
    return results


def answers_of(results: Sequence[StepResult]) -> dict[str, str]:
    """The answers as stored: each question answered once; later SMS free text adds to the comment."""
    events = [event for result in results for event in result.answers]
    keys = [event.key for event in events if not event.more]
    assert len(keys) == len(set(keys)), keys
    stored: dict[str, str] = {}
    for event in events:
        if event.more:
            assert event.key == "comment" and event.key in stored, event
            stored[event.key] += "\n" + event.value
        else:
            stored[event.key] = event.value
    return stored


def keys_pressed(*presses: str) -> list[Input]:
    return [Digits(press) for press in presses]


# -- greeting and rating --------------------------------------------------------------------------


def test_greeting_names_the_item_in_chinese(script):
    first = start(script, ZH)

    greeting, rating = first.say
    assert greeting == (
        "您好，这里是杭州市政务服务回访。您于2024年3月5日在市场监督管理局办理了企业设立登记。"
        "如不再接受回访请按0，如您没有办理过此事项请按8。"
    )
    assert rating == RATING_ZH
    assert first.ask == Ask("digits", num_digits=1, timeout=8)
    assert (first.answers, first.optout, first.outcome, first.done) == ([], False, None, False)
    assert first.state["seq"] == 0


def test_greeting_names_the_item_in_english(script):
    greeting, rating = start(script, EN).say

    assert "On March 5, 2024 you completed company registration at the Market Regulation Bureau" in greeting
    assert "press 0" in greeting and "press 8" in greeting
    assert rating.startswith("How satisfied were you? Very satisfied, press 1.")


@pytest.mark.parametrize(("tag", "language"), [("en", "en-US"), ("EN-GB", "en-US"), ("fr-FR", "zh-CN")])
def test_unknown_language_falls_back_to_a_sibling_or_the_default(script, tag, language):
    assert script.resolve_language(tag) == language
    ctx = dataclasses.replace(ZH, language=tag)
    assert start(script, ctx).say[1] == script.prompts[language]["rating"]


@pytest.mark.parametrize(
    ("digit", "grade"),
    [
        ("1", Grade.VERY_SATISFIED),
        ("2", Grade.SATISFIED),
        ("3", Grade.BASICALLY_SATISFIED),
        ("4", Grade.DISSATISFIED),
        ("5", Grade.VERY_DISSATISFIED),
    ],
)
def test_each_grade_digit_records_its_grade(digit, grade):
    results = converse(keys_pressed(digit))

    assert results[-1].answers == [AnswerEvent("rating", grade.value)]
    assert results[-1].state["seq"] == 1
    if grade.is_bad:
        assert results[-1].say == [text("categories")]
        assert not results[-1].done
    else:
        assert results[-1].say == [text("thanks")]
        assert results[-1].outcome is Disposition.COMPLETE


@pytest.mark.parametrize("digit", ["1", "2", "3"])
def test_good_grade_thanks_and_completes_without_categories(digit):
    last = converse(keys_pressed(digit))[-1]

    assert last.outcome is Disposition.COMPLETE and last.done
    assert last.ask is None
    assert last.state["node"] == "end"


def test_rating_accepts_a_trailing_finish_key():
    assert converse(keys_pressed("2#"))[-1].answers == [AnswerEvent("rating", "satisfied")]


def test_repeat_key_replays_greeting_and_rating_without_counting_as_invalid():
    first, again, invalid, once_more, rated = converse(keys_pressed("9", "7", "9", "4"))

    assert again.say == first.say
    assert again.answers == [] and again.ask == first.ask
    assert again.state["invalid"] == 0
    assert invalid.say == [text("invalid"), RATING_ZH]
    assert once_more.say == first.say and not once_more.done
    assert rated.answers == [AnswerEvent("rating", "dissatisfied")]


def test_repeats_beyond_the_limit_count_as_invalid(script):
    results = converse(keys_pressed(*["9"] * (script.max_repeats + 2)))

    *_, last_repeat, first_extra, second_extra = results
    assert last_repeat.say[0] == text("greeting")
    assert first_extra.say == [text("invalid"), RATING_ZH]
    assert second_extra.outcome is Disposition.BREAK_OFF


# -- categories and comment -----------------------------------------------------------------------


def test_bad_grade_asks_for_categories_ended_by_hash():
    asked = converse(keys_pressed("5"))[-1]

    assert asked.say == [text("categories")]
    assert asked.ask == Ask("digits", num_digits=None, finish_on_key="#", timeout=10)
    assert awaiting(asked.state) == "categories"


@pytest.mark.parametrize(
    ("pressed", "value"),
    [
        ("13#", "stuck,delay"),
        ("13", "stuck,delay"),  # Twilio posts the digits without the finish key
        ("3113#", "delay,stuck"),  # repeats dropped, first order kept
        ("654321#", "poor,cold,chaotic,delay,shirk,stuck"),
    ],
)
def test_category_digits_become_category_keys(pressed, value):
    answered = converse(keys_pressed("4", pressed))[-1]

    assert answered.answers == [AnswerEvent("categories", value)]


@pytest.mark.parametrize("pressed", ["7#", "17#", "1*#", "#", "##", "1#3"])
def test_invalid_category_entry_says_so_and_asks_again(pressed):
    results = converse(keys_pressed("4", pressed))

    assert results[-1].say == [text("invalid"), text("categories")]
    assert results[-1].answers == []
    assert results[-1].state["invalid"] == 1


def test_repeat_key_at_categories_replays_the_categories_question():
    replay = converse(keys_pressed("4", "9#"))[-1]

    assert replay.say == [text("categories")] and replay.state["invalid"] == 0


def test_categories_lead_to_the_voice_comment_prompt():
    asked = converse(keys_pressed("4", "2#"))[-1]

    assert asked.say == ["请在提示音后留下您的意见和建议，最长60秒，说完请按井号键。"]
    assert asked.ask == Ask("record", finish_on_key="#", timeout=8, max_length=60)
    assert not asked.done


def test_recording_completes_the_survey_with_the_recording_url():
    results = converse([Digits("4"), Digits("3#"), Recording("https://api.twilio.com/rec/RE1", 17)])

    assert results[-1].answers == [AnswerEvent("comment", "https://api.twilio.com/rec/RE1", duration=17)]
    assert results[-1].say == [text("thanks")]
    assert results[-1].outcome is Disposition.COMPLETE
    assert answers_of(results) == {
        "rating": "dissatisfied",
        "categories": "delay",
        "comment": "https://api.twilio.com/rec/RE1",
    }


@pytest.mark.parametrize(
    "ending",
    [RecordingSkipped(), Recording("https://r/1", 0), Recording("", 5), Digits(""), Digits("#")],
)
def test_skipped_or_empty_recording_completes_without_a_comment(ending):
    results = converse([Digits("5"), Digits("1#"), ending])

    assert results[-1].answers == []
    assert results[-1].outcome is Disposition.COMPLETE
    assert set(answers_of(results)) == {"rating", "categories"}


# -- opt-out and not eligible ---------------------------------------------------------------------


def test_zero_at_the_greeting_refuses_and_opts_out():
    refused = converse(keys_pressed("0"))[-1]

    assert refused.optout is True
    assert refused.outcome is Disposition.REFUSED
    assert refused.say == [text("optout")]
    assert refused.answers == [] and refused.ask is None


@pytest.mark.parametrize("pressed", ["0", "0#"])
def test_zero_at_categories_refuses_and_keeps_the_rating(pressed):
    results = converse(keys_pressed("4", pressed))

    assert results[-1].optout and results[-1].outcome is Disposition.REFUSED
    assert answers_of(results) == {"rating": "dissatisfied"}


@pytest.mark.parametrize("presses", [("8",), ("5", "8#")])
def test_eight_at_any_menu_ends_as_not_eligible(presses):
    last = converse(keys_pressed(*presses))[-1]

    assert last.outcome is Disposition.NOT_ELIGIBLE
    assert last.answers == [AnswerEvent("eligible", "no")]
    assert last.say == [text("not_eligible")]
    assert not last.optout


# -- invalid input, silence, hang-up --------------------------------------------------------------


def test_two_invalid_keys_before_rating_end_as_break_off():
    first, reprompt, ended = converse(keys_pressed("7", "*"))

    assert reprompt.say == [text("invalid"), RATING_ZH] and reprompt.ask == first.ask
    assert ended.say == [text("give_up")]
    assert ended.outcome is Disposition.BREAK_OFF and ended.ask is None


def test_two_invalid_entries_after_rating_end_as_partial():
    results = converse(keys_pressed("4", "7#", "#"))

    assert results[-1].outcome is Disposition.PARTIAL
    assert results[-1].say == [text("give_up")]
    assert answers_of(results) == {"rating": "dissatisfied"}


def test_silence_twice_ends_politely():
    _, reprompt, ended = converse(keys_pressed("", ""))

    assert reprompt.say == [text("no_input"), RATING_ZH]
    assert ended.outcome is Disposition.BREAK_OFF and ended.say == [text("give_up")]


def test_english_invalid_prompt():
    reprompt = converse(keys_pressed("6"), ctx=EN)[-1]

    assert reprompt.say[0] == "Sorry, that was not a valid choice."


def test_a_valid_answer_resets_the_invalid_counter():
    results = converse(keys_pressed("7", "4", "7#", "1#"))

    assert [r.state["invalid"] for r in results] == [0, 1, 0, 1, 0]
    assert results[-1].answers == [AnswerEvent("categories", "stuck")]
    assert not results[-1].done


@pytest.mark.parametrize(
    ("before", "outcome"),
    [
        ((), Disposition.BREAK_OFF),
        ((Digits("7"),), Disposition.BREAK_OFF),
        ((Digits("4"),), Disposition.PARTIAL),
        ((Digits("4"), Digits("3#")), Disposition.COMPLETE),  # only the optional comment was left
    ],
)
def test_hangup_ends_with_what_was_answered(before, outcome):
    hung_up = converse([*before, Hangup()])[-1]

    assert hung_up.outcome is outcome
    assert hung_up.say == [] and hung_up.answers == [] and hung_up.ask is None


def test_input_of_the_wrong_kind_counts_as_invalid():
    results = converse([SmsReply(grade=Grade.SATISFIED), RecordingSkipped()])

    assert results[1].say == [text("invalid"), RATING_ZH]
    assert results[2].outcome is Disposition.BREAK_OFF


def test_a_finished_conversation_ignores_further_input(script):
    done = converse(keys_pressed("1"))[-1]

    again = step(script, ZH, done.state, Digits("5"))

    assert again == StepResult(state=done.state, say=[], ask=None, outcome=Disposition.COMPLETE)


def test_sequence_number_increments_on_each_step():
    results = converse(keys_pressed("9", "7", "4", "2#"))

    assert [r.state["seq"] for r in results] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"version": 99},
        {**start(default_script(), ZH).state, "node": "nowhere"},
        {**start(default_script(), ZH).state, "seq": -1},
        {**start(default_script(), ZH).state, "grade": "meh"},
        {**start(default_script(), ZH).state, "answered": "rating"},
    ],
)
def test_a_corrupt_state_is_refused(script, broken):
    with pytest.raises(ValueError, match="not a survey state"):
        step(script, ZH, broken, Digits("1"))


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ({}, "version None"),
        (["rating"], "list"),
        ({**start(default_script(), ZH).state, "version": 99}, "version 99"),
        ({**start(default_script(), ZH).state, "node": "nowhere"}, "node 'nowhere'"),
        ({**start(default_script(), ZH).state, "node": ["rating"]}, "node \\['rating'\\]"),
    ],
)
def test_what_a_corrupt_state_awaits_is_refused_too(broken, named):
    with pytest.raises(ValueError, match=f"not a survey state: {named}"):
        awaiting(broken)


# -- SMS ------------------------------------------------------------------------------------------


def sms(*replies: SmsReply, ctx: ItemContext = ZH, flow: Flow = Flow.SURVEY) -> list[StepResult]:
    return converse(replies, ctx=ctx, flow=flow, channel=Channel.SMS)


def test_sms_invite_names_the_item_and_the_opt_out_line():
    (invite,) = sms()

    (message,) = invite.say
    assert message.startswith("【杭州市】您好，您于2024年3月5日在市场监督管理局办理了企业设立登记")
    assert message.endswith("回复TD退订")
    assert invite.ask == Ask("sms_reply")
    assert awaiting(invite.state) == "rating"


def test_sms_reply_with_grade_categories_and_comment_completes_in_one_step():
    _, done = sms(
        SmsReply(grade=Grade.DISSATISFIED, categories=(Category.DELAY, Category.COLD), comment="太慢了")
    )

    assert done.answers == [
        AnswerEvent("rating", "dissatisfied"),
        AnswerEvent("categories", "delay,cold"),
        AnswerEvent("comment", "太慢了"),
    ]
    assert done.outcome is Disposition.COMPLETE and done.say == [text("sms_thanks")]


def test_sms_good_grade_completes_and_ignores_categories():
    _, done = sms(SmsReply(grade=Grade.SATISFIED, categories=(Category.STUCK,)))

    assert done.answers == [AnswerEvent("rating", "satisfied")]
    assert done.outcome is Disposition.COMPLETE


def test_sms_bad_grade_without_categories_asks_for_them():
    _, asked, done = sms(
        SmsReply(grade=Grade.VERY_DISSATISFIED, comment="排队太久"),
        SmsReply(categories=(Category.DELAY,)),
    )

    assert asked.say == [text("sms_categories")] and asked.ask == Ask("sms_reply")
    assert awaiting(asked.state) == "categories"
    assert done.answers == [AnswerEvent("categories", "delay")]
    assert done.outcome is Disposition.COMPLETE


def test_sms_comment_in_words_answers_the_categories_question():
    results = sms(SmsReply(grade=Grade.DISSATISFIED), SmsReply(comment="窗口人员态度不好"))

    assert results[-1].outcome is Disposition.COMPLETE
    assert answers_of(results) == {"rating": "dissatisfied", "comment": "窗口人员态度不好"}


def test_sms_ambiguous_reply_gets_one_reprompt_then_break_off():
    invite, clarify, ended = sms(SmsReply(ambiguous=True), SmsReply())

    assert clarify.say == [text("sms_clarify"), invite.say[0]]
    assert not clarify.done
    assert ended.outcome is Disposition.BREAK_OFF and ended.say == [text("sms_thanks")]


def test_sms_ambiguous_after_rating_ends_as_partial():
    results = sms(
        SmsReply(grade=Grade.DISSATISFIED),
        SmsReply(ambiguous=True, categories=(Category.STUCK,)),
        SmsReply(ambiguous=True),
    )

    assert results[2].say == [text("sms_clarify"), text("sms_categories")]
    assert results[-1].outcome is Disposition.PARTIAL
    assert answers_of(results) == {"rating": "dissatisfied"}


def test_sms_ambiguous_reply_keeps_its_free_text():
    _, clarify = sms(SmsReply(ambiguous=True, comment="还行吧 不太好"))

    assert clarify.answers == [AnswerEvent("comment", "还行吧 不太好")]
    assert not clarify.done


def test_sms_free_text_of_later_replies_adds_to_the_comment():
    _, first, second, third = sms(
        SmsReply(ambiguous=True, comment="第一条"),
        SmsReply(grade=Grade.DISSATISFIED, comment="第二条"),
        SmsReply(categories=(Category.SHIRK,), comment="第三条"),
    )

    assert first.answers == [AnswerEvent("comment", "第一条")]
    assert second.answers == [
        AnswerEvent("rating", "dissatisfied"),
        AnswerEvent("comment", "第二条", more=True),
    ]
    assert third.answers == [AnswerEvent("categories", "shirk"), AnswerEvent("comment", "第三条", more=True)]
    assert third.outcome is Disposition.COMPLETE


def test_sms_opt_out_refuses_and_confirms():
    _, refused = sms(SmsReply(optout=True, grade=Grade.SATISFIED))

    assert refused.optout and refused.outcome is Disposition.REFUSED
    assert refused.say == [text("sms_optout")] and refused.answers == []


def test_sms_not_eligible():
    _, ended = sms(SmsReply(not_eligible=True))

    assert ended.outcome is Disposition.NOT_ELIGIBLE
    assert ended.answers == [AnswerEvent("eligible", "no")]
    assert ended.say == [text("sms_not_eligible")]


def test_sms_keypad_input_counts_as_invalid():
    assert sms()[0].state["channel"] == "sms"
    results = converse([Digits("1")], channel=Channel.SMS)
    assert results[-1].say[0] == text("sms_clarify")


def test_sms_survey_closed_without_reply_is_break_off():
    assert sms(Hangup())[-1].outcome is Disposition.BREAK_OFF


# -- verification visit ---------------------------------------------------------------------------


def test_verification_call_asks_whether_the_handling_satisfied():
    first = converse([], flow=Flow.VERIFICATION)[0]

    greeting, question = first.say
    assert "市场监督管理局" in greeting and "企业设立登记" in greeting
    assert question == "您对处理结果满意请按1，不满意请按2，重听请按9。"
    assert first.ask == Ask("digits", num_digits=1, timeout=8)
    assert awaiting(first.state) == "verification"


@pytest.mark.parametrize(("pressed", "verdict"), [("1", "satisfied"), ("2", "dissatisfied")])
def test_verification_answer_completes(pressed, verdict):
    results = converse(keys_pressed("9", pressed), flow=Flow.VERIFICATION)

    assert results[1].say == results[0].say
    assert results[-1].answers == [AnswerEvent("verification", verdict)]
    assert results[-1].outcome is Disposition.COMPLETE
    assert results[-1].say == [text("thanks")]


def test_verification_invalid_twice_is_break_off():
    results = converse(keys_pressed("3", ""), flow=Flow.VERIFICATION)

    assert results[1].say == [text("invalid"), text("verification")]
    assert results[-1].outcome is Disposition.BREAK_OFF


def test_verification_zero_opts_out():
    last = converse(keys_pressed("0"), flow=Flow.VERIFICATION)[-1]
    assert last.optout and last.outcome is Disposition.REFUSED


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (SmsReply(verified=True), "satisfied"),
        (SmsReply(verified=False), "dissatisfied"),
        (SmsReply(grade=Grade.VERY_DISSATISFIED), "dissatisfied"),
        (SmsReply(grade=Grade.BASICALLY_SATISFIED), "satisfied"),
    ],
)
def test_verification_by_sms(reply, verdict):
    invite, done = sms(reply, flow=Flow.VERIFICATION)

    assert invite.say == [text("sms_verification")] and invite.say[0].endswith("回复TD退订")
    assert done.answers == [AnswerEvent("verification", verdict)]
    assert done.outcome is Disposition.COMPLETE


def test_verification_by_sms_ambiguous_reprompts():
    _, clarify = sms(SmsReply(ambiguous=True), flow=Flow.VERIFICATION)
    assert clarify.say == [text("sms_clarify"), text("sms_verification")]


def test_unknown_flow_is_refused(script):
    with pytest.raises(ValueError):
        start(script, ZH, "follow_up")


# -- scripts from TOML ----------------------------------------------------------------------------


def default_data() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_TOML.read_text(encoding="utf-8"))


def test_default_script_settings(script):
    assert script.name == "default" and script.default_language == "zh-CN"
    assert set(script.prompts) == {"zh-CN", "en-US"}
    assert script.grade_digits["1"] is Grade.VERY_SATISFIED
    assert script.grade_digits["5"] is Grade.VERY_DISSATISFIED
    assert script.category_digits["6"] is Category.POOR
    assert (script.keys.optout, script.keys.not_eligible, script.keys.repeat) == ("0", "8", "9")
    assert (script.ask_categories, script.ask_comment) == (AskWhen.BAD, AskWhen.BAD)
    assert (script.comment_max_seconds, script.max_invalid) == (60, 2)
    assert default_script() is script


def test_load_script_from_a_path_and_from_text(tmp_path):
    copy = tmp_path / "site.toml"
    copy.write_text(DEFAULT_TOML.read_text(encoding="utf-8"), encoding="utf-8")

    assert load_script(copy) == load_script(str(copy)) == default_script()


def test_a_missing_prompt_is_named():
    head, english = DEFAULT_TOML.read_text(encoding="utf-8").split("[prompts.en-US]")
    english = "\n".join(line for line in english.splitlines() if not line.startswith("rating ="))

    with pytest.raises(ScriptError, match=r"^prompts\.en-US\.rating missing$"):
        load_script(head + "[prompts.en-US]" + english)


def test_invalid_toml_is_reported():
    with pytest.raises(ScriptError, match="<text>"):
        load_script("[prompts\n")


def test_custom_digit_map_and_keys_from_toml():
    data = default_data()
    data["grades"] = {"5": "very_satisfied", "4": "satisfied", "3": "basically_satisfied",
                      "2": "dissatisfied", "1": "very_dissatisfied"}  # fmt: skip
    data["categories"] = {"1": "cold", "2": "delay"}
    data["keys"] = {"optout": "*", "not_eligible": "", "repeat": "0"}
    custom = parse_script(data)

    assert converse(keys_pressed("5"), script=custom)[-1].answers == [AnswerEvent("rating", "very_satisfied")]
    results = converse(keys_pressed("1", "21#"), script=custom)
    assert answers_of(results) == {"rating": "very_dissatisfied", "categories": "delay,cold"}
    assert converse(keys_pressed("*"), script=custom)[-1].optout
    assert converse(keys_pressed("8"), script=custom)[-1].say[0] == text("invalid")  # turned off
    assert converse(keys_pressed("0"), script=custom)[-1].say[0] == text("greeting")


def test_settings_choose_which_grades_get_categories_and_comment():
    data = default_data()
    data["settings"] = {"ask_categories": "never", "ask_comment": "always", "comment_max_seconds": 30}
    custom = parse_script(data)

    bad = converse(keys_pressed("5"), script=custom)[-1]
    assert bad.ask == Ask("record", finish_on_key="#", timeout=8, max_length=30)
    assert "最长30秒" in bad.say[0]
    good = converse(keys_pressed("1", "#"), script=custom)
    assert good[1].ask is not None and good[1].ask.kind == "record"
    assert good[-1].outcome is Disposition.COMPLETE


def test_max_invalid_is_a_setting():
    data = default_data()
    data["settings"] = {"max_invalid": 3}
    results = converse(keys_pressed("7", "7", "7"), script=parse_script(data))

    assert [r.done for r in results] == [False, False, False, True]


def _without(section: str, key: str):
    def mutate(data: dict[str, Any]) -> None:
        del data[section][key]

    return mutate


def _set(path: str, value: Any):
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        table = data
        for name in parents:
            table = table.setdefault(name, {})
        table[last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_without("prompts", "zh-CN"), r"^prompts\.zh-CN missing \(script\.default_language\)$"),
        (_set("prompts/en-US/greting", "x"), r"^prompts\.en-US\.greting is not a known key$"),
        (
            _set("prompts/en-US/thanks", "Bye {name}"),
            r"^prompts\.en-US\.thanks: unknown placeholder \{name\}",
        ),
        (_set("prompts/en-US/thanks", "Bye {org"), r"^prompts\.en-US\.thanks: "),
        (_set("prompts/en-US/thanks", "Bye {}"), r"^prompts\.en-US\.thanks: unknown placeholder \{\}"),
        (_set("prompts/en-US/date", "{org}"), r"^prompts\.en-US\.date: unknown placeholder \{org\}"),
        (_set("prompts/en-US/thanks", 3), r"^prompts\.en-US\.thanks must be a string$"),
        (_set("prompts/en-US/thanks", "  "), r"^prompts\.en-US\.thanks is empty$"),
        (_set("prompts/en-US", "x"), r"^prompts\.en-US must be a table$"),
        (_set("sections", {}), r"^sections is not a known key$"),
        (_set("settings/max_invalid", 0), r"^settings\.max_invalid must be an integer of at least 1$"),
        (_set("settings/timeout_seconds", "8"), r"^settings\.timeout_seconds must be an integer"),
        (
            _set("settings/ask_comment", "sometimes"),
            r"^settings\.ask_comment must be one of bad, always, never",
        ),
        (_set("settings/colour", 1), r"^settings\.colour is not a known key$"),
        (_set("keys/optout", "00"), r"^keys\.optout must be one keypad key"),
        (_set("keys/repeat", "0"), r"^keys\.repeat '0' is already keys\.optout$"),
        (_set("keys/finish", ""), r"^keys\.finish must be one keypad key"),
        (_set("grades/0", "satisfied"), r"^grades\.0: '0' is already keys\.optout$"),
        (_set("grades/6", "satisfied"), r"^grades\.6: satisfied has two keys$"),
        (_set("grades/5", "awful"), r"^grades\.5 must be one of very_satisfied"),
        (_without("grades", "5"), r"^grades: very_dissatisfied has no key$"),
        (_set("grades", {}), r"^grades is empty$"),
        (_set("categories/12", "stuck"), r"^categories\.12: a key must be one keypad key"),
        (_set("categories/9", "stuck"), r"^categories\.9: '9' is already keys\.repeat$"),
        (_without("verification", "2"), r"^verification: dissatisfied has no key$"),
        (_set("script/default_language", 5), r"^script\.default_language must be a string$"),
    ],
)
def test_script_errors_name_the_key(mutate, message):
    data = default_data()
    mutate(data)

    with pytest.raises(ScriptError, match=message):
        parse_script(data)


def test_prompts_are_required():
    data = default_data()
    del data["prompts"]
    with pytest.raises(ScriptError, match=r"^prompts missing$"):
        parse_script(data)


def test_a_minimal_script_needs_only_prompts():
    data = default_data()
    minimal = parse_script(
        {"prompts": {"en-US": data["prompts"]["en-US"]}, "script": {"default_language": "en-US"}}
    )

    assert minimal.grade_digits == default_script().grade_digits
    assert minimal.resolve_language("zh-CN") == "en-US"
    assert start(minimal, ZH).say[1].startswith("How satisfied")


def test_literal_braces_in_a_prompt():
    data = default_data()
    data["prompts"]["en-US"]["thanks"] = "Thanks {{really}} from {org}."
    assert parse_script(data).render("thanks", EN) == "Thanks {really} from Hangzhou."


# -- properties -----------------------------------------------------------------------------------

ANY_DIGITS = st.one_of(
    st.sampled_from(["", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "#", "*", "13#", "7#", " 4 "]),
    st.text(alphabet="0123456789*#", max_size=6),
    st.text(max_size=4),
)
ANY_REPLY = st.builds(
    SmsReply,
    grade=st.none() | st.sampled_from(Grade),
    categories=st.lists(st.sampled_from(Category), max_size=4).map(tuple),
    comment=st.none() | st.text(max_size=8),
    optout=st.booleans(),
    ambiguous=st.booleans(),
    not_eligible=st.booleans(),
    verified=st.none() | st.booleans(),
)
# Replies that keep the conversation going more often: no opt-out, rarely not eligible.
CONTINUING_REPLY = st.builds(
    SmsReply,
    grade=st.none() | st.sampled_from(Grade),
    categories=st.lists(st.sampled_from(Category), max_size=4).map(tuple),
    comment=st.none() | st.sampled_from(["", " ", "太慢了", "ok"]),
    ambiguous=st.booleans(),
    not_eligible=st.sampled_from([False] * 9 + [True]),
    verified=st.none() | st.booleans(),
)
ANY_INPUT: st.SearchStrategy[Input] = st.one_of(
    ANY_DIGITS.map(Digits),
    ANY_DIGITS.map(Digits),
    st.builds(Recording, url=st.sampled_from(["", "https://r/RE1"]), duration=st.integers(-1, 120)),
    st.just(RecordingSkipped()),
    ANY_REPLY,
    st.just(Hangup()),
)
INVALID_INPUT: st.SearchStrategy[Input] = st.one_of(
    st.sampled_from(["", "7", "*", "#", "7#", "##", "x"]).map(Digits),
    st.just(SmsReply(ambiguous=True)),
    st.just(SmsReply()),
    st.just(RecordingSkipped()),
)
FLOWS = st.sampled_from(Flow)
CHANNELS = st.sampled_from(Channel)
CONTEXTS = st.sampled_from([ZH, EN])


@settings(max_examples=200, deadline=None)
@given(inputs=st.lists(ANY_INPUT, max_size=30), flow=FLOWS, channel=CHANNELS, ctx=CONTEXTS)
def test_random_inputs_never_raise_and_always_end(inputs, flow, channel, ctx):
    script = default_script()
    results = converse(inputs, ctx=ctx, flow=flow, channel=channel)

    answers_of(results)  # no question answered twice
    bound = 3 * script.max_invalid + script.max_repeats
    for index, result in enumerate(results):
        assert result.done == (result.ask is None) == (result.outcome is not None)
        assert result.done or result.say, "a question is always said"
        if not result.done:
            assert index < bound
        if index > 0 and results[index - 1].done:
            assert result.say == [] and result.answers == [] and not result.optout
        else:
            assert result.optout == (result.outcome is Disposition.REFUSED)


@settings(max_examples=100, deadline=None)
@given(inputs=st.lists(CONTINUING_REPLY, max_size=8), flow=FLOWS)
def test_random_sms_replies_never_answer_a_question_twice(inputs, flow):
    results = sms(*inputs, flow=flow)

    answers_of(results)
    assert all(r.ask == Ask("sms_reply") for r in results if not r.done)
    assert all(len(r.say) <= 2 for r in results)


@settings(max_examples=100, deadline=None)
@given(inputs=st.lists(INVALID_INPUT, min_size=10, max_size=10), flow=FLOWS, channel=CHANNELS)
def test_invalid_inputs_end_the_conversation_within_max_invalid_steps(inputs, flow, channel):
    script = default_script()
    results = converse(inputs, flow=flow, channel=channel)

    assert [r.done for r in results[: script.max_invalid + 1]] == [False] * script.max_invalid + [True]
    assert results[script.max_invalid].outcome is Disposition.BREAK_OFF
    assert answers_of(results).keys() <= {"comment"}


def test_question_repeats_what_the_conversation_awaits_without_moving_it():
    script, ctx = default_script(), ZH
    invite, asked = sms(SmsReply(grade=Grade.DISSATISFIED))
    assert question(script, ctx, asked.state) == [text("sms_categories")]
    assert question(script, ctx, invite.state) == invite.say
    voice = converse(keys_pressed("4"))
    assert question(script, ctx, voice[-1].state) == [script.render("categories", ctx)]
    ended = sms(SmsReply(grade=Grade.SATISFIED))[-1]
    assert ended.done and question(script, ctx, ended.state) == []

