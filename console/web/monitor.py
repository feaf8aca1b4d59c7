"""What the dashboard shows: today's contacts, the calls and texts in flight, the quarter so far."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session

from models.departments import Department
from models.domain import Disposition
from models.items import ServiceItem
from models.settings import Settings
from models.surveys import Attempt, AttemptStatus, Survey, SurveyState
from scheduler.calendar import local_to_utc

FAILED = (AttemptStatus.FAILED, AttemptStatus.UNDELIVERED, AttemptStatus.CANCELED)
LIVE_ROWS = 20


@dataclass
class Today:
    """Today's contacts, in the centre's time zone."""

    placed: int = 0
    answered: int = 0
    completed: int = 0
    failed: int = 0


def day_start(now: datetime, settings: Settings) -> datetime:
    """Return the UTC instant of today's local midnight."""
    local = now.astimezone(settings.app.tz)
    return local_to_utc(local.date(), time(0), settings.app.tz)


def _scoped(stmt: Select, scope: list[int] | None) -> Select:  # type: ignore[type-arg]
    return stmt if scope is None else stmt.where(Survey.department_id.in_(scope))


def today(session: Session, settings: Settings, now: datetime, scope: list[int] | None) -> Today:
    """Count today's attempts placed, answered and failed, and the surveys completed today."""
    start = day_start(now, settings)
    end = start + timedelta(days=1)
    answered = or_(
        and_(Attempt.channel == "voice", Attempt.started_at.is_not(None)),
        and_(Attempt.channel == "sms", Attempt.status == AttemptStatus.DELIVERED),
    )
    attempts = _scoped(
        select(
            func.count(Attempt.id),
            func.coalesce(func.sum(_flag(answered)), 0),
            func.coalesce(func.sum(_flag(Attempt.status.in_(FAILED))), 0),
        )
        .join(Survey, Survey.id == Attempt.survey_id)
        .where(Attempt.created_at >= start, Attempt.created_at < end),
        scope,
    )
    placed, answered_count, failed = session.execute(attempts).one()
    completed = session.scalar(
        _scoped(
            select(func.count(Survey.id)).where(
                Survey.finished_at >= start,
                Survey.finished_at < end,
                Survey.disposition == Disposition.COMPLETE,
            ),
            scope,
        )
    )
    return Today(int(placed or 0), int(answered_count or 0), int(completed or 0), int(failed or 0))


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


@dataclass
class LiveRow:
    """One recent call or text."""

    attempt: Attempt
    survey: Survey
    item: ServiceItem
    department: Department


def live(session: Session, scope: list[int] | None, limit: int = LIVE_ROWS) -> list[LiveRow]:
    """Return the newest attempts, those in flight first."""
    stmt = _scoped(
        select(Attempt, Survey, ServiceItem, Department)
        .join(Survey, Survey.id == Attempt.survey_id)
        .join(ServiceItem, ServiceItem.id == Survey.item_id)
        .join(Department, Department.id == Survey.department_id)
        .order_by((Survey.state == SurveyState.DONE).asc(), Attempt.id.desc())
        .limit(limit),
        scope,
    )
    return [LiveRow(*row) for row in session.execute(stmt)]
