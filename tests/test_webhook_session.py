"""The hot webhooks' session (models.db.ConnectionSession, ivr.web.webhook_session): one transaction on
a connection the request holds, shared by driver-level statements and ORM work, committed or rolled
back as a whole, and the connection always handed back. On a real engine, committing for real."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import bindparam, event, func, insert, select, text

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


def _benchmark_gathers(url: str, count: int) -> list[tuple[str, str, str]]:
    """The voice benchmark's store with surveys at the rating menu, and their signed Gathers (digit 1)."""
    spec = importlib.util.spec_from_file_location("voice_webhook", BENCH / "voice_webhook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_store(url, count)


def _benchmark_gather(url: str) -> tuple[str, str, str]:
    (request,) = _benchmark_gathers(url, 1)
    return request


def _post(app, request: tuple[str, str, str], *, threaded: bool = False):
    path, body, signature = request
    return app.test_client().post(
        path,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
        environ_overrides={"wsgi.multithread": threaded},
    )


def _pool_events(engine) -> dict[str, int]:
    counts = {"checkout": 0, "checkin": 0, "invalidate": 0}
    for name in counts:
        event.listen(engine, name, lambda *_args, name=name: counts.__setitem__(name, counts[name] + 1))
    return counts


def _answers(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(Answer.question, Answer.value))]


def test_a_gather_commits_its_answer_and_hands_the_connection_back(engine, fresh_db_url):
    # A threaded server's request checks a connection out of the pool and hands it back.
    request = _benchmark_gather(fresh_db_url)
    settings = load_settings(env={}, overrides={"database": {"url": fresh_db_url}})
    app = create_app(settings, session_factory=make_sessionmaker(engine))
    response = _post(app, request, threaded=True)
    assert response.status_code == 200 and "<Say" in response.get_data(as_text=True)
    assert _answers(engine) == [("rating", "very_satisfied")]
    with engine.connect() as conn:
        state, script_state = conn.execute(
            select(Survey.state, Survey.script_state).where(Survey.token == TOKEN)
        ).one()
    assert state == "done" and "gather:0" in script_state["replies"]  # the survey row, same commit
    assert engine.pool.checkedout() == 0
    assert app.extensions["returnvisit"]["kept"].connection is None


def test_a_process_serving_one_request_at_a_time_keeps_its_connection(engine, fresh_db_url):
    # gunicorn's sync workers (wsgi.multithread false): one checkout for every Gather of the process,
    # nothing left open between requests, and the connection closed for good with the engine.
    requests = _benchmark_gathers(fresh_db_url, 3)
    settings = load_settings(env={}, overrides={"database": {"url": fresh_db_url}})
    app = create_app(settings, session_factory=make_sessionmaker(engine))
    events = _pool_events(engine)
    for request in requests:
        response = _post(app, request)
        assert response.status_code == 200 and "<Say" in response.get_data(as_text=True)
        kept = app.extensions["returnvisit"]["kept"].connection
        assert kept is not None and not kept.in_transaction()
    assert events == {"checkout": 1, "checkin": 0, "invalidate": 0}
    assert _answers(engine) == [("rating", "very_satisfied")] * 3
    engine.dispose()
    assert app.extensions["returnvisit"]["kept"].connection is None
    assert events["invalidate"] == 1  # closed, not handed back to a pool that is gone
    assert engine.pool.checkedout() == 0


def test_a_process_serving_one_request_at_a_time_reuses_its_session_closed(engine, fresh_db_url):
    # One session on the kept connection, closed after each request: nothing of one request is in
    # the next one's session, and a new connection gets a new session.
    requests = _benchmark_gathers(fresh_db_url, 3)
    settings = load_settings(env={}, overrides={"database": {"url": fresh_db_url}})
    app = create_app(settings, session_factory=make_sessionmaker(engine))
    seen = []

    @app.before_request
    def _look() -> None:
        from ivr import web

        session = web.webhook_session()
        seen.append((session, len(session.identity_map), session.in_transaction()))
        session.get(Department, 1)  # something in its identity map for the next request to not see

    for request in requests[:2]:
        assert _post(app, request).status_code == 200
    kept = app.extensions["returnvisit"]["kept"]
    kept.close()  # e.g. a connection found dead: the next request gets a new one
    assert _post(app, requests[2]).status_code == 200
    (first, *_), (second, *rest), (third, *_) = seen
    assert second is first and rest == [0, False]
    assert third is not first and isinstance(third, ConnectionSession)
    assert _answers(engine) == [("rating", "very_satisfied")] * 3


def test_a_kept_connection_the_database_server_closed_is_replaced(engine, fresh_db_url, backend):
    if backend != "postgresql":
        pytest.skip("a SQLite file does not close its connections")
    first, second = _benchmark_gathers(fresh_db_url, 2)
    settings = load_settings(env={}, overrides={"database": {"url": fresh_db_url}})
    app = create_app(settings, session_factory=make_sessionmaker(engine))
    assert _post(app, first).status_code == 200
    kept = app.extensions["returnvisit"]["kept"]
    pid = kept.connection.connection.dbapi_connection.info.backend_pid
    with engine.connect() as conn:  # an administrator (or a restart) ends the kept backend
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(100):  # until the server has closed it
        with engine.connect() as conn:
            if not conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}):
                break
    response = _post(app, second)
    assert response.status_code == 200 and "<Hangup" in response.get_data(as_text=True)
    assert "感谢" in response.get_data(as_text=True)  # the thanks, not the apology
    assert _answers(engine) == [("rating", "very_satisfied")] * 2
    assert kept.connection.connection.dbapi_connection.info.backend_pid != pid


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
    kept = app.extensions["returnvisit"]["kept"].connection
    assert kept is not None and not kept.in_transaction()  # rolled back, kept for the next request


def _run_with_the_entry_point(tmp_path, code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a new interpreter, configured as a gunicorn worker would be (a SQLite store)."""
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/w.db"\n', encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "RETURNVISIT_CONFIG": str(config)},
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_the_gunicorn_entry_point_sets_its_long_lived_objects_aside(tmp_path):
    # ivr.wsgi freezes what it built (gc.freeze): the collector's passes in a worker skip it.
    out = _run_with_the_entry_point(tmp_path, "import gc, ivr.wsgi; print(gc.get_freeze_count())")
    assert int(out.stdout.strip().splitlines()[-1]) > 10_000


def test_the_gunicorn_entry_point_logs_without_looking_up_the_caller(tmp_path):
    # Our JSON lines carry no file, line or function: a worker's logging does not look them up.
    code = (
        "import logging, ivr.wsgi; logging.getLogger('returnvisit.t').info('hi'); "
        "print(logging._srcfile is None)"
    )
    out = _run_with_the_entry_point(tmp_path, code)
    assert out.stdout.strip().splitlines()[-1] == "True"
    line = json.loads(out.stderr.strip().splitlines()[-1])
    assert line["message"] == "hi" and line["logger"] == "returnvisit.t"


def test_a_forked_child_never_uses_its_parents_kept_connection(engine):
    # gunicorn forks its workers: a connection kept before the fork belongs to the parent. The child
    # opens its own and leaves the parent's alone; the parent keeps using its own.
    from models.db import KeptConnection

    kept = KeptConnection(engine)
    parents = kept.take()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        code = 1
        try:
            code = 0 if kept.take() is not parents and not parents.closed else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert kept.take() is parents and parents.exec_driver_sql("SELECT 1").scalar() == 1
    kept.close()
