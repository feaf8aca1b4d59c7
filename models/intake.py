"""Service-item intake: validate rows from any source and upsert them on (source, external_id).

Shared by the file importer (CLI, console upload) and the REST API. The caller owns the session and
decides when to commit (after each batch for files, once per request for the API).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.departments import Department
from models.items import ServiceItem
from models.phones import PhoneKind, normalize_phone

FIELDS = (
    "external_id",
    "department",
    "department_name",
    "matter",
    "channel",
    "citizen_name",
    "phone",
    "completed_at",
)
REQUIRED_FIELDS = ("external_id", "department", "matter", "phone", "completed_at")
# Fields compared to decide whether a re-imported row changed anything.
_COMPARED = (
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
_FUTURE_SLACK = timedelta(days=1)  # clocks of source systems drift; a day later is an error
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y.%m.%d %H:%M:%S",
    "%Y%m%d%H%M%S",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日%H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%Y%m%d",
    "%Y年%m月%d日",
)


class RowStatus(StrEnum):
    """What happened to one intake row."""

    NEW = "new"  # a new service item was created
    UPDATED = "updated"  # an existing item (same source and external id) was changed
    UNCHANGED = "unchanged"  # re-imported with the same content
    ERROR = "error"  # rejected; the reason says why


@dataclass
class ImportSummary:
    """Counts of one import: rows read, new, updated, unchanged and skipped by reason."""

    read: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain data (for --json and the API)."""
        return {
            "read": self.read,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
        }


@dataclass(frozen=True)
class IntakeOptions:
    """How rows are read: time zone, phone defaults, department creation."""

    tz: ZoneInfo
    region: str = "CN"
    area_code: str | None = None
    auto_create_departments: bool = True


