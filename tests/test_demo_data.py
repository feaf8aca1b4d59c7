"""The demo generator: realistic, reproducible, streamed service-item files."""

from __future__ import annotations

import csv
import inspect
import json
import re
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from console.demo_data import (
    DEFECTS,
    DEPARTMENTS,
    HEADERS,
    MATTERS,
    generate_items,
    generate_items_with_defects,
    period_start,
    write_items,
)

NOW = datetime(2026, 5, 20, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai, 2026 Q2
SHANGHAI = timezone(timedelta(hours=8))
CITIZEN_TYPES = {
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
}


@pytest.fixture(scope="module")
def labelled() -> list[tuple[str | None, dict[str, str]]]:
    return list(generate_items_with_defects(20_000, now=NOW))


@pytest.fixture(scope="module")
def clean(labelled) -> list[tuple[dict[str, str], phonenumbers.PhoneNumber]]:
    """Rows without a defect, each with its phone number parsed."""
    return [(row, parse_phone(row["联系电话"])) for defect, row in labelled if defect is None]


def parse_local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)


def parse_phone(raw: str) -> phonenumbers.PhoneNumber:
    """Parse as an importer of the Chongqing centre would: local landlines get area code 023."""
    if re.fullmatch(r"[2-8]\d{7}", raw):
        raw = "023" + raw
    return phonenumbers.parse(raw, "CN")


def is_citizen_number(raw: str) -> bool:
    try:
        number = parse_phone(raw)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in CITIZEN_TYPES


def test_generate_items_is_a_lazy_iterator() -> None:
    rows = generate_items(10**9, now=NOW)
    assert isinstance(rows, Iterator)
    assert inspect.isgenerator(rows)
    assert list(next(rows)) == HEADERS


def test_same_seed_writes_the_same_file_byte_for_byte(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_items(first, 3_000, now=NOW, seed=7)
    write_items(second, 3_000, now=NOW, seed=7)
    assert first.read_bytes() == second.read_bytes()


def test_different_seed_gives_different_rows() -> None:
    assert list(generate_items(500, now=NOW, seed=1)) != list(generate_items(500, now=NOW, seed=2))


def test_csv_has_the_headers_and_one_line_per_row(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    assert write_items(path, 1_234, now=NOW) == 1_234
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # plain UTF-8, no BOM
    with path.open(encoding="utf-8", newline="") as fh:
        records = list(csv.reader(fh))
    assert records[0] == HEADERS
    assert len(records) == 1_235
    assert all(len(record) == len(HEADERS) for record in records)


def test_jsonl_holds_the_same_rows_as_csv(tmp_path: Path) -> None:
    csv_path, jsonl_path = tmp_path / "items.csv", tmp_path / "items.jsonl"
    assert write_items(csv_path, 2_000, now=NOW, seed=11) == 2_000
    assert write_items(jsonl_path, 2_000, now=NOW, seed=11) == 2_000
    with csv_path.open(encoding="utf-8", newline="") as fh:
        from_csv = list(csv.DictReader(fh))
    with jsonl_path.open(encoding="utf-8") as fh:
        from_jsonl = [json.loads(line) for line in fh]
    assert from_csv == from_jsonl


def test_format_can_be_forced_and_unknown_formats_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "items.txt"
    assert write_items(path, 5, now=NOW, fmt="jsonl") == 5
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0])["办件编号"]
    with pytest.raises(ValueError, match="unknown format"):
        write_items(tmp_path / "items.xlsx", 5, now=NOW)


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    with pytest.raises(ValueError, match="timezone-aware"):
        write_items(path, 1, now=datetime(2026, 5, 20, 11, 0))
    with pytest.raises(ValueError, match="quarters"):
        write_items(path, 1, now=NOW, quarters=0)
    with pytest.raises(ValueError, match="malformed_ratio"):
        write_items(path, 1, now=NOW, malformed_ratio=1.5)
    with pytest.raises(ValueError, match="no time"):  # now is the very start of a quarter
        write_items(path, 1, now=datetime(2026, 3, 31, 16, 0, tzinfo=UTC), quarters=1)
    assert not path.exists()


def test_every_row_has_every_header_and_a_unique_id(labelled) -> None:
    ids = [row["办件编号"] for _, row in labelled]
    assert all(list(row) == HEADERS for _, row in labelled)
    assert len(set(ids)) == len(ids)


