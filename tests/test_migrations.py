"""The migrations build the schema the models describe, on every backend."""

import os
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from models import migrate
from models.db import make_engine
from models.schema import metadata


def test_migrations_upgrade_empty_database_to_head(fresh_db_url):
    engine = make_engine(fresh_db_url)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_init_says_what_it_migrates_and_not_how_alembic_sets_itself_up(tmp_path):
    # Alembic sets its plugins up once a process: a fresh one, as a site runs `init` or `demo`.
    env = {**os.environ, "RETURNVISIT_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db"}
    env.pop("RETURNVISIT_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-c", "from console.cli import main; main()", "init"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "Running upgrade 0004 -> 0005" in result.stderr
    assert "setup plugin" not in result.stderr


def test_upgrade_is_idempotent(fresh_db_url):
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    engine.dispose()


def test_models_match_migrations(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_downgrade_to_base_and_back(fresh_db_url):
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert "service_items" not in inspect(engine).get_table_names()
    migrate.upgrade(engine)
    assert migrate.is_at_head(engine)
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/wal.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
