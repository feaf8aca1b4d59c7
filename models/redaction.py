"""Masking personal data inside stored texts: phone numbers, a citizen's name, recording URLs.

Used by the retention purge (models/retention.py). Phone numbers are found with phonenumbers'
matcher (any width of digits, separators, +86) and masked as everywhere else (models.phones).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import phonenumbers

from models.phones import mask_phone

REDACTED_NAME = "***"
PURGED_RECORDING = "[recording purged]"
# Names shorter than this are not searched for in free text (one character matches too much).
MIN_NAME_CHARS = 2
_URL_ONLY = re.compile(r"^\s*https?://\S+\s*$", re.IGNORECASE)


def redact_text(text: str, *, region: str, names: Iterable[str] = (), urls: Iterable[str] = ()) -> str:
    """Return `text` with recording URLs replaced, names hidden and phone numbers masked."""
    for url in urls:
        if url:
            text = text.replace(url, PURGED_RECORDING)
    for name in names:
        name = (name or "").strip()
        if len(name) >= MIN_NAME_CHARS:
            text = text.replace(name, REDACTED_NAME)
    pieces: list[str] = []
    end = 0
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        pieces.append(text[end : match.start])
        pieces.append(_mask_match(match.raw_string))
        end = match.end
    pieces.append(text[end:])
    return "".join(pieces)


def _mask_match(raw: str) -> str:
    # The matcher may take an opening bracket "(" or "（" into the number: keep what is not the number.
    digits = [i for i, ch in enumerate(raw) if ch.isdigit()]
    if not digits:
        return raw
    first = digits[0] - 1 if digits[0] > 0 and raw[digits[0] - 1] in "+＋" else digits[0]
    head, tail = raw[:first], raw[digits[-1] + 1 :]
    return head + (mask_phone(raw[first : digits[-1] + 1]) or REDACTED_NAME) + tail


def is_url_only(text: str | None) -> bool:
    """Return whether a stored value is nothing but a URL (a voice comment stores its recording's)."""
    return bool(text) and _URL_ONLY.match(text or "") is not None


def mask_number(value: str | None) -> str | None:
    """Return a stored number masked (idempotent: a masked number stays as it is)."""
    if not value or "*" in value:
        return value
    return mask_phone(value) or None
