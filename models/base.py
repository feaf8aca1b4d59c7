"""Declarative base, constraint naming convention and the UTC datetime column type."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite keeps no offset, so we add it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: every stored time must be timezone-aware")
        value = value.astimezone(UTC)
        # SQLite compares datetimes as text: store them naive, in UTC, in one format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


def utcnow() -> datetime:
    """Return the current time in UTC (edges only; decisions take `now` as a parameter)."""
    return datetime.now(UTC)


def sqlite_utc_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap SQLAlchemy's SQLite bind processor of a `UTCDateTime`: aware UTC datetimes become text directly.

    SQLite keeps datetimes as text, which SQLAlchemy formats through two layers of Python per value
    (`UTCDateTime`, then SQLite's DATETIME); one format string gives the same text several times
    faster (the intake's rows, the hot webhooks' times). Anything else goes through `process`; the
    shortcut is used only if it agrees with `process` on samples.
    """

    def bind(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC:
            return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031 - the fastest way here
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        return process(value)

    samples = [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 123456, tzinfo=UTC),
    ]
    return bind if all(bind(value) == process(value) for value in samples) else process
