"""The returnvisit CLI: init, import, demo-data and demo, run as a user would."""

import json
import socket

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from console.cli import main
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.items import ServiceItem
from models.staff import Role, StaffUser


def free_port() -> int:
    """A loopback port free now (the demo serves on it and the next one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def invoke(args, db_url, **kwargs):
    runner = CliRunner()
    return runner.invoke(
        main, args, env={"RETURNVISIT_DATABASE_URL": db_url}, catch_exceptions=False, **kwargs
    )


def test_init_creates_schema_and_admin_and_is_idempotent(fresh_db_url, tmp_path):
    password = tmp_path / "pw"
    password.write_text("s3cret-password\n", encoding="utf-8")
    first = invoke(["init", "--admin", "root", "--password-file", str(password)], fresh_db_url)
    assert first.exit_code == 0, first.output
    assert "created admin user 'root'" in first.output
    second = invoke(["init", "--admin", "root", "--password-file", str(password)], fresh_db_url)
    assert second.exit_code == 0 and "already exists" in second.output
    engine = make_engine(fresh_db_url)
    assert migrate.is_at_head(engine)
    with make_sessionmaker(engine)() as session:
        users = session.scalars(select(StaffUser)).all()
        assert [(u.username, u.role) for u in users] == [("root", Role.ADMIN)]
        assert "s3cret" not in users[0].password_hash
    engine.dispose()


def test_init_refuses_a_short_admin_password(fresh_db_url, tmp_path):
    password = tmp_path / "pw"
    password.write_text("short\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["init", "--admin", "root", "--password-file", str(password)],
        env={"RETURNVISIT_DATABASE_URL": fresh_db_url},
    )
    assert result.exit_code != 0
    assert "at least 8 characters" in result.output


def test_init_refuses_an_admin_name_longer_than_its_column(fresh_db_url, tmp_path):
    # PostgreSQL refuses a value longer than its column (SQLite stores it): a clear error instead.
    password = tmp_path / "pw"
    password.write_text("s3cret-password\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["init", "--admin", "a" * 65, "--password-file", str(password)],
        env={"RETURNVISIT_DATABASE_URL": fresh_db_url},
    )
    assert result.exit_code == 1
    assert "username is longer than 64 characters" in result.output
    engine = make_engine(fresh_db_url)
    with make_sessionmaker(engine)() as session:
        assert session.scalars(select(StaffUser)).all() == []
    engine.dispose()


def test_import_prints_bad_lines_and_a_json_summary(tmp_path):
    db_url = f"sqlite:///{tmp_path}/cli.db"
    invoke(["init"], db_url)
    path = tmp_path / "items.csv"
    path.write_text(
        "办件编号,部门编码,事项名称,联系电话,办结时间\n"
        "A1,SWJ,契税申报,13812345678,2026-09-01 10:00\n"
        "A2,SWJ,契税申报,95588,2026-09-01 10:00\n"
        "A3,SCJ,企业开办登记,13912345678,2026-09-02 11:00\n"
        "A4,SCJ,企业开办登记,1990094897,2026-09-02 11:00\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main, ["import", str(path), "--json"], env={"RETURNVISIT_DATABASE_URL": db_url}
    )
    assert result.exit_code == 0, result.output
    assert "items.csv line 3:" in result.stderr
    # A number one digit short is still a citizen's number: the line finds the row, the number is masked.
    assert "items.csv line 5: phone '199***4897': too short" in result.stderr
    assert "1990094897" not in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["read"] == 4 and summary["new"] == 2 and summary["skipped"] == 2
    assert summary["skipped_by_reason"] == {"no usable phone": 2}


def test_import_refuses_a_source_longer_than_its_column(fresh_db_url, tmp_path):
    invoke(["init"], fresh_db_url)
    path = tmp_path / "items.csv"
    path.write_text(
        "办件编号,部门编码,事项名称,联系电话,办结时间\nA1,SWJ,契税申报,13812345678,2026-09-01 10:00\n",
        encoding="utf-8",
    )
    refused = CliRunner().invoke(
        main, ["import", str(path), "--source", "s" * 65], env={"RETURNVISIT_DATABASE_URL": fresh_db_url}
    )
    assert refused.exit_code == 2
    assert "--source" in refused.output and "64 characters" in refused.output
    engine = make_engine(fresh_db_url)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(ServiceItem)) == 0
    engine.dispose()
    result = invoke(["import", str(path), "--source", "s" * 64, "--json"], fresh_db_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["new"] == 1


def test_import_of_a_file_without_required_columns_fails_with_a_message(tmp_path):
    db_url = f"sqlite:///{tmp_path}/cli.db"
    invoke(["init"], db_url)
    path = tmp_path / "items.csv"
    path.write_text("foo,bar\n1,2\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["import", str(path)], env={"RETURNVISIT_DATABASE_URL": db_url})
    assert result.exit_code == 1
    assert "no column for external_id" in result.output


def test_demo_data_then_import_creates_items(tmp_path):
    db_url = f"sqlite:///{tmp_path}/cli.db"
    invoke(["init"], db_url)
    out = tmp_path / "demo.csv"
    assert invoke(["demo-data", "--items", "200", "--out", str(out)], db_url).exit_code == 0
    result = invoke(["import", str(out), "--json"], db_url)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["read"] == 200
    assert summary["new"] + summary["skipped"] == 200
    assert summary["new"] > 150
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ServiceItem)) == summary["new"]
    engine.dispose()


def test_demo_sets_up_and_imports_without_serving(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db_url = f"sqlite:///{tmp_path}/demo.db"
    result = invoke(["demo", "--items", "100", "--no-serve"], db_url)
    assert result.exit_code == 0, result.output
    assert "database ready" in result.output
    assert "imported: " in result.output
    assert (tmp_path / "var" / "demo-items.csv").exists()


def test_demo_gives_the_scheduler_lock_up_when_it_stops(tmp_path, monkeypatch):
    from scheduler.locks import SCHEDULER_LOCK, lock_holder

    monkeypatch.chdir(tmp_path)
    port = free_port()
    db_url = f"sqlite:///{tmp_path}/demo.db"
    result = invoke(["demo", "--items", "20", "--ticks", "1", "--port", str(port)], db_url)
    assert result.exit_code == 0, result.output
    assert "tick 0" in result.output and "stopped" in result.output
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        assert lock_holder(session, SCHEDULER_LOCK) is None
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "url", "says"),
    [
        (["status"], "fresh", "has no current schema: run `returnvisit init` first"),
        (["campaign", "list"], "fresh", "has no current schema: run `returnvisit init` first"),
        (["status"], "bogus://x", "database.url: not a usable database URL"),
        (["status"], "postgresql+psycopg://u@127.0.0.1:notaport/rv", "database.url: not a usable"),
        (["status"], "sqlite:////proc/no/such.db", "cannot open the database"),
        (["demo-data", "--out", "items.txt"], "fresh", "items.txt: end the name with .csv"),
        (["demo-data", "--out", "nodir/items.csv"], "fresh", "directory nodir does not exist"),
    ],
    ids=["before-init", "campaign-before-init", "bogus-url", "bad-port", "unopenable", "demo-data-format",
         "demo-data-dir"],
)
def test_a_command_that_cannot_run_says_why_without_a_traceback(tmp_path, monkeypatch, args, url, says):
    monkeypatch.chdir(tmp_path)
    db_url = f"sqlite:///{tmp_path}/fresh.db" if url == "fresh" else url
    result = CliRunner().invoke(main, args, env={"RETURNVISIT_DATABASE_URL": db_url})
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit)  # click's error exit, not an exception
    assert says in result.output


@pytest.mark.parametrize(
    ("name", "content", "extra", "says"),
    [
        ("fake.xlsx", b"a,b\n1,2\n", [], "fake.xlsx: not an XLSX workbook"),
        ("items.csv", b"a,b\n1,2\n", ["--format", "xlsx"], "items.csv: not an XLSX workbook"),
        ("rand.csv", bytes(range(256)) * 40, [], "rand.csv: cannot be read as text after line 0"),
    ],
    ids=["fake-xlsx", "csv-as-xlsx", "binary-csv"],
)
def test_an_unreadable_import_file_says_why(tmp_path, name, content, extra, says):
    db_url = f"sqlite:///{tmp_path}/cli.db"
    invoke(["init"], db_url)
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["import", str(path), *extra], env={"RETURNVISIT_DATABASE_URL": db_url})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert says in result.output


def test_a_backup_that_cannot_be_written_says_why(tmp_path):
    db_url = f"sqlite:///{tmp_path}/cli.db"
    invoke(["init"], db_url)
    result = CliRunner().invoke(main, ["backup", "/proc/copy.db"], env={"RETURNVISIT_DATABASE_URL": db_url})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "cannot copy the database to /proc/copy.db" in result.output


def test_cases_list_refuses_a_quarter_that_is_not_one(tmp_path):
    db_url = f"sqlite:///{tmp_path}/cli.db"
    invoke(["init"], db_url)
    for value in ("2026Q5", "Q3"):
        result = CliRunner().invoke(
            main, ["cases", "list", "--quarter", value], env={"RETURNVISIT_DATABASE_URL": db_url}
        )
        assert result.exit_code == 2 and "--quarter" in result.output and value in result.output
    env = {"RETURNVISIT_DATABASE_URL": db_url}
    ok = CliRunner().invoke(main, ["cases", "list", "--quarter", "2026q3"], env=env)
    assert ok.exit_code == 0, ok.output


def test_cases_answer_refuses_feedback_given_twice(tmp_path):
    db_url = f"sqlite:///{tmp_path}/cli.db"
    invoke(["init"], db_url)
    feedback = tmp_path / "feedback.txt"
    feedback.write_text("已整改", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["cases", "answer", "1", "--feedback", "已整改", "--feedback-file", str(feedback)],
        env={"RETURNVISIT_DATABASE_URL": db_url},
    )
    assert result.exit_code == 2 and "not both" in result.output



def test_a_case_id_or_feedback_file_that_cannot_be_used_says_why(tmp_path):
    db_url = f"sqlite:///{tmp_path}/cli.db"
    invoke(["init"], db_url)
    env = {"RETURNVISIT_DATABASE_URL": db_url}
    huge = CliRunner().invoke(main, ["cases", "show", "99999999999999999999"], env=env)
    assert huge.exit_code == 1 and "no case 99999999999999999999" in huge.output
    latin = tmp_path / "feedback.txt"
    latin.write_bytes(b"\xff\xfe\xe5\xb7\xb2")
    result = CliRunner().invoke(main, ["cases", "answer", "1", "--feedback-file", str(latin)], env=env)
    assert result.exit_code == 2 and "not UTF-8 text" in result.output
    assert isinstance(result.exception, SystemExit)


def test_demo_stopped_by_term_gives_the_scheduler_lock_up(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from scheduler.locks import SCHEDULER_LOCK, lock_holder

    port = free_port()
    db_url = f"sqlite:///{tmp_path}/demo.db"
    process = subprocess.Popen(
        [sys.executable, "-c", "from console.cli import main; main()", "demo", "--items", "20", "--port",
         str(port)],
        cwd=tmp_path, env={**os.environ, "RETURNVISIT_DATABASE_URL": db_url},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        for line in process.stdout:  # wait until the loop runs (it holds the lock from its first tick)
            if line.startswith("tick 0") or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "stopped" in output
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        assert lock_holder(session, SCHEDULER_LOCK) is None
    engine.dispose()
