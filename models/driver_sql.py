"""Prebuilt Core statements run on the driver's cursor: for the few statements of the hottest paths.

SQLAlchemy's execution of a Core statement (execution context, parameter and result handling) costs
several times what the driver spends on a short indexed statement; the busiest webhooks run three
or four such statements a request (issues 3 and 4). A `DriverStatement` is compiled by SQLAlchemy
once per dialect, so its SQL and every column type's conversion (dates as SQLite text, JSON, UTC
times) are SQLAlchemy's own (a UTC time bound for SQLite is formatted directly, to the same text:
models.base.sqlite_utc_text); it then runs on the DB-API cursor of the caller's connection, inside
the caller's transaction. A driver error is raised as SQLAlchemy's (`sqlalchemy.exc.DBAPIError`),
and a lost connection is invalidated, as SQLAlchemy's own execution would.

Only statements whose parameters are all named bindparams (no expanding IN, no literal binds).
SQLAlchemy's statement events and its SQL echo (`database.echo`) do not see these statements.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Dialect, exc
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from models.base import UTCDateTime, sqlite_utc_text
from models.db import ConnectionSession

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # parameter names in order, for a positional paramstyle
    binds: tuple[tuple[str, Processor], ...]  # (name, bind processor) of the binds that have one
    defaults: tuple[tuple[str, Any], ...]  # values the statement itself binds (x != 'done')
    required: frozenset[str]  # the parameters a caller must give
    columns: tuple[str, ...]  # the names of the result columns
    results: tuple[tuple[int, Processor], ...]  # (position, result processor) of those that have one
    any_result: bool


class DriverStatement:
    """A Core statement compiled once per dialect and run on the driver's cursor."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compile = functools.lru_cache(maxsize=4)(self._compile_for)

    def _compile_for(self, dialect: Dialect) -> _Compiled:
        compiled = cast(SQLCompiler, self.statement.compile(dialect=dialect))
        binds, defaults = [], []
        for name, bind in compiled.binds.items():
            if bind.expanding or bind.literal_execute or bind.callable is not None:
                raise ValueError(f"DriverStatement: parameter {name!r} is expanding, literal or computed")
            process: Processor | None = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None and dialect.name == "sqlite" and isinstance(bind.type, UTCDateTime):
                process = sqlite_utc_text(process)  # the same text, several times faster
            if process is not None:
                binds.append((name, process))
            if not bind.required:
                defaults.append((name, bind.value))
        columns = tuple(getattr(self.statement, "exported_columns", ()))
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        return _Compiled(
            sql=compiled.string,
            order=tuple(compiled.positiontup or ()) if compiled.positional else None,
            binds=tuple(binds),
            defaults=tuple(defaults),
            required=frozenset(compiled.binds) - {name for name, _ in defaults},
            columns=tuple(column.key for column in columns),
            results=tuple((index, process) for index, process in enumerate(processors) if process),
            any_result=bool(columns),
        )

    def rows(self, source: Session | Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run the statement with `params` on a session's connection (or a connection); return its rows."""
        connection = connection_of(source)
        compiled = self._compile(connection.dialect)
        if not compiled.required <= params.keys():
            missing = ", ".join(sorted(compiled.required - params.keys()))
            raise exc.ArgumentError(f"DriverStatement: no value for parameter(s) {missing}")
        values = dict(compiled.defaults)
        values.update(params)
        for name, process in compiled.binds:
            values[name] = process(values[name])
        args: Sequence[Any] | Mapping[str, Any] = (
            values if compiled.order is None else [values[name] for name in compiled.order]
        )
        raw = connection.connection
        cursor = raw.cursor()
        try:
            cursor.execute(compiled.sql, args)
            fetched = cursor.fetchall() if compiled.any_result else []
        except connection.dialect.loaded_dbapi.Error as error:
            _raise_as_sqlalchemy(connection, error, compiled.sql, args, cursor)
        finally:
            cursor.close()
        if not compiled.results:
            return [tuple(row) for row in fetched]
        rows = []
        for row in fetched:
            converted = list(row)
            for index, process in compiled.results:  # a few of the columns (JSON, times)
                converted[index] = process(converted[index])
            rows.append(tuple(converted))
        return rows

    def first(self, source: Session | Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return the first row as {column name: value}, or None."""
        connection = connection_of(source)
        rows = self.rows(connection, params)
        if not rows:
            return None
        return dict(zip(self._compile(connection.dialect).columns, rows[0], strict=True))

    def mappings(self, source: Session | Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return every row as {column name: value}."""
        connection = connection_of(source)
        rows = self.rows(connection, params)
        columns = self._compile(connection.dialect).columns
        return [dict(zip(columns, row, strict=True)) for row in rows]


_CONNECTION = "driver_sql.connection"  # session.info key: (root transaction, its connection)


def connection_of(source: Session | Connection) -> Connection:
    """Return the connection of a session's current transaction (beginning one if needed).

    The same as `session.connection()`, remembered for the transaction: a webhook asks for it for
    each of its statements, and the session's look-up costs more than some of them.
    """
    if isinstance(source, Connection):
        return source
    bind = source.bind
    if isinstance(source, ConnectionSession) and isinstance(bind, Connection):
        # The owner's connection: begin its transaction here if the session has not (the session's
        # ORM work then joins it, and ConnectionSession.commit ends it).
        if not bind.in_transaction():
            bind.begin()
        return bind
    transaction = source.get_transaction()
    if transaction is not None:
        remembered = source.info.get(_CONNECTION)
        if remembered is not None and remembered[0] is transaction:
            return remembered[1]  # type: ignore[no-any-return]
    connection = source.connection()
    source.info[_CONNECTION] = (source.get_transaction(), connection)
    return connection


def _raise_as_sqlalchemy(connection: Connection, error: Any, sql: str, args: Any, cursor: Any) -> None:
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
    wrapped = exc.DBAPIError.instance(
        sql,
        args,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
    if lost:
        connection.invalidate(wrapped)
    raise wrapped from error
