"""PostgreSQL pool checkout (models/db.py): no round trip for a live connection, a closed one replaced."""

from __future__ import annotations

import pytest
from pg_fixtures import terminate_backend

from models.db import make_engine


@pytest.fixture
def pg_engine(backend, fresh_db_url):
    if backend != "postgresql":
        pytest.skip("PostgreSQL's pool")
    engine = make_engine(fresh_db_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
def cursors_opened(monkeypatch):
    import psycopg

    opened: list[str] = []
    real = psycopg.Connection.cursor

    def counting(self, *args, **kwargs):
        opened.append("cursor")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "cursor", counting)
    return opened


def test_a_live_pooled_connection_is_handed_out_without_a_round_trip(pg_engine, cursors_opened):
    with pg_engine.connect() as connection:
        first_pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    cursors_opened.clear()

    with pg_engine.connect() as connection:  # the same pooled connection again
        assert cursors_opened == []  # no ping was sent
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() == first_pid


def test_a_connection_the_server_closed_is_replaced_at_checkout(pg_engine, fresh_db_url):
    with pg_engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    terminate_backend(fresh_db_url, pid)

    with pg_engine.connect() as connection:  # no error: the pool opened a new connection
        assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid


def test_pre_ping_still_works_when_asked_for(backend, fresh_db_url, cursors_opened):
    if backend != "postgresql":
        pytest.skip("PostgreSQL's pool")
    engine = make_engine(fresh_db_url, pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        cursors_opened.clear()
        with engine.connect():
            assert cursors_opened  # SQLAlchemy's own ping, one round trip per checkout
    finally:
        engine.dispose()
