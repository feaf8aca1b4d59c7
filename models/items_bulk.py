"""Bulk reads and writes of service items for intake: look-ups by key, COPY or executemany, updates.

Plain SQLAlchemy Core on one connection (the caller's transaction): no ORM objects per row, and
each dialect's fastest bulk path. Values still go through each column type's bind processor, so the
stored rows are exactly what an ORM insert would store.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, Dialect, String, Table, any_, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from models.base import sqlite_utc_text
from models.driver_sql import DriverStatement
from models.items import PERSONAL_COLUMNS, ServiceItem

log = logging.getLogger(__name__)

# The stored columns an intake row sets; all of them are compared to decide whether a re-imported
# row changed anything.
VALUE_COLUMNS = (
    "department_id",
    "matter",
    "channel_handled",
    "citizen_name",
    "phone_raw",
    "phone_e164",
    "phone_kind",
    "phone_extension",
    "completed_at",
)
_PERSONAL_INDEXES = tuple(VALUE_COLUMNS.index(name) for name in PERSONAL_COLUMNS)

_TABLE = cast(Table, ServiceItem.__table__)
_IN_CHUNK = 1000  # keys per IN (...) look-up: well under every database's limit on bound parameters
_COLUMNS = _TABLE.c
_EXISTING = select(
    _COLUMNS.external_id, _COLUMNS.id, _COLUMNS.purged_at, *(_COLUMNS[name] for name in VALUE_COLUMNS)
)
# PostgreSQL: one array parameter instead of a thousand (binding those costs more than the look-up).
_EXISTING_PG = _EXISTING.where(
    _COLUMNS.source == bindparam("source"),
    _COLUMNS.external_id == any_(bindparam("keys", type_=ARRAY(String))),
)
# Elsewhere a fixed IN list of _IN_CHUNK parameters (a short chunk repeats its last key), compiled
# once and run on the driver: expanding and binding a thousand parameters through SQLAlchemy costs
# several times the look-up. Not a row-value IN: SQLite would scan the table instead of the index.
_KEY_NAMES = [f"key{index}" for index in range(_IN_CHUNK)]
_EXISTING_IN_DRIVER = DriverStatement(
    _EXISTING.where(
        _COLUMNS.source == bindparam("source"),
        _COLUMNS.external_id.in_([bindparam(name) for name in _KEY_NAMES]),
    )
)


def existing_items(
    connection: Connection, source: str, keys: list[str]
) -> dict[str, tuple[int, tuple[Any, ...], bool]]:
    """Return {external_id: (id, VALUE_COLUMNS values, purged)} of the keys already stored for source."""
    found: dict[str, tuple[int, tuple[Any, ...], bool]] = {}
    dialect = connection.dialect
    if dialect.name == "postgresql":
        for stored in connection.execute(_EXISTING_PG, {"source": source, "keys": keys}):
            found[stored[0]] = (stored[1], tuple(stored[3:]), stored[2] is not None)
        return found
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        padded = chunk + chunk[-1:] * (_IN_CHUNK - len(chunk))
        named: dict[str, Any] = dict(zip(_KEY_NAMES, padded, strict=True))
        named["source"] = source
        for row in _EXISTING_IN_DRIVER.rows(connection, named):
            found[row[0]] = (row[1], row[3:], row[2] is not None)
    return found


def keep_purged(stored: tuple[Any, ...], values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return a re-imported row's VALUE_COLUMNS values with a purged item's personal ones (all NULL)."""
    kept = list(values)
    for index in _PERSONAL_INDEXES:
        kept[index] = stored[index]
    return tuple(kept)


def insert_items(connection: Connection, source: str, rows: list[tuple[Any, ...]], now: datetime) -> None:
    """Insert new items, given as (external_id, *VALUE_COLUMNS) tuples, in bulk.

    Values go through each column type's own bind processor (UTC datetimes included), so the
    stored rows are exactly what an ORM insert would store, at a fraction of the per-row cost:
    COPY on PostgreSQL with psycopg, one DB-API executemany elsewhere.
    """
    dialect = connection.dialect
    processors = _row_processors(dialect)
    head = (_bind_value(dialect, "source", source),)
    stamp = _bind_value(dialect, "imported_at", now)
    tail = (stamp, stamp)  # imported_at, updated_at
    params: list[tuple[Any, ...]] = []
    append = params.append
    for row in rows:
        if processors:
            values = list(row)
            for index, process in processors:
                values[index] = process(values[index])
            row = tuple(values)
        append(head + row + tail)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        _copy(connection, params)
        return
    compiled = insert(_TABLE).compile(dialect=dialect, column_keys=list(_INSERT_COLUMNS))
    if not compiled.positional:
        named = [dict(zip(_INSERT_COLUMNS, p, strict=True)) for p in params]
        connection.exec_driver_sql(compiled.string, named)
        return
    if tuple(compiled.positiontup or ()) != _INSERT_COLUMNS:
        order = [_INSERT_COLUMNS.index(name) for name in compiled.positiontup or ()]
        params = [tuple(p[i] for i in order) for p in params]
    connection.exec_driver_sql(compiled.string, params)


