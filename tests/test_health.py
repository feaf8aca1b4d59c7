"""Liveness and readiness of both web apps, with the database up, down, unreachable and behind."""

from __future__ import annotations

import logging
import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from console.web import create_console_app
from ivr import health
from ivr.app import create_app
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.settings import load_settings

APPS = {"webhook": create_app, "console": create_console_app}


@pytest.fixture(params=sorted(APPS))
def make_app(request):
    """Factory: the webhook app or the staff console on a database URL (or a session factory)."""

    engines = []

    def make(url: str, *, session_factory=None):
        settings = load_settings(env={}, overrides={"database": {"url": url}})
        if session_factory is None:
            engines.append(make_engine(url))
            session_factory = make_sessionmaker(engines[-1])
        app = APPS[request.param](settings, session_factory=session_factory)
        app.config["TESTING"] = True
        return app

    yield make
    for engine in engines:
        engine.dispose()


def test_healthz_answers_without_touching_the_database(make_app, tmp_path):
    app = make_app(f"sqlite:///{tmp_path}")  # a directory: no database could be opened there
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_database_without_a_login(make_app, settings, session_factory):
    app = make_app(settings.database.url, session_factory=session_factory)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200  # not a redirect to the console's login page
    body = response.get_json()
    assert body["status"] == "ready" and body["database"] == "ok"
    assert body["schema"] == migrate.head_revision()


def test_readyz_refuses_a_sqlite_file_that_cannot_be_opened(make_app, tmp_path, caplog):
    app = make_app(f"sqlite:///{tmp_path}")  # the path is a directory
    with caplog.at_level(logging.WARNING, logger="ivr.health"):
        response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "reason": "database unreachable"}
    assert "readyz: database unreachable: OperationalError" in caplog.text


def test_readyz_refuses_an_unreachable_postgresql_server(make_app):
    # Nothing listens on port 1: the connection is refused at once.
    app = make_app("postgresql+psycopg://postgres@127.0.0.1:1/returnvisit")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.get_json()["reason"] == "database unreachable"


def test_readyz_refuses_a_database_never_migrated(make_app, fresh_db_url, caplog):
    app = make_app(fresh_db_url)
    with caplog.at_level(logging.WARNING, logger="ivr.health"):
        response = app.test_client().get("/readyz")
    assert response.status_code == 503
    reason = response.get_json()["reason"]
    assert reason == f"schema at revision none, needs {migrate.head_revision()} (run `returnvisit init`)"
    assert "schema at revision none" in caplog.text


def test_readyz_refuses_a_database_behind_the_newest_migration(make_app, fresh_db_url):
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine, "0003")
    engine.dispose()
    response = make_app(fresh_db_url).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"].startswith("schema at revision 0003, needs ")


def test_readyz_turns_unready_when_the_database_goes_away(make_app, fresh_db_url, backend, monkeypatch):
    monkeypatch.setattr(health, "READY_CACHE_SECONDS", 0.0)
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    app = make_app(fresh_db_url, session_factory=make_sessionmaker(engine))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    if backend == "postgresql":
        name = make_url(fresh_db_url).database
        admin = create_engine(os.environ["RETURNVISIT_TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
    response = client.get("/readyz")
    engine.dispose()
    assert response.status_code == 503
    expected = "database unreachable" if backend == "postgresql" else "schema at revision none"
    assert response.get_json()["reason"].startswith(expected)


def test_readyz_answers_503_whatever_the_failure(make_app, settings, monkeypatch):
    def broken():
        raise RuntimeError("pool exhausted")

    app = make_app(settings.database.url, session_factory=broken)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.get_json()["status"] == "unavailable"


def test_a_ready_answer_is_reused_briefly(make_app, settings, session_factory, monkeypatch):
    app = make_app(settings.database.url, session_factory=session_factory)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    checks = []
    monkeypatch.setattr(health, "check_ready", lambda: checks.append(1) or ({}, 503))
    assert client.get("/readyz").status_code == 200 and checks == []
    monkeypatch.setattr(health, "READY_CACHE_SECONDS", 0.0)
    app.extensions["returnvisit.readyz"].clear()
    assert client.get("/readyz").status_code == 503 and checks == [1]