class RowError(ValueError):
    """A row cannot be imported; `kind` groups reasons for the summary."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


ResultCallback = Callable[[int, str | None, RowStatus, str | None], None]


def _text(value: Any) -> str:
    if type(value) is str and value.isascii() and value.isprintable():
        return value.strip()  # the common case of file imports, kept cheap
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheets turn ids and phone numbers into floats
    text = str(value)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():
        text = _CONTROL.sub("", text)
    return text.strip()


def parse_completed_at(value: Any, tz: ZoneInfo) -> datetime:
    """Read a completion time (text, date or datetime; naive means the centre's time zone)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        parsed = _parse_time_text(_text(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def _parse_time_text(text: str) -> datetime:
    if not text:
        raise RowError("bad completed_at", "completed_at is empty")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise RowError("bad completed_at", f"completed_at {text!r} is not a date and time")


@dataclass(frozen=True)
class _Row:
    line: int
    external_id: str
    department: str
    department_name: str
    values: dict[str, Any]


def validate_row(line: int, raw: Mapping[str, Any], options: IntakeOptions, now: datetime) -> _Row:
    """Check one row's fields and normalise them; raise RowError naming the problem."""
    if "__error__" in raw:
        raise RowError("unreadable row", str(raw["__error__"]))
    get = raw.get
    external_id = _text(get("external_id"))
    department = _text(get("department"))
    matter = _text(get("matter"))
    phone_raw = _text(get("phone"))[:100]
    completed_raw = get("completed_at")
    completed_text = "" if isinstance(completed_raw, date) else _text(completed_raw)
    present = {
        "external_id": external_id,
        "department": department,
        "matter": matter,
        "phone": phone_raw,
        "completed_at": completed_text or isinstance(completed_raw, date),
    }
    missing = [name for name in REQUIRED_FIELDS if not present[name]]
    if missing:
        kind = "no usable phone" if missing == ["phone"] else f"missing {missing[0]}"
        raise RowError(kind, f"missing {', '.join(missing)}")
    if len(external_id) > 128:
        raise RowError("bad external_id", "external_id longer than 128 characters")
    phone = normalize_phone(phone_raw, region=options.region, area_code=options.area_code)
    if phone.e164 is None or phone.kind == PhoneKind.INVALID:
        raise RowError("no usable phone", f"phone {phone_raw!r}: {phone.reason}")
    completed_at = parse_completed_at(completed_text or completed_raw, options.tz)
    if completed_at > now + _FUTURE_SLACK:
        raise RowError("bad completed_at", f"completed_at {completed_at:%Y-%m-%d} is in the future")
    return _Row(
        line=line,
        external_id=external_id,
        department=department[:64],
        department_name=_text(get("department_name"))[:200],
        values={
            "matter": matter[:300],
            "channel_handled": _text(get("channel"))[:32] or None,
            "citizen_name": _text(get("citizen_name"))[:100] or None,
            "phone_raw": phone_raw,
            "phone_e164": phone.e164,
            "phone_kind": phone.kind.value,
            "phone_extension": phone.extension,
            "completed_at": completed_at,
        },
    )


class Importer:
    """Upserts validated rows in batches; one instance per import run."""

    def __init__(
        self,
        session: Session,
        options: IntakeOptions,
        source: str,
        *,
        now: datetime | None = None,
        on_result: ResultCallback | None = None,
    ) -> None:
        self.session = session
        self.options = options
        self.source = source
        self.now = now or utcnow()
        self.on_result = on_result
        self.summary = ImportSummary()
        self._departments: dict[str, int] = {}

    def _department_id(self, code: str, name: str) -> int:
        if code in self._departments:
            return self._departments[code]
        dept = self.session.scalars(
            select(Department).where((Department.code == code) | (Department.name == code))
        ).first()
        if dept is None:
            if not self.options.auto_create_departments:
                raise RowError("unknown department", f"unknown department {code!r}")
            dept = Department(code=code, name=name or code)
            self.session.add(dept)
            self.session.flush()
        self._departments[code] = dept.id
        return dept.id

    def import_batch(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        """Validate and upsert one batch of (line, row) pairs; does not commit."""
        batch: dict[str, tuple[_Row, dict[str, Any]]] = {}
        repeated: set[str] = set()
        for line, raw in rows:
            self.summary.read += 1
            external_id = _text(raw.get("external_id")) or None
            try:
                row = validate_row(line, raw, self.options, self.now)
                values = dict(row.values)
                values["department_id"] = self._department_id(row.department, row.department_name)
            except RowError as exc:
                self.summary.skipped[exc.kind] += 1
                if self.on_result:
                    self.on_result(line, external_id, RowStatus.ERROR, str(exc))
                continue
            if row.external_id in batch:
                # The same item twice in one batch: the later row wins, the earlier counts as read.
                repeated.add(row.external_id)
            batch[row.external_id] = (row, values)
        if batch:
            self._upsert(batch, repeated)

    def _upsert(self, batch: dict[str, tuple[_Row, dict[str, Any]]], repeated: set[str]) -> None:
        keys = list(batch)
        existing = {
            item.external_id: item
            for item in self.session.scalars(
                # Not a row-value IN: SQLite would scan the table instead of using the index.
                select(ServiceItem).where(
                    ServiceItem.source == self.source, ServiceItem.external_id.in_(keys)
                )
            )
        }
        inserts = []
        now = utcnow()
        for key, (row, values) in batch.items():
            item = existing.get(key)
            if item is None:
                inserts.append(
                    {
                        "source": self.source,
                        "external_id": key,
                        "imported_at": now,
                        "updated_at": now,
                        **values,
                    }
                )
                status = RowStatus.NEW
            elif any(getattr(item, name) != values[name] for name in _COMPARED):
                for name, value in values.items():
                    setattr(item, name, value)
                item.updated_at = now
                status = RowStatus.UPDATED
            else:
                status = RowStatus.UNCHANGED
            setattr(self.summary, status.value, getattr(self.summary, status.value) + 1)
            if key in repeated:
                self.summary.skipped["repeated external_id (later row kept)"] += 1
            if self.on_result:
                self.on_result(row.line, key, status, None)
        self.session.flush()
        if inserts:
            _insert_many(self.session, inserts)
        # Drop the batch's ORM objects so memory stays flat over any number of batches.
        self.session.expunge_all()


def _insert_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert new items with one DB-API executemany (the bulk path of imports).

    Values go through each column type's own bind processor (UTC datetimes included), so the
    stored rows are exactly what an ORM insert would store, at a fraction of the per-row cost.
    """
    connection = session.connection()
    dialect = connection.dialect
    table = cast(Table, ServiceItem.__table__)
    columns = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=columns)
    order = list(compiled.positiontup or []) if compiled.positional else columns
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order]
    converted = [(index, process) for index, process in enumerate(processors) if process]
    params: list[Any] = []
    for row in rows:
        values = [row[name] for name in order]
        for index, process in converted:
            values[index] = process(values[index])
        params.append(tuple(values) if compiled.positional else dict(zip(order, values, strict=True)))
    connection.exec_driver_sql(compiled.string, params)


def map_headers(headers: Iterable[Any], columns: Mapping[str, list[str]]) -> dict[int, str]:
    """Map column positions to field names using the configured header aliases."""

    def key(text: Any) -> str:
        return re.sub(r"[\s_\-]", "", _text(text).casefold())

    aliases = {key(alias): name for name, names in columns.items() for alias in names}
    aliases.update({key(name): name for name in FIELDS})
    mapping: dict[int, str] = {}
    for index, header in enumerate(headers):
        name = aliases.get(key(header))
        if name and name not in mapping.values():
            mapping[index] = name
    return mapping
