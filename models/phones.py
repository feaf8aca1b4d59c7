"""Phone numbers as service-centre systems export them: normalise to E.164, classify, mask.

Pure Python on top of `phonenumbers`: no SQLAlchemy, Flask or twilio, so importers, the
scheduler and the console can all share it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
    shortnumberinfo,
)


class PhoneKind(StrEnum):
    """What we may do with a number."""

    MOBILE = "mobile"  # reachable by voice and SMS
    FIXED = "fixed"  # landline: voice only
    INVALID = "invalid"  # never dialled; NormalizedPhone.reason says why


class NormalizedPhone(NamedTuple):
    """The outcome of normalising one raw phone field (a tuple: cheap to make a million of)."""

    raw: str  # the field as given ("" for None)
    e164: str | None  # "+8613812345678", or None when invalid
    kind: PhoneKind
    reason: str | None  # why the field is invalid, None when valid
    extension: str | None = None  # "123" when an extension was split off

    @property
    def is_mobile(self) -> bool:
        """Tell whether the number can receive SMS."""
        return self.kind is PhoneKind.MOBILE


PREMIUM_REASON_CN = "premium/toll-free number 400/800 not allowed"
PREMIUM_REASON = "premium/toll-free/shared-cost number not allowed"

# Office systems write extensions in Chinese as often as in English; more than six digits
# after the marker is more likely a second number than an extension.
_EXTENSION = re.compile(
    r"(?:转|轉|分机|分機|extension|ext\.?|x|#)[\s\-:.]*([0-9]{1,6})(?![0-9])",
    re.IGNORECASE | re.ASCII,
)
# Control characters in the raw text become separators (a newline parts two numbers), so
# one of them can stand for "extension follows" while we cut the field into candidates.
_EXT_MARK = "\x1f"
# Characters that may sit inside one written number; anything else separates numbers.
_SEPARATOR = re.compile(r"[^0-9+\s.()\-\x1f]+", re.ASCII)
# NFKC folds full-width forms, but not these dashes that word processors produce.
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"))
_PREMIUM_TYPES = frozenset(
    {
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.UAN,
    }
)
# Personal and VoIP numbers ring a phone, but we cannot count on them taking SMS.
_FIXED_TYPES = frozenset({PhoneNumberType.FIXED_LINE, PhoneNumberType.VOIP, PhoneNumberType.PERSONAL_NUMBER})
_POSSIBILITY_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong length",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
}
_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
# No numbering plan has more than 15 digits plus an international prefix; longer is noise.
_MAX_DIGITS = 18


@dataclass(frozen=True)
class _Candidate:
    digits: str
    has_plus: bool
    extension: str | None
    text: str  # the candidate as written, for the trailing-dash extension fallback


def normalize_phone(raw: str | None, *, region: str = "CN", area_code: str | None = None) -> NormalizedPhone:
    """Normalise a raw phone field to E.164, keeping the first valid number it holds."""
    # Spreadsheet importers may hand us a cell that is an int; never raise on it.
    text = "" if raw is None else str(raw)
    area = _area_digits(area_code)
    if region == "CN":
        fast = _plain_cn_mobile(text) or _plain_cn_number(text, area)
        if fast is not None:
            return fast
    return _normalize_general(text, region, area)


def _normalize_general(text: str, region: str, area: str) -> NormalizedPhone:
    first_failure: NormalizedPhone | None = None
    for candidate in _candidates(text):
        result = _evaluate(candidate, text, region, area)
        if result.e164 is not None:
            return result
        first_failure = first_failure or result
    if first_failure is not None:
        return first_failure
    has_digits = re.search(r"[0-9]", _fold(text), flags=re.ASCII) is not None
    return _invalid(text, "extension without a number" if has_digits else "no digits")


@lru_cache(maxsize=64)
def _area_digits(area_code: str | None) -> str:
    return re.sub(r"[^0-9]", "", area_code or "", flags=re.ASCII).lstrip("0")


# Most service-centre numbers are plain Chinese mobiles: match them against phonenumbers' own CN
# mobile pattern directly, skipping the general parser (a 15x speed-up on bulk imports).
_PLAIN_MOBILE = re.compile(
    r"\s*(?:\+86|0086|86)?[\s\-]*(1[0-9]{2})[\s\-]?([0-9]{4})[\s\-]?([0-9]{4})\s*", re.ASCII
)
_CN_MOBILE = re.compile(
    str(phonenumbers.PhoneMetadata.metadata_for_region("CN").mobile.national_number_pattern)  # type: ignore[union-attr]
)


def _plain_cn_mobile(text: str) -> NormalizedPhone | None:
    if len(text) == 11 and text.isascii() and text.isdigit():
        national = text  # the most common spelling by far
    else:
        match = _PLAIN_MOBILE.fullmatch(text)
        if match is None:
            return None
        national = match.group(1) + match.group(2) + match.group(3)
    if _CN_MOBILE.fullmatch(national) is None:
        return None  # the general path gives the reason
    return NormalizedPhone(text, "+86" + national, PhoneKind.MOBILE, None, None)


# One number written with ASCII digits and the usual separators, e.g. "023-6888 1234", "(023)68881234",
# "+86 23 6888 1234" or "68881234": no extension marker, no second number.
_PLAIN_NUMBER = re.compile(r"[0-9 .()\-]*\+?[0-9 .()\-]+", re.ASCII)
_NOT_DIGIT = re.compile(r"[^0-9]", re.ASCII)


def _plain_cn_number(text: str, area: str) -> NormalizedPhone | None:
    """Classify a plainly written Chinese number without phonenumbers' parser, or return None.

    Gives the same answer as the general path whenever the number is valid (the whole field is its
    first candidate) and None otherwise, so every reason still comes from the general path. The
    digits are read as phonenumbers reads them: +86 or 0086 is the country code, one leading 0 is
    the trunk prefix, a 7-8 digit local number takes the configured area code.
    """
    if _PLAIN_NUMBER.fullmatch(text) is None or ("+" in text and not text.lstrip(" (").startswith("+")):
        return None
    digits = _NOT_DIGIT.sub("", text)
    if text.lstrip(" (").startswith("+"):
        if not digits.startswith("86"):
            return None
        national = digits[2:]
    elif digits.startswith("0086"):
        national = digits[4:]
    elif 7 <= len(digits) <= 8 and digits[0] not in "01":
        if not area:
            return None
        national = "0" + area + digits
    elif digits.startswith(("00", "1", "86")):
        return None  # another country, a carrier prefix, or a "86" the parser may read either way
    else:
        national = digits
    if national.startswith("0"):
        national = national[1:]
    # Leading 1 other than Beijing's 10 may be a carrier prefix the parser strips: leave it to it.
    if not 9 <= len(national) <= 12 or national[0] == "0" or (national[0] == "1" and national[1] != "0"):
        return None
    number = PhoneNumber(country_code=86, national_number=int(national))
    kind = _subscriber_kind(number, phonenumbers.number_type(number))
    if kind is None:
        return None
    return NormalizedPhone(text, "+86" + national, kind, None, None)


def mask_phone(number: str | None) -> str:
    """Mask a phone number for display, keeping only enough digits to recognise it."""
    if not number:
        return ""
    normalized = normalize_phone(number)
    if normalized.e164 is not None:
        digits = _national_digits(normalized.e164)
    else:
        # Digits of an extension would otherwise show as the "last four".
        head = _EXTENSION.split(_fold(number), maxsplit=1)[0]
        digits = re.sub(r"[^0-9]", "", head, flags=re.ASCII)
    size = len(digits)
    if size >= 10:
        keep_head, keep_tail = 3, 4
    elif size >= 7:
        keep_head, keep_tail = 0, 4
    else:
        # Never reveal more than half of a short string.
        keep_head, keep_tail = 0, min(2, size // 2)
    return digits[:keep_head] + "*" * (size - keep_head - keep_tail) + digits[size - keep_tail :]


def _fold(text: str) -> str:
    # Full-width digits, "＋" and "（）" come from Chinese input methods; NFKC folds them.
    folded = unicodedata.normalize("NFKC", text).translate(_DASHES)
    return "".join("/" if unicodedata.category(ch) == "Cc" else ch for ch in folded)


def _candidates(text: str) -> Iterator[_Candidate]:
    marked = _EXTENSION.sub(lambda m: _EXT_MARK + m.group(1), _fold(text))
    for segment in _SEPARATOR.split(marked):
        # A "+" always starts a new number: "13812345678+8613987654321".
        for piece in re.split(r"(?=\+)", segment):
            main, _, tail = piece.partition(_EXT_MARK)
            ext_match = re.match(r"[0-9]+", tail, flags=re.ASCII)
            extension = ext_match.group(0) if ext_match else None
            candidate = _candidate(main, extension)
            if candidate is None:
                continue
            yield candidate
            # "13812345678 13987654321": only split on spaces when every part could be a
            # number by itself, so a malformed "0571 8888888" is not half-used.
            tokens = main.split()
            token_digits = [re.sub(r"[^0-9]", "", t, flags=re.ASCII) for t in tokens]
            if len(tokens) > 1 and all(len(d) >= 7 for d in token_digits):
                for index, token in enumerate(tokens):
                    part = _candidate(token, extension if index == len(tokens) - 1 else None)
                    if part is not None:
                        yield part


def _candidate(text: str, extension: str | None) -> _Candidate | None:
    digits = re.sub(r"[^0-9]", "", text, flags=re.ASCII)
    if not digits:
        return None
    return _Candidate(digits, text.lstrip(" (").startswith("+"), extension, text)


def _evaluate(candidate: _Candidate, raw: str, region: str, area: str) -> NormalizedPhone:
    e164, kind, reason = _classify(candidate.digits, candidate.has_plus, region, area)
    if kind is PhoneKind.INVALID and candidate.extension is None:
        # "023-68881234-8001": a short group after the last dash may be an extension.
        head, dash, tail = candidate.text.rpartition("-")
        tail = tail.strip()
        if dash and tail.isascii() and tail.isdigit() and len(tail) <= 5:
            rest = re.sub(r"[^0-9]", "", head, flags=re.ASCII)
            rest_e164, rest_kind, _ = _classify(rest, candidate.has_plus, region, area)
            # Extensions hang off switchboards; after a mobile the dash is a typo.
            if rest_kind is PhoneKind.FIXED:
                return NormalizedPhone(raw, rest_e164, rest_kind, None, tail)
    if kind is PhoneKind.INVALID:
        return _invalid(raw, reason or "not a valid number")
    return NormalizedPhone(raw, e164, kind, None, candidate.extension)


def _classify(
    digits: str, has_plus: bool, region: str, area: str
) -> tuple[str | None, PhoneKind, str | None]:
    if len(digits) > _MAX_DIGITS:
        return None, PhoneKind.INVALID, "too long"
    is_local = not has_plus and 7 <= len(digits) <= 8 and digits[0] not in "01"
    if is_local and area:
        digits = "0" + area + digits
    try:
        number = phonenumbers.parse(("+" if has_plus else "") + digits, region)
    except NumberParseException as exc:
        return None, PhoneKind.INVALID, _PARSE_REASONS.get(exc.error_type, "not a phone number")
    if not phonenumbers.is_valid_number(number):
        return None, PhoneKind.INVALID, _invalid_reason(number, is_local and not area)
    number_type = phonenumbers.number_type(number)
    if number_type in _PREMIUM_TYPES:
        reason = PREMIUM_REASON_CN if number.country_code == 86 else PREMIUM_REASON
        return None, PhoneKind.INVALID, reason
    kind = _subscriber_kind(number, number_type)
    if kind is None:
        return None, PhoneKind.INVALID, "not a subscriber number (pager or voicemail)"
    return phonenumbers.format_number(number, PhoneNumberFormat.E164), kind, None


def _subscriber_kind(number: PhoneNumber, number_type: int) -> PhoneKind | None:
    """Return mobile or fixed for a valid subscriber number's type, None for any other type."""
    if number_type == PhoneNumberType.MOBILE:
        return PhoneKind.MOBILE
    if number_type in _FIXED_TYPES:
        return PhoneKind.FIXED
    if number_type == PhoneNumberType.FIXED_LINE_OR_MOBILE:
        return _fixed_or_mobile(number)
    return None


