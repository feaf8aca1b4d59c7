"""The outbound survey text: names the item, lists the reply digits, ends with the opt-out line."""

from __future__ import annotations

import logging

import pytest

from ivr.conversation import conversation_state
from ivr.sms_outbound import compose_sms, segment_warning, with_opt_out_line
from ivr.sms_text import count_segments
from models.surveys import SurveyState


def test_composed_text_names_the_item_lists_the_digits_and_ends_with_the_opt_out_line(
    session, settings, create_survey
):
    survey, _ = create_survey("sms")
    text = compose_sms(session, survey, settings)
    assert text.startswith("【示范县政务服务中心】")
    assert "税务局" in text and "契税申报" in text and "2026年11月10日" in text
    for digit in "12345":
        assert digit in text
    assert "回复1非常满意" in text and "5非常不满意" in text and "回复8" in text
    assert text.endswith("回复TD退订")
    assert text.count("退订") == 1
    assert segment_warning(text) is None  # two segments: within the default limit


def test_composing_opens_the_sms_conversation_at_the_rating(session, settings, create_survey):
    survey, _ = create_survey("sms")
    compose_sms(session, survey, settings)
    state = conversation_state(survey, "sms")
    assert state is not None and state["node"] == "rating" and state["channel"] == "sms"
    assert survey.state == SurveyState.IN_PROGRESS


def test_english_text_names_the_item_and_ends_with_an_opt_out_line(session, settings, create_survey):
    survey, _ = create_survey("sms", language="en-US")
    text = compose_sms(session, survey, settings)
    assert "November 10, 2026" in text and "税务局" in text and "契税申报" in text
    assert "Reply 1 very satisfied" in text
    assert text.endswith("Reply STOP to opt out.")  # the script's own line: nothing appended


def test_verification_visit_text(session, settings, create_survey):
    survey, _ = create_survey("sms", kind="verification")
    text = compose_sms(session, survey, settings)
    assert "相关部门已整改答复" in text and "满意请回复1" in text and text.endswith("回复TD退订")
    assert conversation_state(survey, "sms")["node"] == "verification"


def test_campaign_text_fills_the_item_and_gets_the_opt_out_line(
    session, settings, create_survey, create_campaign
):
    template = "【{org}】请评价{date}在{department}办理的{matter}：回复1-5"
    campaign = create_campaign(config={"script": "default", "sms_text": {"zh-CN": template}})
    survey, _ = create_survey("sms", campaign=campaign)
    text = compose_sms(session, survey, settings)
    assert text == "【示范县政务服务中心】请评价2026年11月10日在税务局办理的契税申报：回复1-5。回复TD退订"
    assert conversation_state(survey, "sms")["node"] == "rating"


def test_verification_visit_asks_its_own_question_even_with_a_campaign_text(
    session, settings, create_survey, create_campaign
):
    # The campaign's text lists the rating digits; a verification reply is read as 1 yes / 2 no, so
    # sending that text would turn "2 满意" into a dissatisfied verdict.
    template = "请评价{date}在{department}办理的{matter}：1非常满意 2满意 3基本满意 4不满意 5非常不满意"
    campaign = create_campaign(config={"script": "default", "sms_text": {"zh-CN": template}})
    survey, _ = create_survey("sms", campaign=campaign, kind="verification")
    text = compose_sms(session, survey, settings)
    assert "相关部门已整改答复" in text and "满意请回复1" in text and "非常满意" not in text
    assert conversation_state(survey, "sms")["node"] == "verification"


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("请回复1-5。", "zh-CN", "请回复1-5。回复TD退订"),
        ("请回复1-5", "zh-CN", "请回复1-5。回复TD退订"),
        ("请回复1-5。回复TD退订", "zh-CN", "请回复1-5。回复TD退订"),
        ("请回复1-5，回复 td 退订。", "zh-CN", "请回复1-5，回复 td 退订。"),
        ("Reply 1-5.", "en-US", "Reply 1-5. Reply TD to opt out."),
        ("Reply 1-5", "en-US", "Reply 1-5. Reply TD to opt out."),
        ("Reply 1-5. Reply STOP to opt out", "en-US", "Reply 1-5. Reply STOP to opt out"),
        ("", "zh-CN", "回复TD退订"),
        ("Hello", "fr-FR", "Hello。回复TD退订"),
    ],
)
def test_opt_out_line_is_appended_once(text, language, expected):
    assert with_opt_out_line(text, language) == expected


@pytest.mark.parametrize(
    ("text", "limit", "warns"),
    [
        ("a" * 160, 1, False),
        ("a" * 161, 1, True),
        ("a" * 306, 2, False),
        ("a" * 307, 2, True),
        ("办" * 70, 1, False),
        ("办" * 71, 1, True),
        ("办" * 134, 2, False),
        ("办" * 135, 2, True),
        ("", 1, False),
    ],
)
def test_segment_warning_names_the_count_and_the_limit(text, limit, warns):
    warning = segment_warning(text, limit)
    assert (warning is not None) == warns
    if warns:
        segments = count_segments(text).segments
        assert f"{segments} SMS segments" in warning and f"limit of {limit}" in warning


def test_segment_warning_defaults_to_two_segments():
    assert segment_warning("办" * 134) is None
    assert "3 SMS segments" in segment_warning("办" * 135)


def test_compose_logs_a_warning_over_the_campaigns_limit(
    session, settings, create_survey, create_campaign, caplog
):
    campaign = create_campaign(config={"script": "default", "sms_max_segments": 1})
    survey, _ = create_survey("sms", campaign=campaign)
    with caplog.at_level(logging.WARNING, logger="ivr.sms_outbound"):
        text = compose_sms(session, survey, settings)
    assert count_segments(text).segments == 2
    assert f"survey {survey.id}: the survey text is 2 SMS segments" in caplog.text
    assert "over the limit of 1" in caplog.text
