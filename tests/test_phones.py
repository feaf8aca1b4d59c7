"""Phone normalisation and masking (models/phones.py): a table of real-world forms, then properties."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models.phones import NormalizedPhone, PhoneKind, mask_phone, normalize_phone

MOBILE = PhoneKind.MOBILE
FIXED = PhoneKind.FIXED
INVALID = PhoneKind.INVALID
CQ_MOBILE = "+8613812345678"
CQ_LANDLINE = "+862368881234"
# The table is read as a Chongqing centre would read it: local numbers get area code 023.
AREA_CODE = "023"

CASES = [
    # Mobiles in every spelling office systems produce.
    ("13812345678", CQ_MOBILE, MOBILE, None),
    ("+8613812345678", CQ_MOBILE, MOBILE, None),
    ("+86 138 1234 5678", CQ_MOBILE, MOBILE, None),
    ("0086 138 1234 5678", CQ_MOBILE, MOBILE, None),
    ("008613812345678", CQ_MOBILE, MOBILE, None),
    ("8613812345678", CQ_MOBILE, MOBILE, None),
    ("86-138-1234-5678", CQ_MOBILE, MOBILE, None),
    ("１３８１２３４５６７８", CQ_MOBILE, MOBILE, None),
    ("＋８６ １３８ １２３４ ５６７８", CQ_MOBILE, MOBILE, None),
    ("138-1234-5678", CQ_MOBILE, MOBILE, None),
    ("138.1234.5678", CQ_MOBILE, MOBILE, None),
    ("(+86) 13812345678", CQ_MOBILE, MOBILE, None),
    ("  13812345678\t", CQ_MOBILE, MOBILE, None),
    ("手机：13812345678", CQ_MOBILE, MOBILE, None),
    ("19912345678", "+8619912345678", MOBILE, None),
    # Landlines, with and without the area code.
    ("023-68881234", CQ_LANDLINE, FIXED, None),
    ("02368881234", CQ_LANDLINE, FIXED, None),
    ("(023)6888 1234", CQ_LANDLINE, FIXED, None),
    ("（023）68881234", CQ_LANDLINE, FIXED, None),
    ("023 6888 1234", CQ_LANDLINE, FIXED, None),
    ("023—68881234", CQ_LANDLINE, FIXED, None),
    ("+86 23 6888 1234", CQ_LANDLINE, FIXED, None),
    ("8602368881234", CQ_LANDLINE, FIXED, None),
    ("68881234", CQ_LANDLINE, FIXED, None),
    ("6888-1234", CQ_LANDLINE, FIXED, None),
    ("010-12345678", "+861012345678", FIXED, None),
    ("0755-12345678", "+8675512345678", FIXED, None),
    ("0351-1234567", "+863511234567", FIXED, None),
    # Extensions are split off.
    ("023-68881234转123", CQ_LANDLINE, FIXED, "123"),
    ("023 6888 1234 ext. 123", CQ_LANDLINE, FIXED, "123"),
    ("023-68881234 EXT 12", CQ_LANDLINE, FIXED, "12"),
    ("02368881234x123", CQ_LANDLINE, FIXED, "123"),
    ("023-68881234 分机123", CQ_LANDLINE, FIXED, "123"),
    ("023-68881234-转-123", CQ_LANDLINE, FIXED, "123"),
    ("023-68881234-8001", CQ_LANDLINE, FIXED, "8001"),
    ("68881234转8001", CQ_LANDLINE, FIXED, "8001"),
    # Two numbers in one field: the first valid one wins.
    ("13812345678/13987654321", CQ_MOBILE, MOBILE, None),
    ("13812345678;023-68881234", CQ_MOBILE, MOBILE, None),
    ("13812345678 或 13987654321", CQ_MOBILE, MOBILE, None),
    ("电话:13812345678，备用13900001111", CQ_MOBILE, MOBILE, None),
    ("13812345678 13987654321", CQ_MOBILE, MOBILE, None),
    ("13812345678\n13987654321", CQ_MOBILE, MOBILE, None),
    ("023-68881234、13812345678", CQ_LANDLINE, FIXED, None),
    ("12345/13987654321", "+8613987654321", MOBILE, None),
    ("1381234567 / 13987654321", "+8613987654321", MOBILE, None),
    # Other regions with an explicit prefix (North American 555-01xx is the fictional range).
    ("+1 212 555 0100", "+12125550100", MOBILE, None),
    ("001 212 555 0100", "+12125550100", MOBILE, None),
    ("+44 20 7946 0958", "+442079460958", FIXED, None),
    ("+852 9123 4567", "+85291234567", MOBILE, None),
    # Invalid: short codes, service numbers, wrong lengths, nothing at all.
    ("12345", None, INVALID, None),
    ("95588", None, INVALID, None),
    ("10086", None, INVALID, None),
    ("400-812-3123", None, INVALID, None),
    ("4008123123", None, INVALID, None),
    ("800-810-0000", None, INVALID, None),
    ("+1 800 555 0100", None, INVALID, None),
    ("1381234567", None, INVALID, None),
    ("138123456789", None, INVALID, None),
    ("861381234567", None, INVALID, None),
    ("13812345678-1", None, INVALID, None),
    ("023-6888123", None, INVALID, None),
    ("0571 8888888", None, INVALID, None),
    ("+0 123", None, INVALID, None),
    ("x123", None, INVALID, None),
    ("无", None, INVALID, None),
    ("   ", None, INVALID, None),
    ("", None, INVALID, None),
    (None, None, INVALID, None),
]


@pytest.mark.parametrize(("raw", "e164", "kind", "extension"), CASES)
def test_normalize_phone_reads_real_world_forms(raw, e164, kind, extension):
    result = normalize_phone(raw, area_code=AREA_CODE)

    assert (result.e164, result.kind, result.extension) == (e164, kind, extension)
    assert result.raw == (raw or "")
    assert (result.reason is None) == (kind is not INVALID)
    assert result.is_mobile == (kind is MOBILE)


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        ("12345", "short code"),
        ("95588", "short code"),
        ("400-812-3123", "400/800"),
        ("800-810-0000", "toll-free"),
        ("1381234567", "too short"),
        ("1381234567", "11 digits"),
        ("138123456789", "too long"),
        ("", "no digits"),
        ("未留电话", "no digits"),
        ("x123", "extension"),
        ("+0 123", "country code"),
    ],
)
def test_invalid_numbers_say_why(raw, word):
    assert word in (normalize_phone(raw).reason or "")


def test_local_number_without_configured_area_code_is_invalid():
    result = normalize_phone("68881234")

    assert result.kind is INVALID
    assert "area code" in (result.reason or "")


def test_local_number_takes_the_configured_area_code():
    assert normalize_phone("68881234", area_code="0755").e164 == "+8675568881234"
    assert normalize_phone("68881234", area_code="755").e164 == "+8675568881234"


def test_area_code_is_not_applied_to_numbers_with_country_code():
    assert normalize_phone("+86 68881234", area_code=AREA_CODE).kind is INVALID


def test_first_invalid_reason_is_kept_when_no_number_is_valid():
    assert normalize_phone("12345/1381234567").reason == "short code"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+8613812341234", "138****1234"),
        ("13812341234", "138****1234"),
        ("138 1234 1234", "138****1234"),
        ("＋86 １３８-１２３４-１２３４", "138****1234"),
        ("+862368881234", "023****1234"),
        ("023-68881234转123", "023****1234"),
        ("68881234", "****1234"),
        ("95588", "***88"),
        ("12", "*2"),
        ("7", "*"),
        ("", ""),
        (None, ""),
        ("未留电话", ""),
    ],
)
def test_mask_phone_keeps_only_head_and_tail(raw, masked):
    assert mask_phone(raw) == masked


def test_mask_phone_shows_only_the_first_number_of_a_field():
    assert mask_phone("13812341234/13987654321") == "138****1234"


# -- properties ------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, database=None)
FULL_WIDTH = str.maketrans("0123456789+()", "０１２３４５６７８９＋（）")
PHONE_ALPHABET = list("0123456789０１２３４５６７８９+＋ -.()（）/;,，、#x转分机或") + ["ext."]


def _assert_consistent(result: NormalizedPhone) -> None:
    assert isinstance(result, NormalizedPhone)
    assert (result.e164 is None) == (result.kind is INVALID)
    assert (result.reason is None) == (result.kind is not INVALID)
    if result.e164 is not None:
        assert phonenumbers.is_valid_number(phonenumbers.parse(result.e164))


def _assert_idempotent(result: NormalizedPhone) -> None:
    if result.e164 is None:
        return
    again = normalize_phone(result.e164)
    assert (again.e164, again.kind, again.extension) == (result.e164, result.kind, None)


@PROPERTY_SETTINGS
@given(st.text())
def test_normalize_never_raises_on_arbitrary_text(raw):
    _assert_consistent(normalize_phone(raw))
    mask_phone(raw)


@PROPERTY_SETTINGS
@given(
    st.lists(st.sampled_from(PHONE_ALPHABET), max_size=40).map("".join),
    st.sampled_from([None, "023", "0755", "10", "", "abc"]),
)
def test_normalize_never_raises_on_digit_strings_and_is_idempotent(raw, area_code):
    result = normalize_phone(raw, area_code=area_code)

    _assert_consistent(result)
    _assert_idempotent(result)


@PROPERTY_SETTINGS
@given(st.from_regex(r"\A[+＋]?(00|86|0)?[ -]?[0-9０-９]{1,4}([ .-]?[0-9０-９]{2,4}){0,4}\Z"))
def test_normalize_is_idempotent_on_number_shaped_strings(raw):
    result = normalize_phone(raw, area_code=AREA_CODE)

    _assert_consistent(result)
    _assert_idempotent(result)


def _is_valid_cn_mobile(national: str) -> bool:
    try:
        # Some 1[3-9]… strings are not numbers at all to phonenumbers: "17900005000" loses "179" as
        # a carrier prefix and is refused as too short.
        number = phonenumbers.parse(national, "CN")
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


valid_mobiles = st.from_regex(r"\A1[3-9][0-9]{9}\Z").filter(_is_valid_cn_mobile)


@st.composite
def written_mobiles(draw) -> tuple[str, str]:
    """Draw a valid Chinese mobile and one way a clerk might have typed it."""
    national = draw(valid_mobiles)
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "0086", "86", "(+86)"]))
    separator = draw(st.sampled_from(["", " ", "-", "."]))
    written = prefix + separator.join([national[:3], national[3:7], national[7:]])
    if draw(st.booleans()):
        written = written.translate(FULL_WIDTH)
    return national, written


@PROPERTY_SETTINGS
@given(written_mobiles())
def test_every_spelling_of_a_mobile_normalises_to_the_same_e164(mobile):
    national, written = mobile
    result = normalize_phone(written)

    assert (result.e164, result.kind) == ("+86" + national, MOBILE)
    _assert_idempotent(result)


@PROPERTY_SETTINGS
@given(written_mobiles())
def test_mask_never_reveals_the_full_mobile_number(mobile):
    national, written = mobile

    for shown in (mask_phone(written), mask_phone("+86" + national), mask_phone(national)):
        assert national not in shown
        assert shown == national[:3] + "****" + national[-4:]


@given(
    prefix=st.sampled_from(["", "+86", "0086", "86", "+86 "]),
    digits=st.from_regex(r"1[0-9]{10}", fullmatch=True),
    sep=st.sampled_from(["", " ", "-"]),
)
@example(prefix="", digits="11000002100", sep="")  # phonenumbers refuses "110…" outright
@settings(deadline=None, database=None, max_examples=300)
def test_plain_mobile_fast_path_agrees_with_phonenumbers(prefix, digits, sep):
    import phonenumbers

    text = f"{prefix}{digits[:3]}{sep}{digits[3:7]}{sep}{digits[7:]}"
    result = normalize_phone(text, region="CN")
    try:
        number = phonenumbers.parse(digits, "CN")
    except phonenumbers.NumberParseException:
        number = None  # e.g. "110…": phonenumbers refuses it outright, so it is no mobile either
    valid_mobile = (
        number is not None
        and phonenumbers.is_valid_number(number)
        and phonenumbers.number_type(number)
        in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    )
    assert (result.e164 == "+86" + digits) == valid_mobile
    assert (result.kind == PhoneKind.MOBILE) == valid_mobile


# -- the plain-number fast path (bulk imports) ------------------------------------------------------

# Area codes of every kind of length: Beijing 10, Chongqing 23, Shenzhen 755, Hangzhou 571 (8-digit
# subscribers), Taiyuan 351 (7-digit subscribers), Sanya 898 ...
AREA_CODES = [
    "10",
    "20",
    "21",
    "23",
    "24",
    "29",
    "311",
    "351",
    "371",
    "431",
    "571",
    "591",
    "755",
    "851",
    "898",
    "991",
]


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("023-68881234", CQ_LANDLINE),
        ("02368881234", CQ_LANDLINE),
        ("(023)68881234", CQ_LANDLINE),
        ("(023) 6888-1234", CQ_LANDLINE),
        ("023 6888 1234", CQ_LANDLINE),
        ("023.6888.1234", CQ_LANDLINE),
        ("+86 23 6888 1234", CQ_LANDLINE),
        ("+86-23-68881234", CQ_LANDLINE),
        ("(+86) 23 6888 1234", CQ_LANDLINE),
        ("+86 023 6888 1234", CQ_LANDLINE),
        ("0086 23 6888 1234", CQ_LANDLINE),
        ("68881234", CQ_LANDLINE),
        ("6888-1234", CQ_LANDLINE),
        ("2368881234", CQ_LANDLINE),
        ("010-12345678", "+861012345678"),
        ("0755-12345678", "+8675512345678"),
        ("0351-1234567", "+863511234567"),
    ],
)
def test_plainly_written_landlines_skip_the_parser_with_the_same_answer(raw, e164):
    from models.phones import _normalize_general, _plain_cn_number

    fast = _plain_cn_number(raw, "23")

    assert fast == NormalizedPhone(raw, e164, FIXED, None, None)
    assert fast == _normalize_general(raw, "CN", "23")


@pytest.mark.parametrize(
    "raw",
    [
        "023-6888123",  # too short for Chongqing: the general path says why
        "0571 8888888",  # Hangzhou numbers have 8 digits
        "400-812-3123",  # premium
        "023-68881234-8001",  # extension after a dash
        "8602368881234",  # "86" without a plus: the parser decides
        "+1 212 555 0100",  # another country
        "17951 023 6888 1234",  # a carrier prefix
        "023-68881234 / 13812345678",  # two numbers
        "12345",
    ],
)
def test_plain_path_leaves_everything_else_to_the_general_path(raw):
    from models.phones import _plain_cn_number

    assert _plain_cn_number(raw, "23") is None


@st.composite
def written_landlines(draw) -> tuple[str, str]:
    """Draw (area code, a landline as a clerk might type it), valid or not."""
    area = draw(st.sampled_from(AREA_CODES))
    subscriber = draw(st.from_regex(r"\A[2-9][0-9]{5,7}\Z"))
    prefix = draw(st.sampled_from(["", "0", "(0", "+86 ", "+86 0", "(+86) ", "0086 ", "0086-0", "86"]))
    close = ")" if prefix.startswith("(0") else ""
    separator = draw(st.sampled_from(["", " ", "-", "."]))
    middle = draw(st.integers(min_value=0, max_value=len(subscriber)))
    local = draw(st.booleans())
    number = separator.join(part for part in (subscriber[:middle], subscriber[middle:]) if part)
    return area, number if local else f"{prefix}{area}{close}{separator}{number}"


@PROPERTY_SETTINGS
@given(written_landlines(), st.sampled_from(["", "23", "755"]))
def test_plain_path_agrees_with_the_general_path_on_landlines(landline, configured_area):
    from models.phones import _normalize_general, _plain_cn_number

    _area, raw = landline
    fast = _plain_cn_number(raw, configured_area)

    assert fast is None or fast == _normalize_general(raw, "CN", configured_area)


@PROPERTY_SETTINGS
@given(st.text(alphabet="0123456789 +-.()", max_size=24), st.sampled_from(["", "23", "10", "755"]))
def test_plain_path_never_disagrees_with_the_general_path(raw, configured_area):
    from models.phones import _normalize_general, _plain_cn_number

    fast = _plain_cn_number(raw, configured_area)

    assert fast is None or fast == _normalize_general(raw, "CN", configured_area)
