"""Operations on a survey that several edges share: answers, opt-outs, finishing.

Each takes the caller's session and never commits: the webhook or job that owns the session commits
once, before it answers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, joinedload

from models.campaigns import Campaign
from models.departments import Department
from models.driver_sql import DriverStatement
from models.items import ServiceItem
from models.optouts import OptOut, OptOutChannel, OptOutSource
from models.surveys import Answer, Attempt, Survey, SurveyState

SURVEYS: Table = Survey.__table__  # type: ignore[assignment]
ANSWERS: Table = Answer.__table__  # type: ignore[assignment]
_ITEMS: Table = ServiceItem.__table__  # type: ignore[assignment]
_DEPARTMENTS: Table = Department.__table__  # type: ignore[assignment]
_CAMPAIGNS: Table = Campaign.__table__  # type: ignore[assignment]

# The survey columns a webhook reads, and those a conversation may change.
_READ = (
    "id",
    "token",
    "kind",
    "campaign_id",
    "item_id",
    "department_id",
    "quarter",
    "language",
    "channel",
    "state",
    "disposition",
    "script_state",
)
_WRITABLE = frozenset(
    {
        "state",
        "disposition",
        "script_state",
        "next_attempt_at",
        "lease_owner",
        "lease_expires_at",
        "finished_at",
        "updated_at",
    }
)
# What a SurveyRecord is read from: the survey and what its conversation says of the item.
RECORD_COLUMNS = (
    *(SURVEYS.c[name] for name in _READ),
    _ITEMS.c.phone_e164.label("item_phone_e164"),
    _ITEMS.c.matter.label("item_matter"),
    _ITEMS.c.completed_at.label("item_completed_at"),
    _DEPARTMENTS.c.name.label("department_name"),
    _CAMPAIGNS.c.config.label("campaign_config"),
)
RECORD_FROM = (
    SURVEYS.join(_ITEMS, _ITEMS.c.id == SURVEYS.c.item_id)
    .join(_DEPARTMENTS, _DEPARTMENTS.c.id == _ITEMS.c.department_id)
    .join(_CAMPAIGNS, _CAMPAIGNS.c.id == SURVEYS.c.campaign_id)
)
ITEM_PHONE = _ITEMS.c.phone_e164
_RECORD_QUERY = select(*RECORD_COLUMNS).select_from(RECORD_FROM).where(SURVEYS.c.token == bindparam("token"))
# The hot webhooks' statements run on the driver (models/driver_sql.py). The locked one serialises
# concurrent webhooks of one call (a repeated Gather arriving twice at once).
_RECORD_SELECT = DriverStatement(_RECORD_QUERY)
_RECORD_SELECT_LOCKED = DriverStatement(_RECORD_QUERY.with_for_update(of=SURVEYS))


def insert_once(table: Table, unique: list[str], columns: list[str]) -> dict[str, DriverStatement]:
    """Return, per dialect name, an INSERT of `columns` that does nothing when `unique` is taken.

    It returns the new row's id: RETURNING rather than rowcount, which psycopg reports as -1 here.
    """
    values = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    return {
        name: DriverStatement(
            dialect_insert(table)
            .values(values)
            .on_conflict_do_nothing(index_elements=unique)
            .returning(table.c.id)
        )
        for name, dialect_insert in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))
    }


# A Core statement (no unit of work, no autoflush): the unique (survey, question) constraint decides.
_ANSWER_ONCE = insert_once(
    ANSWERS,
    ["survey_id", "question"],
    [
        "survey_id",
        "question",
        "value",
        "channel",
        "received_at",
        "late",
        "recording_url",
        "recording_duration",
    ],
)


class SurveyRecord:
    """A survey as the hot webhooks see it: one row read with Core, the columns set written back.

    It has the attributes of a `Survey` that the conversation and the case and quarter operations
    read (`item` and `campaign` are read-only views), so they take either; the ORM's loading and unit
    of work cost several times more per request than these two statements (issue 3's benchmark).
    Assign the writable columns (never change `script_state` in place): `save_survey` writes what was
    assigned. Columns that were not read cannot be read.
    """

    def __init__(self, row: Mapping[str, Any]) -> None:
        values = {name: row[name] for name in _READ}
        values["script_state"] = dict(values["script_state"] or {})
        values["item"] = SimpleNamespace(
            id=row["item_id"],
            phone_e164=row["item_phone_e164"],
            matter=row["item_matter"],
            completed_at=row["item_completed_at"],
            department=SimpleNamespace(name=row["department_name"]),
        )
        values["campaign"] = SimpleNamespace(id=row["campaign_id"], config=row["campaign_config"] or {})
        values["assigned"] = {}
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _WRITABLE:
            raise AttributeError(f"SurveyRecord.{name} cannot be changed")
        self.__dict__[name] = value
        self.__dict__["assigned"][name] = value

    def __getattr__(self, name: str) -> Any:  # only for attributes that are not set
        raise AttributeError(f"SurveyRecord.{name} was not read (see models.survey_ops._READ)")

    def __repr__(self) -> str:
        return f"SurveyRecord(id={self.id}, state={self.state!r})"


def load_survey(session: Session, token: str | None, *, for_update: bool = False) -> SurveyRecord | None:
    """Return the survey a webhook URL names as a SurveyRecord, locking its row when asked."""
    if not _plausible_token(token):
        return None
    stmt = _RECORD_SELECT_LOCKED if for_update else _RECORD_SELECT
    row = stmt.first(session, {"token": token})
    return None if row is None else SurveyRecord(row)


def save_survey(session: Session, record: SurveyRecord) -> None:
    """Write back the columns assigned since the record was read or last saved (one UPDATE, or none)."""
    assigned = record.assigned
    if assigned:
        stmt = _update_statement(tuple(sorted(assigned)))
        stmt.rows(session, {"record_id": record.id, **assigned})
        assigned.clear()


@functools.lru_cache(maxsize=64)
def _update_statement(columns: tuple[str, ...]) -> DriverStatement:
    # One statement per set of columns (a handful), built and compiled once.
    return DriverStatement(
        update(SURVEYS)
        .where(SURVEYS.c.id == bindparam("record_id"))
        .values({name: bindparam(name, type_=SURVEYS.c[name].type) for name in columns})
    )


def _plausible_token(token: str | None) -> bool:
    # Never a token we issued; PostgreSQL refuses NUL in text.
    return bool(token) and "\x00" not in token and len(token) <= 64  # type: ignore[arg-type, operator]


def survey_by_token(session: Session, token: str | None, *, for_update: bool = False) -> Survey | None:
    """Return the survey a webhook URL names, locking its row when asked."""
    if not _plausible_token(token):
        return None
    # The item (with its department) and the campaign come in the same query: every webhook needs them.
    stmt = (
        select(Survey)
        .where(Survey.token == token)
        .options(joinedload(Survey.item, innerjoin=True), joinedload(Survey.campaign, innerjoin=True))
    )
    if for_update:
        # Serialises concurrent webhooks of one call (a repeated Gather arriving twice at once).
        stmt = stmt.with_for_update(of=Survey)
    return session.scalars(stmt).first()


def attempt_of(session: Session, survey: Survey, attempt_id: str | int | None) -> Attempt | None:
    """Return the survey's attempt with this id, or None (ids from URLs are untrusted)."""
    try:
        wanted = int(attempt_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not 0 < wanted < 2**31:
        return None  # outside the id column's range: never an attempt of ours
    attempt = session.get(Attempt, wanted)
    return attempt if attempt is not None and attempt.survey_id == survey.id else None


def record_answer(
    session: Session,
    survey: Survey | SurveyRecord,
    question: str,
    value: str,
    *,
    channel: str,
    now: datetime,
    recording_duration: int | None = None,
) -> bool:
    """Store one answer unless the survey already has one for this question; return if stored."""
    values = {
        "survey_id": survey.id,
        "question": question,
        "value": value,
        "channel": channel,
        "received_at": now,
        "late": False,
        "recording_url": value if recording_duration is not None else None,
        "recording_duration": recording_duration,
    }
    # One statement, and the unique (survey, question) constraint decides: a repeated webhook
    # can never store an answer twice, even when two arrive at once.
    if session.new:
        session.flush()  # a survey added in this session must exist before its answer refers to it
    dialect = session.get_bind().dialect.name
    stmt = _ANSWER_ONCE["postgresql" if dialect == "postgresql" else "sqlite"]
    return bool(stmt.rows(session, values))


# Free text added to a comment over several replies stops growing here (a reply is at most about
# 1,000 characters, and the conversation ends after a few unreadable ones).
ANSWER_TEXT_LIMIT = 4000


def add_to_answer(session: Session, survey: Survey | SurveyRecord, question: str, text: str) -> None:
    """Add a later reply's text to the survey's written answer, on a line of its own.

    A recorded comment (its value is the recording's URL) is left as it is. The SMS webhook stores each
    inbound text once per MessageSid before it runs the conversation, so a repeated webhook never
    adds the same text twice.
    """
    session.execute(
        update(ANSWERS)
        .where(
            ANSWERS.c.survey_id == survey.id,
            ANSWERS.c.question == question,
            ANSWERS.c.recording_url.is_(None),
        )
        .values(value=func.substr(ANSWERS.c.value + "\n" + text, 1, ANSWER_TEXT_LIMIT))
    )


def answers_of(session: Session, survey: Survey) -> dict[str, Answer]:
    """Return the survey's answers by question."""
    rows = session.scalars(select(Answer).where(Answer.survey_id == survey.id))
    return {answer.question: answer for answer in rows}


def add_opt_out(
    session: Session,
    phone_e164: str,
    *,
    channel: str = OptOutChannel.ALL,
    source: str = OptOutSource.KEYPAD,
    now: datetime,
    reason: str | None = None,
    created_by: str | None = None,
) -> bool:
    """Record that a number must not be contacted again (no-op if already opted out)."""
    covering = {OptOutChannel.ALL, channel}  # a channel opt-out is covered by an "all" one
    live = select(OptOut.id).where(
        OptOut.phone_e164 == phone_e164, OptOut.revoked_at.is_(None), OptOut.channel.in_(covering)
    )
    if session.scalars(live.limit(1)).first() is not None:
        return False
    session.add(
        OptOut(
            phone_e164=phone_e164,
            channel=channel,
            source=source,
            reason=reason,
            created_at=now,
            created_by=created_by,
        )
    )
    session.flush()
    return True


def finish_survey(session: Session, survey: Survey | SurveyRecord, disposition: str, now: datetime) -> None:
    """Record the survey's final disposition; it will not be contacted again."""
    survey.state = SurveyState.DONE
    survey.disposition = disposition
    survey.finished_at = now
    survey.next_attempt_at = None
    survey.lease_owner = None
    survey.lease_expires_at = None
    survey.updated_at = now


def item_of(session: Session, survey: Survey) -> ServiceItem:
    """Return the service item a survey is about."""
    item = session.get(ServiceItem, survey.item_id)
    assert item is not None  # a foreign key guarantees it
    return item
