"""The fast paths of file intake: the reader process, COPY on PostgreSQL, SQLite's import page cache.

Each must import and report exactly what the plain path does.
"""

from __future__ import annotations

import csv
import gc
import multiprocessing
import os
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import console.import_files as import_files
import models.intake as intake
import models.items_bulk as items_bulk
from console.import_files import ImportFileError, ImportWorkerError, run_import
from models.items import ServiceItem
from models.settings import load_settings

COLUMNS = load_settings(env={}).intake.columns
HEADERS = ["办件编号", "部门编码", "部门名称", "事项名称", "办理渠道", "申请人", "联系电话", "办结时间"]
ROWS = [
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
    ["B001", "SWJ", "税务局", "契税申报", "窗口", "王芳", "12345", "2026-09-15 10:23:00"],
    # second batch (of four): a landline with an extension, a bad date, A001 changed, no id
    ["A004", "GAJ", "公安局", "户籍迁移", "窗口", "赵强", "(023)6888 1235转12", "2026-09-18"],
    ["B002", "SWJ", "税务局", "契税申报", "窗口", "王芳", "13812345679", "2026-13-45"],
    ["A001", "SWJ", "税务局", "契税申报（更正）", "窗口", "张伟", "13812345678", "2026-09-15 10:23:00"],
    ["", "SWJ", "税务局", "契税申报", "窗口", "王芳", "13812345670", "2026-09-15 10:23:00"],
    ["   ", "  ", "", "", "", "", "", ""],  # a blank line is not a row
    # third batch: no department, a future date, A007 twice (the later row is kept)
    ["A005", "", "", "契税申报", "窗口", "刘洋", "13912345678", "2026-09-19 08:00"],
    ["A006", "ZJJ", "住房和城乡建设局", "施工许可", "掌上办", "陈静", "１３９１２３４５６７９", "2031-01-01"],
    [
        "A007",
        "ZJJ",
        "住房和城乡建设局",
        "施工许可",
        "掌上办",
        "陈静",
        "68881236",
        "2026-09-20T08:00:00+08:00",
    ],
    [
        "A007",
        "ZJJ",
        "住房和城乡建设局",
        "竣工验收",
        "掌上办",
        "陈静",
        "68881236",
        "2026-09-20T08:00:00+08:00",
    ],
    # fourth batch: A002 again, the same
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
]
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def write_csv(path, rows):
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADERS)
        writer.writerows(rows)
    return path


def import_file(session_factory, options, path, source, **kwargs):
    results = []
    summary = run_import(
        session_factory,
        path,
        options=options,
        columns=COLUMNS,
        source=source,
        on_result=lambda *result: results.append(result),
        **kwargs,
    )
    return summary.as_dict(), results


def stored(session, source):
    columns = [ServiceItem.__table__.c[name] for name in ("external_id", *intake.VALUE_COLUMNS)]
    query = select(*columns).where(ServiceItem.source == source).order_by(ServiceItem.external_id)
    return [tuple(row) for row in session.execute(query)]


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch):
    """The future-date check must see the same 'now' in this process and in the reader process."""
    monkeypatch.setattr(import_files, "utcnow", lambda: NOW)


def test_reader_process_imports_and_reports_exactly_what_one_process_does(
    session, session_factory, intake_options, tmp_path
):
    path = write_csv(tmp_path / "mixed.csv", ROWS)
    # Batches of four: the repeated A001 falls in another batch, the repeated A002 in the same one.
    here = import_file(session_factory, intake_options, path, "here", batch_size=4, worker=False)
    there = import_file(session_factory, intake_options, path, "there", batch_size=4, worker=True)

    assert there == here
    summary, results = here
    assert (summary["read"], summary["new"], summary["updated"], summary["unchanged"]) == (13, 5, 1, 1)
    assert summary["skipped_by_reason"] == {
        "bad completed_at": 2,
        "missing department": 1,
        "missing external_id": 1,
        "no usable phone": 1,
        "repeated external_id (later row kept)": 1,
    }
    errors = [line for line, _key, status, _reason in results if status == "error"]
    assert errors == [5, 7, 9, 11, 12, 13]  # 13: A007, repeated at 14 in the same batch
    assert stored(session, "there") == stored(session, "here")
    matters = {row[0]: row[2] for row in stored(session, "here")}
    assert matters["A001"] == "契税申报(更正)" and matters["A007"] == "竣工验收"