def _fixed_or_mobile(number: PhoneNumber) -> PhoneKind:
    national = phonenumbers.national_significant_number(number)
    if number.country_code == 86:
        is_mobile = national.startswith("1") and len(national) == 11
        return PhoneKind.MOBILE if is_mobile else PhoneKind.FIXED
    # Elsewhere (e.g. North America) the plan cannot tell; most such numbers are mobiles
    # now, and a failed SMS costs less than never offering one.
    return PhoneKind.MOBILE


def _invalid_reason(number: PhoneNumber, missing_area_code: bool) -> str:
    national = phonenumbers.national_significant_number(number)
    if len(national) <= 6:
        is_short_code = shortnumberinfo.is_valid_short_number(number)
        return "short code" if is_short_code else "too short"
    if number.country_code == 86 and national.startswith("1") and len(national) != 11:
        size = "too short" if len(national) < 11 else "too long"
        return f"{size}: a mobile number has 11 digits, not {len(national)}"
    if missing_area_code:
        return "local number without area code"
    possibility = phonenumbers.is_possible_number_with_reason(number)
    return _POSSIBILITY_REASONS.get(possibility, "not a valid number")


def _invalid(raw: str, reason: str) -> NormalizedPhone:
    return NormalizedPhone(raw, None, PhoneKind.INVALID, reason, None)


def _national_digits(e164: str) -> str:
    # The national format carries the trunk "0" of a Chinese landline: 023****1234.
    number = phonenumbers.parse(e164, None)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return re.sub(r"[^0-9]", "", national, flags=re.ASCII)
