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
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.departments import Department
from models.items_bulk import VALUE_COLUMNS, existing_items, insert_items, keep_purged, update_items
from models.phones import PhoneKind, mask_phone, normalize_phone
from models.translatable import Translatable, TranslatableError

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
_FUTURE_SLACK = timedelta(days=1)  # clocks of source systems drift; a day later is an error
# Control characters, and halves of UTF-16 pairs (JSON may escape one alone; no database stores it).
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
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


class RowError(TranslatableError):
    """A row cannot be imported; `kind` groups reasons for the summary, `message` is the reason."""

    def __init__(self, kind: str, template: str, **params: Any) -> None:
        super().__init__(template, **params)
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.kind, self.message)


ResultCallback = Callable[[int, str | None, RowStatus, str | None], None]


def _text(value: Any) -> str:
    if type(value) is str:  # files give text; keep this path cheap, it runs ~9 times a row
        if not value.isascii():
            value = unicodedata.normalize("NFKC", value)
        if value.isprintable():
            return value.strip()
        return _CONTROL.sub("", value).strip()
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
    return _in_utc(parsed, tz)


def _in_utc(parsed: datetime, tz: ZoneInfo) -> datetime:
    try:
        if parsed.tzinfo is None:
            local_epoch = _local_epoch(tz, parsed.year, parsed.month, parsed.day)
            if local_epoch is not None:  # one offset all that day: plain arithmetic will do
                return _UTC_EPOCH + (parsed - local_epoch)
            parsed = parsed.replace(tzinfo=tz)
        return parsed.astimezone(UTC)
    except OverflowError:  # the first or last day datetime can hold, shifted past its range
        raise RowError(
            "bad completed_at", "completed_at %(value)s is out of range", value=parsed.isoformat()
        ) from None


_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4096)
def _local_epoch(tz: ZoneInfo, year: int, month: int, day: int) -> datetime | None:
    """Return 1970-01-01 plus tz's UTC offset on a local date if no transition falls on it, else None.

    Converting through the zone costs more than the rest of a row's date handling (attaching a
    tzinfo alone does); a file's completion times fall on a few hundred dates, each checked once.
    """
    start = datetime(year, month, day, tzinfo=tz)
    moments = [start + timedelta(hours=hour) for hour in range(24)]
    offsets = {moment.utcoffset() for moment in (*moments, start.replace(hour=23, minute=59, second=59))}
    if len(offsets) != 1:
        return None
    offset = offsets.pop()
    assert offset is not None
    return datetime(1970, 1, 1) + offset


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
    raise RowError("bad completed_at", "completed_at %(value)r is not a date and time", value=text)


# What validation gives for a row, in this order in ValidRow.values; the department id comes from
# the database when the row is written.
ROW_COLUMNS = VALUE_COLUMNS[1:]


class ValidRow(NamedTuple):
    """A row that passed validation: plain data, so worker processes can hand it over."""

    line: int
    external_id: str
    department: str  # code (or name) as given
    department_name: str
    values: tuple[Any, ...]  # ROW_COLUMNS in order


class RejectedRow(NamedTuple):
    """A row that failed validation, with the reason group for the summary and the message.

    The message is a Translatable (a str): the console shows it in the user's language.
    """

    line: int
    external_id: str | None
    kind: str
    message: str


# A StrEnum's .value is a Python-level property: a dict is cheaper a million times over.
_KIND_TEXT = {kind: kind.value for kind in PhoneKind}


def validate_row(line: int, raw: Mapping[str, Any], options: IntakeOptions, now: datetime) -> ValidRow:
    """Check one row's fields and normalise them; raise RowError naming the problem."""
    if "__error__" in raw:
        raise RowError("unreadable row", raw["__error__"])  # a Translatable stays one
    get = raw.get
    external_id = _text(get("external_id"))
    department = _text(get("department"))
    matter = _text(get("matter"))
    phone_raw = _text(get("phone"))[:100]
    completed_raw = get("completed_at")
    is_date = isinstance(completed_raw, date)
    completed_text = "" if is_date else _text(completed_raw)
    if not (external_id and department and matter and phone_raw and (completed_text or is_date)):
        present = (external_id, department, matter, phone_raw, completed_text or is_date)
        missing = [name for name, value in zip(REQUIRED_FIELDS, present, strict=True) if not value]
        kind = "no usable phone" if missing == ["phone"] else f"missing {missing[0]}"
        raise RowError(kind, "missing %(fields)s", fields=missing)
    if len(external_id) > 128:
        raise RowError("bad external_id", "external_id longer than 128 characters")
    phone = normalize_phone(phone_raw, region=options.region, area_code=options.area_code)
    if phone.e164 is None or phone.kind is PhoneKind.INVALID:
        # The line number finds the row; the message (printed, logged, shown) keeps the number masked.
        raise RowError("no usable phone", "phone %(phone)r: %(reason)s", phone=mask_phone(phone_raw),
                       reason=phone.reason)
    if completed_text:  # text, the common case: skip parse_completed_at's type checks
        completed_at = _in_utc(_parse_time_text(completed_text), options.tz)
    else:
        completed_at = parse_completed_at(completed_raw, options.tz)
    if completed_at > now + _FUTURE_SLACK:
        raise RowError(
            "bad completed_at", "completed_at %(date)s is in the future", date=f"{completed_at:%Y-%m-%d}"
        )
    return ValidRow(
        line,
        external_id,
        department[:64],
        _text(get("department_name"))[:200],
        (
            matter[:300],
            _text(get("channel"))[:32] or None,
            _text(get("citizen_name"))[:100] or None,
            phone_raw,
            phone.e164,
            _KIND_TEXT[phone.kind],
            phone.extension,
            completed_at,
        ),
    )