def test_ids_are_numbered_per_completion_day(labelled) -> None:
    for defect, row in labelled[:2_000]:
        if defect != "bad_date":
            assert re.fullmatch(r"\d{13}", row["办件编号"])
            assert row["办件编号"][:8] == row["办结时间"][:10].replace("-", "")


def test_rows_come_out_in_completion_order(labelled) -> None:
    times = [row["办结时间"] for defect, row in labelled if defect != "bad_date"]
    assert times == sorted(times)


def test_clean_rows_have_valid_citizen_phone_numbers(clean) -> None:
    invalid = [row["联系电话"] for row, number in clean if not phonenumbers.is_valid_number(number)]
    assert invalid == []
    kinds = Counter(phonenumbers.number_type(number) for _, number in clean)
    assert kinds[PhoneNumberType.MOBILE] > 0.85 * len(clean)
    assert kinds[PhoneNumberType.FIXED_LINE] > 0.03 * len(clean)
    assert set(kinds) == {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE}


def test_phone_numbers_come_from_the_documented_fictitious_blocks(clean) -> None:
    for _, number in clean:
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        assert re.fullmatch(r"\+86(19900\d{6}|236199\d{4})", e164)


def test_phone_numbers_are_written_in_several_office_forms(labelled) -> None:
    phones = [row["联系电话"] for defect, row in labelled if defect is None]
    assert any(re.fullmatch(r"1\d{10}", p) for p in phones)
    assert any(re.fullmatch(r"1\d\d \d{4} \d{4}", p) for p in phones)
    assert any(p.startswith("+86") for p in phones)
    assert any(p.startswith("0086") for p in phones)
    assert any("１" in p for p in phones)  # full-width digits
    assert any(p.startswith("023-6") for p in phones)
    assert any(re.fullmatch(r"6\d{7}", p) for p in phones)  # landline without area code


@pytest.mark.parametrize(
    ("now", "quarters", "start"),
    [
        (NOW, 4, datetime(2025, 7, 1, tzinfo=SHANGHAI)),
        (NOW, 1, datetime(2026, 4, 1, tzinfo=SHANGHAI)),
        # 1 April 01:00 in Shanghai is still 31 March in UTC: quarters follow local time.
        (datetime(2026, 3, 31, 17, 0, tzinfo=UTC), 2, datetime(2026, 1, 1, tzinfo=SHANGHAI)),
        (datetime(2026, 1, 15, 12, 0, tzinfo=UTC), 8, datetime(2024, 4, 1, tzinfo=SHANGHAI)),
    ],
)
def test_completion_times_fall_in_the_last_quarters_before_now(now, quarters, start) -> None:
    assert period_start(now, quarters) == start
    for defect, row in generate_items_with_defects(3_000, now=now, quarters=quarters):
        if defect != "bad_date":
            assert start <= parse_local(row["办结时间"]) < now


def test_the_first_hour_of_a_quarter_only_has_online_items() -> None:
    now = datetime(2026, 3, 31, 17, 0, tzinfo=UTC)  # 2026-04-01 01:00 in Shanghai
    rows = list(generate_items(200, now=now, quarters=1, malformed_ratio=0))
    assert {row["办结时间"][:13] for row in rows} == {"2026-04-01 00"}
    assert {row["办理渠道"] for row in rows} <= {"网上办理", "掌上办"}


def test_most_items_complete_in_office_hours_on_working_days(labelled) -> None:
    times = [parse_local(row["办结时间"]) for defect, row in labelled if defect != "bad_date"]
    in_office = [
        t
        for t in times
        if t.weekday() < 6 and (9 <= t.hour < 12 or (13, 30) <= (t.hour, t.minute) < (17, 30))
    ]
    assert len(in_office) > 0.85 * len(times)
    # 2025-10-01 to 10-08 is the National Day holiday: only online items, at a trickle.
    golden_week = [
        t
        for t in times
        if datetime(2025, 10, 1, tzinfo=SHANGHAI) <= t < datetime(2025, 10, 9, tzinfo=SHANGHAI)
    ]
    assert len(golden_week) < 0.005 * len(times)


