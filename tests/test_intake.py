"""File intake: idempotent upserts, bad rows named by line, every supported format."""

import csv
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from console.import_files import ImportFileError, detect_encoding, read_rows, run_import
from models.departments import Department
from models.intake import Importer, RowStatus, parse_completed_at
from models.items import ServiceItem
from models.settings import load_settings

COLUMNS = load_settings(env={}).intake.columns
HEADERS = ["办件编号", "部门编码", "部门名称", "事项名称", "办理渠道", "申请人", "联系电话", "办结时间"]
GOOD = [
    ["A001", "SWJ", "税务局", "契税申报", "窗口", "张伟", "13812345678", "2026-09-15 10:23:00"],
    [
        "A002",
        "SCJ",
        "市场监督管理局",
        "企业开办登记",
        "网上办理",
        "",
        "+86 139 1234 5678",
        "2026/09/16 14:05",
    ],
    ["A003", "SWJ", "税务局", "个人所得税汇算", "窗口", "李娜", "023-68881234", "2026年9月17日 09:30"],
]
BAD = [
    ["B001", "SWJ", "税务局", "契税申报", "窗口", "王芳", "12345", "2026-09-15 10:23:00"],
    ["B002", "SWJ", "税务局", "契税申报", "窗口", "王芳", "13812345679", "2026-13-45"],
    ["", "SWJ", "税务局", "契税申报", "窗口", "王芳", "13812345670", "2026-09-15 10:23:00"],
]


def write_csv(path, rows, encoding="utf-8"):
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADERS)
        writer.writerows(rows)
    return path


def write_xlsx(path, rows):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(HEADERS)
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def import_path(session_factory, intake_options, path, source="file"):
    results = []
    summary = run_import(
        session_factory,
        path,
        options=intake_options,
        columns=COLUMNS,
        source=source,
        on_result=lambda *r: results.append(r),
    )
    return summary, results


def snapshot(session):
    rows = session.execute(
        select(
            ServiceItem.external_id,
            ServiceItem.matter,
            ServiceItem.phone_e164,
            ServiceItem.phone_kind,
            ServiceItem.completed_at,
            ServiceItem.citizen_name,
        ).order_by(ServiceItem.external_id)
    ).all()
    return [tuple(r) for r in rows]


def test_importing_the_same_file_twice_keeps_the_row_count(
    session, session_factory, intake_options, tmp_path
):
    path = write_csv(tmp_path / "items.csv", GOOD)
    first, _ = import_path(session_factory, intake_options, path)
    second, _ = import_path(session_factory, intake_options, path)
    assert (first.new, first.updated) == (3, 0)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 3)
    assert session.scalar(select(func.count()).select_from(ServiceItem)) == 3
    assert session.scalar(select(func.count()).select_from(Department)) == 2


def test_reimport_updates_changed_rows_in_place(session, session_factory, intake_options, tmp_path):
    import_path(session_factory, intake_options, write_csv(tmp_path / "a.csv", GOOD))
    changed = [row[:] for row in GOOD]
    changed[1][3] = "企业变更登记"
    summary, _ = import_path(session_factory, intake_options, write_csv(tmp_path / "b.csv", changed))
    assert (summary.new, summary.updated, summary.unchanged) == (0, 1, 2)
    item = session.scalars(select(ServiceItem).where(ServiceItem.external_id == "A002")).one()
    assert item.matter == "企业变更登记"
    assert session.scalar(select(func.count()).select_from(ServiceItem)) == 3


def test_same_external_id_from_another_source_is_another_item(
    session, session_factory, intake_options, tmp_path
):
    path = write_csv(tmp_path / "items.csv", GOOD)
    import_path(session_factory, intake_options, path, source="hall")
    import_path(session_factory, intake_options, path, source="online")
    assert session.scalar(select(func.count()).select_from(ServiceItem)) == 6


def test_bad_rows_are_named_by_line_and_reason_and_good_rows_import(
    session, session_factory, intake_options, tmp_path
):
    path = write_csv(tmp_path / "mixed.csv", [GOOD[0], BAD[0], GOOD[1], BAD[1], BAD[2], GOOD[2]])
    summary, results = import_path(session_factory, intake_options, path)
    errors = {line: reason for line, _ext, status, reason in results if status == RowStatus.ERROR}
    assert set(errors) == {3, 5, 6}
    assert errors[3] == "phone '***45': short code"  # masked: the line number finds the row
    assert "completed_at" in errors[5] and "2026-13-45" in errors[5]
    assert "external_id" in errors[6]
    assert summary.new == 3 and sum(summary.skipped.values()) == 3
    assert summary.skipped["no usable phone"] == 1
    assert session.scalar(select(func.count()).select_from(ServiceItem)) == 3