def validate_rows(
    rows: Iterable[tuple[int, Mapping[str, Any]]], options: IntakeOptions, now: datetime
) -> list[ValidRow | RejectedRow]:
    """Validate (line, row) pairs in order; a rejected row carries its reason instead of raising."""
    outcomes: list[ValidRow | RejectedRow] = []
    append = outcomes.append
    for line, raw in rows:
        try:
            append(validate_row(line, raw, options, now))
        except RowError as exc:
            append(RejectedRow(line, _text(raw.get("external_id")) or None, exc.kind, exc.message))
    return outcomes


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
                raise RowError("unknown department", "unknown department %(code)r", code=code)
            dept = Department(code=code, name=name or code)
            self.session.add(dept)
            self.session.flush()
        self._departments[code] = dept.id
        return dept.id

    def import_batch(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        """Validate and upsert one batch of (line, row) pairs; does not commit."""
        self.import_validated(validate_rows(rows, self.options, self.now))

    def import_validated(self, outcomes: Iterable[ValidRow | RejectedRow]) -> None:
        """Upsert one batch of validate_rows() outcomes and report every row; does not commit."""
        batch: dict[str, tuple[int, tuple[Any, ...]]] = {}
        repeated: set[str] = set()
        departments = self._departments
        for outcome in outcomes:
            self.summary.read += 1
            if isinstance(outcome, RejectedRow):
                self._reject(outcome.line, outcome.external_id, outcome.kind, outcome.message)
                continue
            line, key, department, department_name, values = outcome
            department_id = departments.get(department)
            if department_id is None:
                try:
                    department_id = self._department_id(department, department_name)
                except RowError as exc:
                    self._reject(line, key, exc.kind, exc.message)
                    continue
            if key in batch:
                # The same item twice in one batch: the later row wins; the earlier one still gets its
                # result (the API answers one per item).
                repeated.add(key)
                if self.on_result:
                    message = Translatable(
                        "external_id %(id)r repeated later in the batch: the later row is kept", id=key
                    )
                    self.on_result(batch[key][0], key, RowStatus.ERROR, message)
            batch[key] = (line, (department_id, *values))
        if batch:
            self._upsert(batch, repeated)

    def _reject(self, line: int, external_id: str | None, kind: str, message: str) -> None:
        self.summary.skipped[kind] += 1
        if self.on_result:
            self.on_result(line, external_id, RowStatus.ERROR, message)

    def _upsert(self, batch: dict[str, tuple[int, tuple[Any, ...]]], repeated: set[str]) -> None:
        connection = self.session.connection()
        existing = existing_items(connection, self.source, list(batch))
        now = utcnow()
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[int, tuple[Any, ...]]] = []
        statuses: list[RowStatus] = []
        for key, (_line, values) in batch.items():
            found = existing.get(key)
            if found is None:
                inserts.append((key, *values))
                statuses.append(RowStatus.NEW)
                continue
            item_id, stored, purged = found
            if purged:
                # Retention purged its personal data: the source system's copy must not bring it back.
                values = keep_purged(stored, values)
            if stored != values:
                updates.append((item_id, values))
                statuses.append(RowStatus.UPDATED)
            else:
                statuses.append(RowStatus.UNCHANGED)
        if inserts:
            insert_items(connection, self.source, inserts, now)
        if updates:
            update_items(connection, updates, now)
        # Drop ORM objects (departments) so memory stays flat over any number of batches.
        self.session.expunge_all()
        summary = self.summary
        summary.new += len(inserts)
        summary.updated += len(updates)
        summary.unchanged += len(statuses) - len(inserts) - len(updates)
        if repeated:
            summary.skipped["repeated external_id (later row kept)"] += len(repeated)
        if self.on_result:
            for (key, (line, _values)), status in zip(batch.items(), statuses, strict=True):
                self.on_result(line, key, status, None)


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
