"""SMS segment counting (ivr/sms_text.py)."""

from __future__ import annotations

import pytest

from ivr import sms_text
from ivr.sms_text import SegmentInfo, SmsEncoding, count_segments

GSM, UCS = SmsEncoding.GSM_7, SmsEncoding.UCS_2
SURVEY_ZH = (
    "您好，这里是渝中区政务服务中心回访。您于3月5日在市场监管局办理了营业执照变更登记。"
    "非常满意请回复1，满意回复2，基本满意回复3，不满意回复4，非常不满意回复5。回复TD退订"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SegmentInfo(GSM, 0, 0)),
        ("Reply 1-5. Reply STOP to opt out.", SegmentInfo(GSM, 33, 1)),
        ("a" * 160, SegmentInfo(GSM, 160, 1)),
        ("a" * 161, SegmentInfo(GSM, 161, 2)),
        ("a" * 306, SegmentInfo(GSM, 306, 2)),
        ("a" * 307, SegmentInfo(GSM, 307, 3)),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", SegmentInfo(GSM, 42, 1)),
        ("€", SegmentInfo(GSM, 2, 1)),
        ("^{}\\[~]|€", SegmentInfo(GSM, 18, 1)),
        ("a" * 158 + "€", SegmentInfo(GSM, 160, 1)),
        ("a" * 159 + "€", SegmentInfo(GSM, 161, 2)),
        # An escape pair is never split: the € moves to the second part.
        ("a" * 152 + "€" + "a" * 152, SegmentInfo(GSM, 306, 3)),
        ("中" * 70, SegmentInfo(UCS, 70, 1)),
        ("中" * 71, SegmentInfo(UCS, 71, 2)),
        ("中" * 134, SegmentInfo(UCS, 134, 2)),
        ("中" * 135, SegmentInfo(UCS, 135, 3)),
        ("a" * 159 + "中", SegmentInfo(UCS, 160, 3)),
        ("😀", SegmentInfo(UCS, 2, 1)),
        ("😀" * 35, SegmentInfo(UCS, 70, 1)),
        ("😀" * 35 + "a", SegmentInfo(UCS, 71, 2)),
        # A surrogate pair is never split either.
        ("中" * 66 + "😀" + "中" * 66, SegmentInfo(UCS, 134, 3)),
        ("ç", SegmentInfo(UCS, 1, 1)),  # only the capital Ç is in the GSM table
        ("\x1b", SegmentInfo(UCS, 1, 1)),  # the escape code itself is not a character
    ],
)
def test_segments_follow_gsm_03_38(text, expected):
    assert count_segments(text) == expected


def test_typical_chinese_survey_text_takes_two_segments():
    info = count_segments(SURVEY_ZH)
    assert 70 < len(SURVEY_ZH) <= 100
    assert info == SegmentInfo(UCS, len(SURVEY_ZH), 2)


def test_encoding_is_a_plain_string_for_storage():
    assert count_segments("hi").encoding == "GSM-7"
    assert count_segments("你好").encoding == "UCS-2"


def test_gsm_tables_have_their_standard_size():
    assert len(sms_text._GSM_BASIC) == 127  # 128 codes less the escape
    assert len(sms_text._GSM_EXTENSION) == 10
