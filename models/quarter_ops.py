"""Closing a quarter: an immutable snapshot of its figures, and answers that arrive after it (late).

Published figures come from snapshots only. An answer stored after its quarter was closed is marked
late: it is kept and shown as late, and the aggregates of models.metrics leave it out, so neither the
snapshot nor a recomputation of the quarter changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.departments import Department
from models.metrics import DepartmentFigures, quarter_figures, trend
from models.quarters import QuarterClose, QuarterSnapshot
from models.settings import Settings
from models.surveys import Answer, Survey
from models.translatable import TranslatableError
from scheduler.policy import parse_quarter, previous_quarter, quarter_bounds


class QuarterError(TranslatableError):
    """A quarter cannot be closed (again, or yet); the message says why (and the console translates it)."""


def normalise_quarter(quarter: str) -> str:
    """Return a quarter written as '2026Q3' (accepts '2026q3' and surrounding spaces)."""
    year, number = parse_quarter(quarter)
    return f"{year:04d}Q{number}"


def closing_of(session: Session, quarter: str) -> QuarterClose | None:
    """Return the close record of a quarter, or None while it is open."""
    return session.scalars(select(QuarterClose).where(QuarterClose.quarter == quarter)).first()


def is_quarter_closed(session: Session, quarter: str) -> bool:
    """Return whether a quarter's figures are frozen (answers for it are late from now on)."""
    return closing_of(session, quarter) is not None


def mark_late_answers(session: Session, survey: Survey) -> int:
    """Mark the survey's answers that arrived after its quarter was closed as late; return how many."""
    closing = closing_of(session, survey.quarter)
    if closing is None:
        return 0
    result = session.execute(
        update(Answer)
        .where(
            Answer.survey_id == survey.id,
            Answer.received_at >= closing.closed_at,
            Answer.late.is_(False),
        )
        .values(late=True)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def snapshots(session: Session, quarter: str) -> list[DepartmentFigures]:
    """Return a closed quarter's published figures (empty while it is open)."""
    rows = session.scalars(select(QuarterSnapshot).where(QuarterSnapshot.quarter == quarter))
    return sorted(
        (DepartmentFigures.from_dict(row.figures) for row in rows), key=lambda f: f.department_code
    )


def previous_figures(
    session: Session, quarter: str, settings: Settings, department_ids: list[int] | None = None
) -> dict[int, tuple[float | None, float | None]]:
    """Return the previous quarter's (satisfaction rate, index) per department: published if closed."""
    before = previous_quarter(quarter)
    if is_quarter_closed(session, before):
        return {
            f.department_id: (f.satisfaction_rate, f.satisfaction_index)
            for f in snapshots(session, before)
            if department_ids is None or f.department_id in department_ids
        }
    return {
        department_id: (summary.satisfaction_rate, summary.satisfaction_index)
        for department_id, by_quarter in trend(session, [before], department_ids).items()
        for summary in by_quarter.values()
    }


def live_figures(
    session: Session,
    quarter: str,
    settings: Settings,
    now: datetime,
    department_ids: list[int] | None = None,
) -> list[DepartmentFigures]:
    """Compute a quarter's figures from the store now (provisional while the quarter is open)."""
    return quarter_figures(
        session,
        quarter,
        now=now,
        min_ratings_to_rank=settings.cases.min_ratings_to_rank,
        previous=previous_figures(session, quarter, settings, department_ids),
        department_ids=department_ids,
    )


def figures_for(
    session: Session,
    quarter: str,
    settings: Settings,
    now: datetime,
    department_ids: list[int] | None = None,
) -> tuple[list[DepartmentFigures], QuarterClose | None]:
    """Return a quarter's figures: the published snapshot when closed, else live; and its close."""
    closing = closing_of(session, quarter)
    if closing is None:
        return live_figures(session, quarter, settings, now, department_ids), None
    published = snapshots(session, quarter)
    if department_ids is not None:
        published = [f for f in published if f.department_id in department_ids]
    return published, closing


def close_quarter(
    session: Session, quarter: str, actor: str, settings: Settings, now: datetime
) -> QuarterClose:
    """Freeze a finished quarter's figures, one snapshot per department; refuse a second close."""
    quarter = normalise_quarter(quarter)
    existing = closing_of(session, quarter)
    if existing is not None:
        when = existing.closed_at.astimezone(settings.app.tz).strftime("%Y-%m-%d %H:%M")
        raise QuarterError(
            "quarter %(quarter)s was already closed on %(when)s by %(by)s: "
            "its published figures cannot change",
            quarter=quarter, when=when, by=existing.closed_by,
        )
    _, end = quarter_bounds(quarter, settings.app.tz)
    if now < end:
        local_end = end.astimezone(settings.app.tz).strftime("%Y-%m-%d %H:%M")
        raise QuarterError(
            "quarter %(quarter)s has not ended yet (it ends %(end)s %(timezone)s)",
            quarter=quarter, end=local_end, timezone=settings.app.timezone,
        )
    closing = QuarterClose(quarter=quarter, closed_at=now, closed_by=actor)
    try:
        with session.begin_nested():
            session.add(closing)
    except IntegrityError:
        raise QuarterError(
            "quarter %(quarter)s was closed at the same moment by someone else", quarter=quarter
        ) from None
    for figures in live_figures(session, quarter, settings, now):
        session.add(
            QuarterSnapshot(
                quarter=quarter,
                department_id=figures.department_id,
                figures=figures.as_dict(),
                created_at=now,
            )
        )
    session.flush()
    return closing


def department_ids_for(session: Session, code: str) -> list[int]:
    """Return the id of the department with this code (as a list for scoping), or raise."""
    department_id = session.scalars(select(Department.id).where(Department.code == code)).first()
    if department_id is None:
        raise QuarterError("no department with code %(code)r", code=code)
    return [department_id]