def test_departments_and_matters_look_like_a_county_service_centre(labelled) -> None:
    codes = [code for code, _, _ in DEPARTMENTS]
    assert 10 <= len(DEPARTMENTS) <= 15
    assert len(set(codes)) == len(codes)
    assert {kind for _, _, kind in DEPARTMENTS} == {"approval", "service", "enforcement"}
    assert all(4 <= len(MATTERS[code]) <= 10 for code in codes)
    names = dict((code, name) for code, name, _ in DEPARTMENTS)
    volume = Counter()
    for defect, row in labelled:
        if defect != "empty_department":
            assert names[row["部门编码"]] == row["部门名称"]
            assert row["事项名称"] in {matter for matter, _, _ in MATTERS[row["部门编码"]]}
            volume[row["部门编码"]] += 1
    assert set(volume) == set(codes)
    assert volume["SWJ"] > 10 * volume["CGZFJ"]  # some departments are busy, some quiet


def test_channels_are_weighted_and_counter_only_matters_need_a_counter(labelled) -> None:
    channels = Counter(row["办理渠道"] for _, row in labelled)
    assert set(channels) == {"窗口", "网上办理", "自助终端", "掌上办"}
    assert channels.most_common(1)[0][0] == "窗口"
    marriages = {row["办理渠道"] for _, row in labelled if row["事项名称"] == "结婚登记"}
    assert marriages <= {"窗口", "自助终端"}


def test_citizen_names_are_chinese_and_about_a_tenth_blank(labelled) -> None:
    names = [row["申请人"] for _, row in labelled]
    blank = names.count("")
    assert 0.08 < blank / len(names) < 0.12
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,3}", name) for name in names if name)
    assert len(set(names)) > 1_000


def test_the_same_citizen_keeps_the_same_name(clean) -> None:
    seen: dict[int, str] = {}
    for row, number in clean:
        if row["申请人"]:
            assert seen.setdefault(number.national_number, row["申请人"]) == row["申请人"]
    assert len(seen) < sum(1 for row, _ in clean if row["申请人"])  # some citizens come back


def test_malformed_share_is_near_the_ratio_and_covers_every_defect(labelled) -> None:
    defects = Counter(defect for defect, _ in labelled if defect is not None)
    assert 300 <= sum(defects.values()) <= 500  # 2% of 20,000 = 400
    assert set(defects) == set(DEFECTS)
    none = generate_items_with_defects(2_000, now=NOW, malformed_ratio=0)
    assert all(defect is None for defect, _ in none)
    many = Counter(d for d, _ in generate_items_with_defects(2_000, now=NOW, malformed_ratio=0.5))
    assert 850 <= sum(count for defect, count in many.items() if defect) <= 1_150


def test_malformed_rows_show_the_defect_they_are_labelled_with(labelled) -> None:
    for defect, row in labelled:
        phone, completed = row["联系电话"], row["办结时间"]
        if defect is None:
            continue
        if defect in ("short_phone", "service_number", "letters_in_phone", "empty_phone"):
            assert not is_citizen_number(phone)
        if defect == "short_phone":
            assert re.fullmatch(r"1\d{9}", phone)
        elif defect == "service_number":
            assert re.fullmatch(r"400-\d{3}-\d{4}", phone)
        elif defect == "letters_in_phone":
            assert re.fullmatch(r"1[0-9A-Z]{10}", phone)
            assert len(re.findall("[A-Z]", phone)) == 2
        elif defect == "empty_phone":
            assert phone == ""
        elif defect == "bad_date":
            assert re.fullmatch(r"\d{4}-13-45 \d\d:\d\d:\d\d", completed)
            with pytest.raises(ValueError):
                parse_local(completed)
        elif defect == "empty_department":
            assert row["部门编码"] == ""
            assert row["部门名称"]
        if defect != "bad_date":
            parse_local(completed)
        if defect != "empty_department":
            assert row["部门编码"]


def test_write_items_streams_with_flat_memory(tmp_path: Path) -> None:
    # 30,000 rows held in a list would take about 16 MB; tracemalloc slows every allocation,
    # so the count stays modest.
    tracemalloc.start()
    try:
        written = write_items(tmp_path / "big.csv", 30_000, now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == 30_000
    assert peak < 1024 * 1024


def test_progress_bar_goes_to_stderr(tmp_path: Path, capsys) -> None:
    write_items(tmp_path / "items.csv", 300, now=NOW, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "300/300" in captured.err
