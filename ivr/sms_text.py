"""Count the segments an outbound SMS text is sent as (GSM 03.38 / 3GPP TS 23.038).

Written here rather than taken from PyPI: the candidates there are a bare codec (gsm0338), releases
unchanged since 2011-2020 (smspdu, smsutil), or a 0.0.1 release built on pydantic-1 validators that
warn under pydantic 2 (sms-counter); the rules fit in a few lines.

A text is GSM-7 when every character is in the default alphabet or its extension table; an extension
character (^ { } \\ [ ~ ] | € and form feed) is sent as escape + code, two septets. Any other text is
sent as UCS-2 and counted in UTF-16 code units, so an emoji outside the BMP takes two. One segment
holds 160 septets or 70 units; each part of a longer message gives room to the concatenation header
and holds 153 septets or 67 units, and a two-unit character is never split across two parts.
Chinese SMS providers bill the same way (70 characters, 67 a part in a long message).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The default alphabet, less the escape code 0x1B that introduces the extension table.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


class SmsEncoding(StrEnum):
    """How the text is encoded for the radio network."""

    GSM_7 = "GSM-7"  # the GSM 03.38 default alphabet, seven bits a character
    UCS_2 = "UCS-2"  # sixteen bits a code unit: Chinese, emoji, anything else


# (one segment, each part of a multipart message), in septets or UTF-16 code units.
_LIMITS = {SmsEncoding.GSM_7: (160, 153), SmsEncoding.UCS_2: (70, 67)}


@dataclass(frozen=True)
class SegmentInfo:
    """The encoding, length and segment count of an SMS text."""

    encoding: SmsEncoding
    characters: int  # septets for GSM-7 (extension characters count 2), UTF-16 units for UCS-2
    segments: int  # 0 for an empty text


def count_segments(text: str) -> SegmentInfo:
    """Count the encoding, length and number of segments of an outbound SMS text."""
    if all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in text):
        encoding = SmsEncoding.GSM_7
        widths = [2 if char in _GSM_EXTENSION else 1 for char in text]
    else:
        encoding = SmsEncoding.UCS_2
        widths = [2 if ord(char) > 0xFFFF else 1 for char in text]
    total = sum(widths)
    single, part = _LIMITS[encoding]
    if total <= single:
        return SegmentInfo(encoding, total, 1 if total else 0)
    segments, room = 1, part
    for width in widths:
        if width > room:
            segments, room = segments + 1, part
        room -= width
    return SegmentInfo(encoding, total, segments)