def test_reader_process_reimport_finds_every_row_unchanged(session_factory, intake_options, tmp_path):
    path = write_csv(tmp_path / "good.csv", [row for row in ROWS if row[0].startswith("A")])
    first, _ = import_file(session_factory, intake_options, path, "again", worker=True)
    second, results = import_file(session_factory, intake_options, path, "again", worker=True)

    assert first["new"] == 5
    assert (second["new"], second["updated"], second["unchanged"]) == (0, 0, 5)
    assert [status for _line, _key, status, _reason in results].count("unchanged") == 5


def test_reader_process_passes_a_file_error_on(session, session_factory, intake_options, tmp_path):
    path = tmp_path / "nophone.csv"
    path.write_text("办件编号,部门编码,事项名称,办结时间\nA1,SWJ,契税申报,2026-09-01\n", encoding="utf-8")

    with pytest.raises(ImportFileError, match="phone"):
        import_file(session_factory, intake_options, path, "broken", worker=True)
    assert stored(session, "broken") == []


def test_a_reader_process_that_is_killed_is_an_error_not_a_hang(intake_options, tmp_path):
    stuck = tmp_path / "stuck.csv"
    os.mkfifo(stuck)  # opening it blocks the reader until it is killed
    args = (stuck, COLUMNS, None, intake_options, NOW, 10)
    with import_files._batches_from_worker(*args) as batches:
        [reader] = [p for p in multiprocessing.active_children() if p.name == "returnvisit-import-reader"]
        reader.kill()
        with pytest.raises(ImportWorkerError, match="exit code -9"):
            next(batches)


def test_big_files_use_the_reader_process_when_a_core_is_idle(
    monkeypatch, session_factory, intake_options, tmp_path
):
    path = write_csv(tmp_path / "items.csv", ROWS[:3])
    used = []
    real = import_files._batches_from_worker

    def spy(*args):
        used.append(True)
        return real(*args)

    monkeypatch.setattr(import_files, "_batches_from_worker", spy)
    monkeypatch.setattr(import_files, "_idle_cores", lambda: 1.8)
    import_file(session_factory, intake_options, path, "small")
    assert used == []

    monkeypatch.setattr(import_files, "WORKER_MIN_BYTES", path.stat().st_size)
    summary, _ = import_file(session_factory, intake_options, path, "big")
    assert used == [True] and summary["new"] == 3

    monkeypatch.setattr(import_files, "_idle_cores", lambda: 0.5)  # a busy machine
    import_file(session_factory, intake_options, path, "busy")
    assert used == [True]


def test_new_items_are_copied_in_on_postgresql_and_stored_as_the_orm_stores_them(
    backend, monkeypatch, session, session_factory, intake_options, tmp_path, create_item
):
    copies = []
    real_copy = items_bulk._copy

    def spy(connection, params):
        copies.append(len(params))
        real_copy(connection, params)

    monkeypatch.setattr(items_bulk, "_copy", spy)
    path = write_csv(tmp_path / "items.csv", ROWS[:3])
    summary, _ = import_file(session_factory, intake_options, path, "copy")

    assert summary["new"] == 3
    assert copies == ([3] if backend == "postgresql" else [])
    imported = session.scalars(select(ServiceItem).where(ServiceItem.external_id == "A003")).one()
    reference = create_item(
        source="orm",
        external_id="A003",
        department_id=imported.department_id,
        matter="个人所得税汇算",
        channel_handled="窗口",
        citizen_name="李娜",
        phone_raw="023-68881234",
        phone_e164="+862368881234",
        phone_kind="fixed",
        phone_extension=None,
        completed_at=datetime(2026, 9, 17, 1, 30, tzinfo=UTC),
    )
    session.expire_all()
    assert stored(session, "copy")[2] == stored(session, "orm")[0]
    assert imported.imported_at.tzinfo is not None and imported.updated_at == imported.imported_at
    assert reference.id != imported.id


def _pragmas(connection):
    driver = connection.connection.driver_connection
    names = ("cache_size", "wal_autocheckpoint", "mmap_size")
    return {name: driver.execute(f"PRAGMA {name}").fetchone()[0] for name in names}


