"""The hot webhooks' session (models.db.ConnectionSession, ivr.web.webhook_session): one transaction on
a connection the request holds, shared by driver-level statements and ORM work, committed or rolled
back as a whole, and the connection always handed back. On a real engine, committing for real."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import bindparam, func, insert, select

from ivr.app import create_app
from models import migrate
from models.db import ConnectionSession, connection_session, make_engine, make_sessionmaker
from models.departments import Department
from models.driver_sql import DriverStatement
from models.settings import load_settings
from models.surveys import Answer, Survey

NOW = datetime(2026, 11, 30, 2, tzinfo=UTC)
BENCH = Path(__file__).resolve().parent.parent / "bench"
TOKEN = "bench0000000000"  # the voice benchmark's first survey
_ADD_DEPARTMENT = DriverStatement(
    insert(Department).values(
        code=bindparam("code"), name=bindparam("name"), kind="service", created_at=bindparam("created_at")
    )
)


@pytest.fixture
def engine(fresh_db_url):
    eng = make_engine(fresh_db_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


def codes(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(Department.code)))


def add_by_driver(session, code: str) -> None:
    _ADD_DEPARTMENT.rows(session, {"code": code, "name": code, "created_at": NOW})


def test_driver_statements_and_orm_work_commit_together(engine):
    session, connection = connection_session(make_sessionmaker(engine))
    assert isinstance(session, ConnectionSession) and connection is not None
    add_by_driver(session, "DRV")  # begins the connection's transaction
    session.add(Department(code="ORM", name="ORM", created_at=NOW))  # joins it
    session.commit()
    assert codes(engine) == {"DRV", "ORM"}
    session.close()
    connection.close()
    assert engine.pool.checkedout() == 0


def test_orm_first_then_driver_statements_commit_together(engine):
    session, connection = connection_session(make_sessionmaker(engine))
    session.add(Department(code="ORM", name="ORM", created_at=NOW))
    session.flush()  # the session begins the transaction
    add_by_driver(session, "DRV")  # and the statement runs in it
    session.commit()
    assert codes(engine) == {"DRV", "ORM"}
    session.close()
    connection.close()


def test_rollback_undoes_both_and_the_connection_works_on(engine):
    session, connection = connection_session(make_sessionmaker(engine))
    add_by_driver(session, "DRV")
    session.add(Department(code="ORM", name="ORM", created_at=NOW))
    session.flush()
    session.rollback()
    assert codes(engine) == set()
    add_by_driver(session, "AFTER")  # a new transaction on the same connection
    session.commit()
    assert codes(engine) == {"AFTER"}
    session.close()
    connection.close()


def test_closing_without_commit_stores_nothing(engine):
    session, connection = connection_session(make_sessionmaker(engine))
    add_by_driver(session, "DRV")
    session.close()
    connection.close()
    assert codes(engine) == set()
    assert engine.pool.checkedout() == 0


def test_a_factory_bound_to_a_connection_gives_a_plain_session(session_factory):
    session, connection = connection_session(session_factory)
    assert connection is None and not isinstance(session, ConnectionSession)
    session.close()


def _benchmark_gather(url: str) -> tuple[str, str, str]:
    """The voice benchmark's store with one survey at the rating menu, and its signed Gather (digit 1)."""
    spec = importlib.util.spec_from_file_location("voice_webhook", BENCH / "voice_webhook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (request,) = module.build_store(url, 1)
    return request


def _post(app, request: tuple[str, str, str]):
    path, body, signature = request
    return app.test_client().post(
        path,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )


def _answers(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(Answer.question, Answer.value))]


def test_a_gather_commits_its_answer_and_hands_the_connection_back(engine, fresh_db_url):
    request = _benchmark_gather(fresh_db_url)
    settings = load_settings(env={}, overrides={"database": {"url": fresh_db_url}})
    app = create_app(settings, session_factory=make_sessionmaker(engine))
    response = _post(app, request)
    assert response.status_code == 200 and "<Say" in response.get_data(as_text=True)
    assert _answers(engine) == [("rating", "very_satisfied")]
    with engine.connect() as conn:
        state, script_state = conn.execute(
            select(Survey.state, Survey.script_state).where(Survey.token == TOKEN)
        ).one()
    assert state == "done" and "gather:0" in script_state["replies"]  # the survey row, same commit
    assert engine.pool.checkedout() == 0


def test_a_gather_that_fails_after_storing_keeps_nothing(engine, fresh_db_url, monkeypatch):
    request = _benchmark_gather(fresh_db_url)
    settings = load_settings(env={}, overrides={"database": {"url": fresh_db_url}})
    app = create_app(settings, session_factory=make_sessionmaker(engine))

    def broken(*_args, **_kwargs):
        raise RuntimeError("rendering failed after the answer was written")

    monkeypatch.setattr("ivr.voice._render", broken)
    response = _post(app, request)
    assert response.status_code == 200 and "<Hangup" in response.get_data(as_text=True)  # the apology
    assert _answers(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Answer)) == 0
        stored = conn.scalar(select(Survey.script_state).where(Survey.token == TOKEN))
    assert stored["engine"]["seq"] == 0  # the survey is where it was
    assert engine.pool.checkedout() == 0