# Columns of a new item in the table's own order (so compiled positional INSERTs need no reordering).
_ROW_INSERT_COLUMNS = ("external_id", *VALUE_COLUMNS)
_INSERT_COLUMNS = ("source", *_ROW_INSERT_COLUMNS, "imported_at", "updated_at")


def _copy(connection: Connection, params: list[tuple[Any, ...]]) -> None:
    preparer = connection.dialect.identifier_preparer
    table = preparer.format_table(_TABLE)
    names = ", ".join(preparer.quote(name) for name in _INSERT_COLUMNS)
    # Binary COPY formats values in C, several times faster than text; it needs the exact types.
    oids: dict[str, int] = dict(
        connection.exec_driver_sql(
            "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %(table)s::regclass",
            {"table": table},
        ).all()
    )
    cursor = connection.connection.cursor()
    try:
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([oids[name] for name in _INSERT_COLUMNS])
            write = copy.write_row
            for row in params:
                write(row)
    finally:
        cursor.close()


@lru_cache(maxsize=8)
def _row_processors(dialect: Dialect) -> list[tuple[int, Callable[[Any], Any]]]:
    """(index, bind processor) of every _ROW_INSERT_COLUMNS column that has one for this dialect."""
    processors = []
    for index, name in enumerate(_ROW_INSERT_COLUMNS):
        process = _bind_processor(dialect, name)
        if process is not None:
            if dialect.name == "sqlite" and name == "completed_at":
                process = sqlite_utc_text(process)
            processors.append((index, process))
    return processors


def _bind_processor(dialect: Dialect, name: str) -> Callable[[Any], Any] | None:
    return _TABLE.c[name].type.dialect_impl(dialect).bind_processor(dialect)


def _bind_value(dialect: Dialect, name: str, value: Any) -> Any:
    process = _bind_processor(dialect, name)
    return process(value) if process else value


def update_items(connection: Connection, rows: list[tuple[int, tuple[Any, ...]]], now: datetime) -> None:
    """Write changed VALUE_COLUMNS of stored items (by id) and stamp them updated."""
    statement = update(_TABLE).where(_TABLE.c.id == bindparam("item_id"))
    connection.execute(
        statement,
        [
            {"item_id": item_id, **dict(zip(VALUE_COLUMNS, values, strict=True)), "updated_at": now}
            for item_id, values in rows
        ],
    )


# A bulk import touches pages all over the table's indexes:
# - with a small page cache SQLite would write many of them to the WAL several times per transaction
#   (32 MiB holds the pages 10,000 rows dirty);
# - a checkpoint after every transaction would copy most of those pages into the database again each
#   time; letting the WAL grow to ~100 MB first copies each page once per several transactions;
# - memory-mapped reads would save little (changed pages are copied to the cache anyway) but grow the
#   importer's RSS with the database file.
_SQLITE_IMPORT_PRAGMAS = {"cache_size": -32 * 1024, "wal_autocheckpoint": 25_000, "mmap_size": 0}


@contextmanager
def bulk_import_settings(connection: Connection | None) -> Iterator[None]:
    """Set a SQLite connection up for a bulk import, then restore it and checkpoint the WAL.

    Works on the driver's connection, so it neither begins nor ends a transaction.
    """
    if connection is None or connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    previous = {name: driver.execute(f"PRAGMA {name}").fetchone()[0] for name in _SQLITE_IMPORT_PRAGMAS}
    try:
        for name, value in _SQLITE_IMPORT_PRAGMAS.items():
            driver.execute(f"PRAGMA {name} = {int(value)}")
        yield
    finally:
        try:
            for name, value in previous.items():
                driver.execute(f"PRAGMA {name} = {int(value)}")
            if not driver.in_transaction:
                # What the import left in the WAL, now rather than in some later request's commit;
                # a passive checkpoint never waits for readers.
                driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the connection broke (the import's error says why)
            log.warning("could not restore the import connection's settings: %s", exc)