IMPORT_PRAGMAS = {"cache_size": -32768, "wal_autocheckpoint": 25000, "mmap_size": 0}


def test_sqlite_imports_with_its_own_pragmas_then_restores_the_connections(
    backend, connection, session_factory, intake_options, tmp_path
):
    if backend != "sqlite":
        pytest.skip("SQLite connection settings")
    driver = connection.connection.driver_connection
    driver.execute("PRAGMA cache_size = -2000")
    driver.execute("PRAGMA wal_autocheckpoint = 1000")
    driver.execute("PRAGMA mmap_size = 1048576")
    before = _pragmas(connection)
    during = []
    path = write_csv(tmp_path / "items.csv", ROWS[:3])
    run_import(
        session_factory,
        path,
        options=intake_options,
        columns=COLUMNS,
        source="cache",
        on_result=lambda *_result: during.append(_pragmas(connection)),
    )

    assert during == [IMPORT_PRAGMAS] * 3
    assert (
        _pragmas(connection)
        == before
        == {"cache_size": -2000, "wal_autocheckpoint": 1000, "mmap_size": 1048576}
    )


def test_an_import_through_an_engine_commits_every_batch_and_leaves_its_connection_as_it_was(
    fresh_db_url, intake_options, tmp_path
):
    from models import migrate
    from models.db import make_engine, make_sessionmaker

    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    is_sqlite = engine.dialect.name == "sqlite"
    if is_sqlite:
        with engine.connect() as pooled:
            before = _pragmas(pooled)
    path = write_csv(tmp_path / "items.csv", ROWS)
    summary = run_import(
        make_sessionmaker(engine), path, options=intake_options, columns=COLUMNS, source="e", batch_size=2
    )

    assert summary.new == 5
    if is_sqlite:
        with engine.connect() as pooled:  # the connection the import used, back from the pool
            assert _pragmas(pooled) == before
    engine.dispose()
    other = make_engine(fresh_db_url)
    with make_sessionmaker(other)() as session:
        assert len(stored(session, "e")) == 5
    other.dispose()


def test_an_import_sets_the_objects_it_found_aside_from_the_collector_and_back(
    session_factory, intake_options, tmp_path
):
    assert gc.get_freeze_count() == 0
    frozen = []
    path = write_csv(tmp_path / "items.csv", ROWS[:3])
    run_import(
        session_factory,
        path,
        options=intake_options,
        columns=COLUMNS,
        source="gc",
        on_result=lambda *_result: frozen.append(gc.get_freeze_count()),
    )

    assert len(frozen) == 3 and min(frozen) > 1000
    assert gc.get_freeze_count() == 0


def test_an_import_leaves_objects_someone_else_froze_frozen(session_factory, intake_options, tmp_path):
    path = write_csv(tmp_path / "items.csv", ROWS[:3])
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        run_import(session_factory, path, options=intake_options, columns=COLUMNS, source="gc")
        assert gc.get_freeze_count() > before // 2  # not unfrozen (a few may have been freed)
    finally:
        gc.unfreeze()


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]),
)
def test_sqlite_text_of_a_completion_time_is_sqlalchemys(naive, tz):
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    fast = dict(items_bulk._row_processors(dialect))[len(items_bulk._ROW_INSERT_COLUMNS) - 1]
    value = naive.replace(tzinfo=tz)

    assert fast(value) == items_bulk._bind_processor(dialect, "completed_at")(value)


def test_a_reimport_of_thousands_of_rows_finds_each_one(session, session_factory, intake_options, tmp_path):
    # More keys than one look-up takes (1,000), and a last look-up that is not full.
    rows = [
        [f"K{n:05d}", "SWJ", "税务局", "契税申报", "窗口", "", f"1381234{n:04d}", "2026-09-15 10:23:00"]
        for n in range(2_345)
    ]
    first, _ = import_file(session_factory, intake_options, write_csv(tmp_path / "a.csv", rows), "many")
    rows[7][3] = rows[2_100][3] = "契税申报（补正）"
    second, _ = import_file(session_factory, intake_options, write_csv(tmp_path / "b.csv", rows), "many")

    assert first["new"] == 2_345
    assert (second["new"], second["updated"], second["unchanged"]) == (0, 2, 2_343)
