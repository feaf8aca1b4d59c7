"""Engines and sessions: SQLite (WAL, foreign keys on) and PostgreSQL through psycopg 3."""

from __future__ import annotations

import json
import os
import select
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

# Per SQLite connection: a page cache of up to 64 MiB (it grows only as pages are read). The quarterly
# figures read tens of MB of index pages; with SQLite's default 2 MB cache every join re-read them.
SQLITE_CACHE_KIB = 65536
# No memory map of the database file. It saved nothing measurable on the quarterly figures (the page
# cache does that work), and it cost every webhook: with two gunicorn workers writing, each commit of
# one worker makes the other remap and fault in the pages it touches, 0.15 ms of CPU a Gather and a
# sixth of the voice benchmark's rate (issue 3). Set explicitly: a build may default to a map.
SQLITE_MMAP_BYTES = 0
# A checkpoint once the WAL holds 4,000 pages (16 MiB) rather than SQLite's 1,000. With two web
# workers writing, a checkpoint seldom finishes at its first try (the other worker is reading an
# older snapshot), and every commit after it tries again, each try syncing the files twice: with
# 1,000 pages a Gather paid 0.1 fdatasync on average, with 4,000 a quarter of that, and the voice
# benchmark's SQLite rate rose 2-3 % (issue 3). The price is a longer pause in the request that
# runs a checkpoint (its p99 rose from 11-12 to 13-15 ms there) and a WAL file up to 16 MiB.
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 4000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (see _sqlite_begin) so savepoints and DDL behave.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable in WAL mode except for the last transactions on power loss.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
    cursor.close()


_PG_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE, without importing the driver for SQLite users

# How long a statement waits for a lock SQLite holds briefly (its own busy handler), and how long a
# transaction waits for the write lock and how often it looks again meanwhile.
BUSY_TIMEOUT_MS = 10_000
WRITE_LOCK_TIMEOUT = 10.0
_WRITE_LOCK_POLL = (0.0001, 0.002)  # first and longest pause between tries, in seconds


def _postgresql_utc(dbapi_connection: Any, _record: Any) -> None:
    # Every stored time is UTC (models.base.UTCDateTime). With the session in UTC, psycopg hands
    # back datetimes in datetime.timezone.utc, which UTCDateTime passes through at almost no cost,
    # instead of a ZoneInfo of the server's zone to be converted row by row. No query depends on
    # the session's time zone (local dates and quarters are computed in Python).
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.commit()


