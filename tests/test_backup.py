"""Backups: `returnvisit backup FILE` copies a live SQLite database that restores identical; PostgreSQL is
refused with the pg_dump procedure, and that documented procedure restores an identical database too."""

import os
import shutil
import sqlite3
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from scheduler_fixtures import add_campaign, add_item, add_survey
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from console.cli import main
from models import migrate
from models.backup import BackupError, backup_sqlite, sqlite_file
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.messages import Message
from models.operations import SchedulerHeartbeat
from models.schema import metadata
from models.surveys import Answer, Attempt, SurveyState

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
PG_URL = os.environ.get("RETURNVISIT_TEST_DATABASE_URL", "")


def _postgres(statement: str) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(statement))
    admin.dispose()


def _fresh_postgres_database(name: str) -> str:
    _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _postgres(f'CREATE DATABASE "{name}"')
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(name: str) -> None:
    _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _populate(url, items=40):
    """Migrate a database and fill it with departments, items, surveys, answers, texts, a heartbeat."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        dept = Department(code="SWJ", name="税务局")
        session.add(dept)
        session.flush()
        campaign = add_campaign(session, NOW)
        for n in range(items):
            item = add_item(session, dept, NOW - timedelta(days=2, minutes=n), citizen_name=f"市民{n}")
            done = n % 2 == 0
            survey = add_survey(
                session,
                campaign,
                item,
                state=SurveyState.DONE if done else SurveyState.SCHEDULED,
                disposition="complete" if done else None,
                next_attempt_at=None if done else NOW + timedelta(hours=n),
                script_state={"engine": {"node": "end", "n": n}, "note": "满意"},
            )
            session.add(Attempt(survey_id=survey.id, channel="voice", number=1, status="completed"))
            if done:
                session.add(
                    Answer(survey_id=survey.id, question="rating", value="satisfied", channel="voice")
                )
                session.add(
                    Message(
                        direction="inbound",
                        survey_id=survey.id,
                        from_e164=item.phone_e164,
                        to_e164="+12025550101",
                        body="1 很好 ＯＫ",
                        status="received",
                    )
                )
        session.add(
            SchedulerHeartbeat(
                owner="box:1:a",
                host="box",
                pid=1,
                started_at=NOW,
                last_tick_at=NOW,
                last_tick_seconds=0.25,
                last_tick_ok=True,
                last_tick_jobs={"pick": {"counts": {"picked": 3}}},
            )
        )
        session.commit()
    return engine


def _tables(engine):
    """Every row of every table (and the Alembic revision), in primary-key order."""
    out = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            out[table.name] = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
        out["alembic_version"] = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    return out


def _sqlite_schema(path):
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()


def test_a_backup_restores_to_an_identical_database(tmp_path):
    url = f"sqlite:///{tmp_path}/live.db"
    engine = _populate(url)
    steps = []
    result = backup_sqlite(
        url, tmp_path / "backup.db", pages_per_step=2, progress=lambda c, t: steps.append((c, t))
    )
    assert result.path == tmp_path / "backup.db" and result.pages == steps[-1][1] > 2
    assert len(steps) > 1 and steps[-1][0] == steps[-1][1]
    assert [c for c, _ in steps] == sorted(c for c, _ in steps)
    assert not (tmp_path / "backup.db.partial").exists()

    # Restore as docs/deploy.md says: services stopped, the copy put in place of the database file.
    restored = tmp_path / "restored" / "live.db"
    restored.parent.mkdir()
    shutil.copy(tmp_path / "backup.db", restored)
    copy = make_engine(f"sqlite:///{restored}")
    assert migrate.is_at_head(copy)
    original = _tables(engine)
    assert sum(len(rows) for rows in original.values()) > 100
    assert _tables(copy) == original
    assert _sqlite_schema(restored) == _sqlite_schema(tmp_path / "live.db")
    with sqlite3.connect(tmp_path / "backup.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    copy.dispose()
    engine.dispose()


def test_a_write_during_the_backup_is_in_the_copy(tmp_path):
    url = f"sqlite:///{tmp_path}/live.db"
    engine = _populate(url, items=200)
    sessions = make_sessionmaker(engine)
    written = []

    def write_once(copied, total):
        if not written:  # the webhook app stores an answer while the backup runs
            with sessions() as session:
                session.add(Department(code="NEW", name="写入于备份中"))
                session.commit()
            written.append(copied)

    backup_sqlite(url, tmp_path / "backup.db", pages_per_step=1, progress=write_once)
    assert (
        written
        and written[0] < sqlite3.connect(tmp_path / "backup.db").execute("PRAGMA page_count").fetchone()[0]
    )
    copy = make_engine(f"sqlite:///{tmp_path / 'backup.db'}")
    assert _tables(copy) == _tables(engine)
    assert "NEW" in [row.code for row in _tables(copy)["departments"]]
    copy.dispose()
    engine.dispose()


def test_a_backup_never_overwrites_and_names_what_is_wrong(tmp_path):
    url = f"sqlite:///{tmp_path}/live.db"
    _populate(url, items=1).dispose()
    (tmp_path / "taken.db").write_text("keep me")
    with pytest.raises(BackupError, match="already exists"):
        backup_sqlite(url, tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_text() == "keep me"
    with pytest.raises(BackupError, match="does not exist"):
        backup_sqlite(f"sqlite:///{tmp_path}/missing.db", tmp_path / "b.db")
    with pytest.raises(BackupError, match="directory .* does not exist"):
        backup_sqlite(url, tmp_path / "no" / "b.db")
    with pytest.raises(BackupError, match="in-memory"):
        sqlite_file("sqlite://")


def test_postgresql_is_refused_with_the_pg_dump_procedure():
    with pytest.raises(BackupError) as refused:
        sqlite_file("postgresql+psycopg://returnvisit@127.0.0.1:5432/returnvisit")
    assert "pg_dump --format=custom" in str(refused.value) and "docs/deploy.md" in str(refused.value)


def test_backup_command_copies_sqlite_and_refuses_postgresql(tmp_path):
    url = f"sqlite:///{tmp_path}/live.db"
    _populate(url, items=3).dispose()
    runner = CliRunner()
    done = runner.invoke(main, ["backup", str(tmp_path / "b.db")], env={"RETURNVISIT_DATABASE_URL": url})
    assert done.exit_code == 0, done.output
    assert f"to {tmp_path / 'b.db'} in " in done.output and "integrity check ok" in done.output
    again = runner.invoke(main, ["backup", str(tmp_path / "b.db")], env={"RETURNVISIT_DATABASE_URL": url})
    assert again.exit_code == 1 and "already exists" in again.output
    pg = runner.invoke(
        main,
        ["backup", str(tmp_path / "pg.db")],
        env={"RETURNVISIT_DATABASE_URL": "postgresql+psycopg://rv@127.0.0.1:5432/rv"},
    )
    assert pg.exit_code == 1 and "pg_dump" in pg.output and not (tmp_path / "pg.db").exists()


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (RETURNVISIT_TEST_DATABASE_URL)")
@pytest.mark.skipif(not shutil.which("pg_dump"), reason="needs pg_dump and pg_restore")
def test_the_documented_postgresql_procedure_restores_an_identical_database(tmp_path):
    suffix = uuid.uuid4().hex[:10]
    source_name, target_name = f"rv_backup_src_{suffix}", f"rv_backup_dst_{suffix}"
    source_url = _fresh_postgres_database(source_name)
    target_url = _fresh_postgres_database(target_name)
    try:
        engine = _populate(source_url)
        dump = tmp_path / "returnvisit.dump"

        def libpq(url):  # the same database as a libpq URL, as pg_dump and pg_restore take it
            return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

        # docs/deploy.md, Backups: these two commands.
        subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", libpq(source_url)], check=True)
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={libpq(target_url)}", str(dump)],
            check=True,
        )
        copy = make_engine(target_url)
        assert migrate.is_at_head(copy)
        assert _tables(copy) == _tables(engine)
        copy.dispose()
        engine.dispose()
    finally:
        _drop_postgres_database(source_name)
        _drop_postgres_database(target_name)