def test_gb18030_and_xlsx_import_the_same_items_as_utf8(session_factory, intake_options, tmp_path, session):
    utf8 = write_csv(tmp_path / "utf8.csv", GOOD)
    gb = write_csv(tmp_path / "gb.csv", GOOD, encoding="gb18030")
    bom = write_csv(tmp_path / "bom.csv", GOOD, encoding="utf-8-sig")
    xlsx = write_xlsx(tmp_path / "items.xlsx", GOOD)
    assert detect_encoding(gb) == "gb18030"
    assert detect_encoding(bom) == "utf-8-sig"
    snapshots = []
    for index, path in enumerate([utf8, gb, bom, xlsx]):
        summary, _ = import_path(session_factory, intake_options, path, source=f"s{index}")
        assert summary.new == 3, path
        rows = session.execute(
            select(
                ServiceItem.external_id,
                ServiceItem.matter,
                ServiceItem.phone_e164,
                ServiceItem.completed_at,
                ServiceItem.citizen_name,
            )
            .where(ServiceItem.source == f"s{index}")
            .order_by(ServiceItem.external_id)
        ).all()
        snapshots.append([tuple(r) for r in rows])
    assert snapshots[0] == snapshots[1] == snapshots[2] == snapshots[3]
    assert snapshots[0][0][2] == "+8613812345678"


def test_jsonl_import_reports_broken_lines(session_factory, intake_options, tmp_path, session):
    path = tmp_path / "items.jsonl"
    lines = [json.dumps(dict(zip(HEADERS, row, strict=True)), ensure_ascii=False) for row in GOOD]
    lines.insert(1, "{not json")
    lines.insert(2, "[1, 2]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary, results = import_path(session_factory, intake_options, path)
    errors = {line: reason for line, _e, status, reason in results if status == RowStatus.ERROR}
    assert set(errors) == {2, 3}
    assert "JSON" in errors[2]
    assert summary.new == 3


def test_missing_required_column_names_the_field(tmp_path):
    path = tmp_path / "nophone.csv"
    path.write_text("办件编号,部门编码,事项名称,办结时间\nA1,SWJ,契税申报,2026-09-01\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="phone"):
        list(read_rows(path, COLUMNS))


def test_unknown_format_is_refused(tmp_path):
    path = tmp_path / "items.pdf"
    path.write_bytes(b"%PDF")
    with pytest.raises(ImportFileError, match="unknown format"):
        list(read_rows(path, COLUMNS))


def test_unknown_department_is_an_error_when_auto_create_is_off(session, intake_options):
    from dataclasses import replace

    options = replace(intake_options, auto_create_departments=False)
    results = []
    importer = Importer(session, options, "api", on_result=lambda *r: results.append(r))
    importer.import_batch(
        [
            (
                1,
                dict(
                    zip(
                        ["external_id", "department", "matter", "phone", "completed_at"],
                        ["X1", "NOPE", "契税申报", "13812345678", "2026-09-01"],
                        strict=True,
                    )
                ),
            )
        ]
    )
    assert results[0][2] == RowStatus.ERROR and "NOPE" in results[0][3]


def test_future_completion_time_is_rejected(session, intake_options):
    results = []
    importer = Importer(
        session,
        intake_options,
        "api",
        on_result=lambda *r: results.append(r),
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    row = {
        "external_id": "F1",
        "department": "SWJ",
        "matter": "m",
        "phone": "13812345678",
        "completed_at": "2026-06-01",
    }
    importer.import_batch([(1, row)])
    assert results[0][2] == RowStatus.ERROR and "future" in results[0][3]


def test_naive_completion_time_is_read_in_the_centre_time_zone(intake_options):
    parsed = parse_completed_at("2026-03-31 23:30:00", intake_options.tz)
    assert parsed == datetime(2026, 3, 31, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_completion_time_out_of_range_is_a_bad_row_not_a_crash(session, intake_options, text):
    results = []
    importer = Importer(session, intake_options, "api", on_result=lambda *r: results.append(r))
    row = {
        "external_id": "R1",
        "department": "SWJ",
        "matter": "m",
        "phone": "13812345678",
        "completed_at": text,
    }
    importer.import_batch([(1, row)])
    assert results[0][2] == RowStatus.ERROR and "out of range" in results[0][3]
    assert importer.summary.skipped["bad completed_at"] == 1


ZONES = [
    "Asia/Shanghai",
    "Europe/Berlin",
    "America/New_York",
    "America/St_Johns",  # offsets in half hours
    "Australia/Lord_Howe",  # a 30-minute daylight saving shift
    "Asia/Kathmandu",
    "UTC",
]


@settings(max_examples=500, deadline=None, database=None)
@given(
    st.datetimes(min_value=datetime(1890, 1, 1), max_value=datetime(2100, 12, 31)),
    st.sampled_from(ZONES),
)
@example(datetime(2026, 3, 29, 2, 30), "Europe/Berlin")  # in the spring-forward gap
@example(datetime(2026, 10, 25, 2, 30), "Europe/Berlin")  # in the autumn fold
@example(datetime(2026, 10, 4, 2, 15), "Australia/Lord_Howe")
def test_naive_times_convert_exactly_as_the_zone_does(naive, zone):
    tz = ZoneInfo(zone)
    assert parse_completed_at(naive, tz) == naive.replace(tzinfo=tz).astimezone(UTC)
    assert parse_completed_at(naive.isoformat(" "), tz) == naive.replace(tzinfo=tz).astimezone(UTC)