def _postgresql_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has closed; a round trip only when it may have.

    An idle connection receives nothing unless the server ends it (a restart, an administrator, an
    idle timeout: each sends an error and closes the socket) or sends a notice. So the socket is
    polled, which costs no round trip: when it has something to read the connection is pinged, and
    a dead one is refused (the pool then opens a new one). SQLAlchemy's pool_pre_ping would ping on
    every checkout, one round trip more for every webhook.
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the connection is closed")
    try:
        poller = select.poll()
        poller.register(dbapi_connection.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
        if not poller.poll(0):
            return  # nothing arrived: the server has not closed it
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if dbapi_connection.info.transaction_status != _PG_IDLE:
            dbapi_connection.rollback()
    except Exception as exc:  # noqa: BLE001 - any failure here means the connection is unusable
        raise DisconnectionError(f"the connection was lost: {exc}") from exc


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front, so concurrent writers wait instead of failing with
    # "database is locked" when a read transaction later tries to write. SQLite's own busy handler
    # sleeps 1, 2, 5, 10 ... ms between tries, far longer than our transactions hold the lock (well
    # under a millisecond on the webhooks): two web workers would spend most of their time asleep.
    # So the first try does not wait, and later ones are a tenth of a millisecond apart at first.
    raw = connection.connection.dbapi_connection
    if connection.info.get(_NO_BUSY_WAIT):
        _begin_immediate(raw)  # its busy handler is off for good (KeptConnection)
        return
    raw.execute("PRAGMA busy_timeout=0")
    try:
        _begin_immediate(raw)
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _begin_immediate(raw: sqlite3.Connection) -> None:
    pause, deadline = _WRITE_LOCK_POLL[0], time.monotonic() + WRITE_LOCK_TIMEOUT
    while True:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        time.sleep(pause)
        pause = min(pause * 2, _WRITE_LOCK_POLL[1])


# Connection info key: this SQLite connection's busy handler is off for good. Only for a connection
# whose every statement runs in a transaction begun by _sqlite_begin (which holds the write lock:
# nothing inside it waits for a lock in WAL mode), so the two PRAGMAs around BEGIN are not needed.
_NO_BUSY_WAIT = "returnvisit.sqlite_no_busy_wait"


def json_dumps(value: Any) -> str:
    """Encode a JSON column's value: orjson, text kept as UTF-8 (the standard library takes the rest)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits; anything neither can encode still raises
        return json.dumps(value, ensure_ascii=False)


def json_loads(text: str | bytes) -> Any:
    """Decode a JSON column's value (orjson; the standard library for what orjson refuses, e.g. NaN)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str, *, echo: bool = False, **kwargs: Any) -> Engine:
    """Create an engine for `url`, preparing SQLite files and pragmas.

    JSON columns (a survey's script state, a campaign's config) are encoded and decoded by orjson:
    the hot webhooks read and write a script state every request.
    """
    # Every table, before any session flushes: a foreign key names its table as text (cases.owner_id
    # -> staff_users), and a process that never imported that table's module (the webhook app, the
    # scheduler, the CLI) could not write a case. Imported here: the table modules import this one.
    import models.schema  # noqa: F401

    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", json_loads)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, echo=echo, **kwargs)
    event.listen(engine, "connect", _postgresql_utc)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkout", _postgresql_alive)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory the edges use (one session per request or job)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


class ConnectionSession(Session):
    """A session on a connection its owner opened, whose commit and rollback end that connection's work.

    For the busiest webhooks (issues 3 and 4): their statements run on the driver (models/driver_sql.py)
    on the connection directly, and the session is there for the ORM work a step may need (an attempt,
    a case, an opt-out), joined to the same transaction. It saves the session's transaction machinery
    that every request would otherwise pay to reach its connection (a tenth of a Gather's CPU).
    `commit()` flushes and commits the connection's transaction, whoever began it; `rollback()` rolls
    it back; the owner closes the connection after the session.
    """

    def commit(self) -> None:
        """Flush ORM changes (if any) and commit the connection's transaction."""
        if self.in_transaction() or self.new or self.dirty or self.deleted:
            super().commit()  # flushes; commits the transaction too when the session began it
        connection = self.bind
        if isinstance(connection, Connection) and connection.in_transaction():
            connection.commit()

    def rollback(self) -> None:
        """Roll back the connection's transaction and the session's ORM state."""
        super().rollback()
        connection = self.bind
        if isinstance(connection, Connection) and connection.in_transaction():
            connection.rollback()

    def close(self) -> None:
        """Close the session; one that loaded, added and began nothing has nothing to let go."""
        if not self.in_transaction() and not self.identity_map and not self._new and not self._deleted:
            return  # a Gather that does no ORM work: the session's close would clear empty maps
        super().close()


# Bumped in a forked child: a KeptConnection opened before the fork belongs to the parent. (One
# look at this number per request, instead of asking the kernel for the process id each time.)
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class KeptConnection:
    """One connection of an engine, kept between requests by a process that serves one at a time.

    For the busiest webhooks under gunicorn's sync workers (issue 3): checking a connection out of
    the pool and back in for every request is a twentieth of a Gather's CPU. Before each use it is
    checked as the pool's checkout checks one (a PostgreSQL connection the server has closed is
    replaced by a new one, see `_postgresql_alive`); a forked child never uses its parent's; and it
    is closed for good when the engine is disposed. Not for threads: one owner at a time.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._session: ConnectionSession | None = None
        self._forks = _forks
        event.listen(engine, "engine_disposed", self._disposed)

    @property
    def connection(self) -> Connection | None:
        """The connection kept now, if any."""
        return self._connection

    def take(self) -> Connection:
        """Return the kept connection, opening a new one when there is none or it is no longer usable."""
        connection = self._connection
        if connection is not None and self._forks == _forks:
            if not connection.invalidated and not connection.closed and self._alive(connection):
                return connection
            self.close()
        self._connection = None  # a forked child forgets its parent's connection without touching it
        connection = self.engine.connect()
        self._connection, self._forks = connection, _forks
        if connection.dialect.name == "sqlite":
            # Every statement of the hot webhooks runs in a transaction _sqlite_begin opens: this
            # connection needs no busy handler, and is never handed back to the pool (see close).
            connection.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
            connection.info[_NO_BUSY_WAIT] = True
        return connection

    def session(self, factory: sessionmaker[Session]) -> ConnectionSession:
        """Return the session on the kept connection: the same one while the connection is kept.

        The owner closes it after each request; a closed session is as good as a new one
        (SQLAlchemy's own contract), and building one for every Gather was a hundredth of its work.
        """
        connection = self.take()
        session = self._session
        if session is None or session.bind is not connection:
            session = self._session = ConnectionSession(**{**factory.kw, "bind": connection})
        return session

    def release(self) -> None:
        """End a request's use: roll back whatever it left open and keep the connection."""
        connection = self._connection
        if connection is None or not connection.in_transaction():
            return
        try:
            connection.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is not kept
            self.close()

    def close(self) -> None:
        """Close the kept connection for good (the next `take` opens a new one)."""
        connection, self._connection = self._connection, None
        if connection is not None and self._forks == _forks:
            # Invalidated rather than checked in: after a dispose its pool is gone, and a broken
            # connection must not go back to a pool either.
            connection.invalidate()
            connection.close()

    def _disposed(self, _engine: Engine) -> None:
        self.close()

    @staticmethod
    def _alive(connection: Connection) -> bool:
        if connection.dialect.name != "postgresql":
            return True  # a SQLite connection to a file does not go away
        try:
            _postgresql_alive(connection.connection.dbapi_connection, None, None)
        except DisconnectionError:
            return False
        return True


def connection_session(
    factory: sessionmaker[Session], kept: KeptConnection | None = None
) -> tuple[Session, Connection | None]:
    """Open a `ConnectionSession` on a connection of the factory's engine; return both.

    The connection is `kept`'s when one is given (the caller then releases it rather than closing
    it), and so is the session (the same one each time, closed after each use); otherwise a newly
    checked-out connection and a new session. A factory already bound to a connection (tests
    isolate themselves so) gives a plain session of its own and no connection: the caller then has
    nothing more to close.
    """
    engine = factory.kw.get("bind")
    if not isinstance(engine, Engine):
        return factory(), None
    if kept is not None and kept.engine is engine:
        return kept.session(factory), None
    connection = engine.connect()
    try:
        return ConnectionSession(**{**factory.kw, "bind": connection}), connection
    except BaseException:
        connection.close()
        raise


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session that commits once at the end, or rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
