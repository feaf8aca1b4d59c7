"""SQLite transactions take the write lock up front and wait for it briefly, not by SQLite's long sleeps."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from models import db
from models.db import KeptConnection, make_engine


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/lock.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine
    engine.dispose()


def hold_the_write_lock(engine, seconds: float) -> tuple[threading.Thread, list[float]]:
    """Start a thread whose transaction holds the write lock for `seconds`; return it once it does,
    with the list it appends the time of the release to."""
    held = threading.Event()
    released_at: list[float] = []

    def holder() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            held.set()
            time.sleep(seconds)
            released_at.append(time.monotonic())

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    return thread, released_at


@pytest.mark.parametrize("round_", range(3))  # SQLite's own sleeps could land close by luck once
def test_a_waiting_transaction_starts_soon_after_the_lock_is_released(sqlite_engine, round_):
    thread, released_at = hold_the_write_lock(sqlite_engine, 0.5)
    with sqlite_engine.begin() as conn:
        started = time.monotonic()
        conn.execute(text("INSERT INTO t VALUES (2)"))
    thread.join()
    # SQLite's own busy handler would be sleeping 100 ms at a time by now.
    assert 0 <= started - released_at[0] < 0.02
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2


def test_a_lock_held_past_the_timeout_fails_with_database_locked(sqlite_engine, monkeypatch):
    monkeypatch.setattr(db, "WRITE_LOCK_TIMEOUT", 0.2)
    with sqlite_engine.begin() as holder:
        holder.execute(text("INSERT INTO t VALUES (1)"))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            with sqlite_engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (2)"))
        assert 0.2 <= time.monotonic() - started < 2
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
        # The waiting connection got its normal busy timeout back for everything else.
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000


def test_a_kept_connection_waits_for_the_lock_without_a_busy_handler(sqlite_engine):
    # The webhooks' kept connection has SQLite's busy handler off for good: its transactions still
    # wait for the write lock (by _sqlite_begin's own polling) and start as soon as it is free.
    kept = KeptConnection(sqlite_engine)
    connection = kept.take()
    assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 0
    kept.release()
    thread, released_at = hold_the_write_lock(sqlite_engine, 0.3)
    connection = kept.take()
    connection.execute(text("INSERT INTO t VALUES (2)"))
    started = time.monotonic()
    connection.commit()
    thread.join()
    assert 0 <= started - released_at[0] < 0.05
    assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 0  # no toggling per BEGIN
    kept.release()
    sqlite_engine.dispose()  # closes the kept connection for good: never back in the pool so
    assert kept.connection is None
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
