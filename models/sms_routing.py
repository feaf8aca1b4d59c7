"""Which survey an inbound SMS answers: the citizen's number and the number they are writing to.

A survey text goes out from one of our numbers (Attempt.from_number); the citizen's reply comes back
to that number. Of the surveys of the citizen's number, the one a reply belongs to is the newest whose
latest SMS attempt was sent from the number the reply reached (DESIGN §6), preferring one whose text
may have reached the citizen: a newer survey whose text is still pending or failed (waiting for a
retry) was never read, so the reply answers the older one they did read.

The query starts from the citizen's number (ix_service_items_phone_e164), goes to the surveys of those
items and fetches all their attempts; a citizen has a handful, so the latest SMS attempt of each survey
is picked here rather than by a correlated subquery the planner might start from. Surveys come back
as SurveyRecords (models/survey_ops.py): one Core statement, as the SMS webhook's rate needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, Table, bindparam, select, update
from sqlalchemy.orm import Session

from models.domain import Channel
from models.driver_sql import DriverStatement
from models.survey_ops import ITEM_PHONE, RECORD_COLUMNS, RECORD_FROM, SURVEYS, SurveyRecord
from models.surveys import Attempt, AttemptStatus, SurveyState

_SMS = Channel.SMS.value
# A text in one of these states never reached the citizen: a reply cannot be answering it.
_UNREAD = frozenset(
    {AttemptStatus.PENDING, AttemptStatus.FAILED, AttemptStatus.UNDELIVERED, AttemptStatus.CANCELED}
)
ATTEMPTS: Table = Attempt.__table__  # type: ignore[assignment]


class Route(NamedTuple):
    """The survey a reply answers, and its latest SMS attempt (the text being answered)."""

    survey: SurveyRecord
    attempt_id: int
    attempt_status: str
    from_number: str | None


def _routes_statement(state: ColumnElement[bool], for_update: bool) -> Select[Any]:
    stmt = (
        select(
            *RECORD_COLUMNS,
            ATTEMPTS.c.id.label("attempt_id"),
            ATTEMPTS.c.channel.label("attempt_channel"),
            ATTEMPTS.c.status.label("attempt_status"),
            ATTEMPTS.c.from_number.label("attempt_from_number"),
        )
        .select_from(RECORD_FROM.join(ATTEMPTS, ATTEMPTS.c.survey_id == SURVEYS.c.id))
        .where(ITEM_PHONE == bindparam("citizen"), state)
        .order_by(ATTEMPTS.c.id.desc())
    )
    return stmt.with_for_update(of=SURVEYS) if for_update else stmt


# Built once, compiled once per process, run on the driver (models/driver_sql.py).
_OPEN = DriverStatement(_routes_statement(SURVEYS.c.state != SurveyState.DONE.value, for_update=False))
_OPEN_LOCKED = DriverStatement(_routes_statement(SURVEYS.c.state != SurveyState.DONE.value, for_update=True))
_CLOSED = DriverStatement(_routes_statement(SURVEYS.c.state == SurveyState.DONE.value, for_update=False))
_DELIVERED_BY_REPLY = DriverStatement(
    update(ATTEMPTS)
    .where(ATTEMPTS.c.id == bindparam("attempt_id"))
    .values(status=bindparam("status", type_=ATTEMPTS.c.status.type))
)


def _routes(session: Session, citizen: str, stmt: DriverStatement) -> list[Route]:
    """Return each survey of the number texted at least once with its latest SMS attempt, newest first."""
    latest: dict[int, Route] = {}
    for row in stmt.mappings(session, {"citizen": citizen}):
        if row["attempt_channel"] == _SMS and row["id"] not in latest:
            latest[row["id"]] = Route(
                SurveyRecord(row), row["attempt_id"], row["attempt_status"], row["attempt_from_number"]
            )
    return sorted(latest.values(), key=lambda route: route.attempt_id, reverse=True)


def open_sms_survey(
    session: Session, citizen: str, our_number: str, *, for_update: bool = False
) -> Route | None:
    """Return the open survey a reply from `citizen` to `our_number` answers (and its text), or None.

    With `for_update` the citizen's open surveys are locked (PostgreSQL), so two replies to one
    survey are applied one after the other and the second sees the state the first left.
    """
    return _answered(_routes(session, citizen, _OPEN_LOCKED if for_update else _OPEN), our_number)


def _answered(routes: list[Route], our_number: str) -> Route | None:
    """The newest route from `our_number` whose text may have been read, else the newest from it."""
    ours = [route for route in routes if route.from_number == our_number]
    return next((route for route in ours if route.attempt_status not in _UNREAD), None) or next(
        iter(ours), None
    )


def open_sms_surveys(session: Session, citizen: str) -> list[SurveyRecord]:
    """Return every open survey that has texted `citizen`, from any of our numbers (newest first)."""
    return [route.survey for route in _routes(session, citizen, _OPEN)]


def closed_sms_survey(session: Session, citizen: str, our_number: str) -> SurveyRecord | None:
    """Return the most recent closed survey a reply from `citizen` to `our_number` arrives late for."""
    route = _answered(_routes(session, citizen, _CLOSED), our_number)
    return route.survey if route else None


def set_attempt_status(session: Session, attempt_id: int, status: str) -> None:
    """Set the status of the attempt a route names (a reply proves its text was delivered)."""
    _DELIVERED_BY_REPLY.rows(session, {"attempt_id": attempt_id, "status": status})
