"""What a quarterly report shows, read once from the store."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.cases import Case
from models.departments import Department
from models.metrics import DepartmentFigures, late_rating_counts, trend
from models.quarter_ops import figures_for, normalise_quarter
from models.quarters import QuarterClose, QuarterSnapshot
from models.settings import Settings
from scheduler.policy import previous_quarter

TREND_QUARTERS = 8  # the report's quarter and the seven before it
# Years a quarter may be in: the trend walks back seven quarters, a close reads the next year's start.
YEARS = range(1900, 9999)


@dataclass(frozen=True)
class CaseRow:
    """One rectification case as the report lists it (times in the local time zone)."""

    id: int
    department_id: int
    department_code: str
    department_name: str
    grade: str
    categories: list[str]
    comment: str | None
    state: str
    opened_at: datetime
    due_at: datetime
    answered_at: datetime | None
    feedback: str | None
    verification_result: str | None
    escalation: str | None
    escalation_reason: str | None


@dataclass
class ReportData:
    """Everything a report of one quarter shows."""

    org: str
    quarter: str
    generated_at: datetime
    tz: ZoneInfo
    figures: list[DepartmentFigures]
    closed_at: datetime | None = None
    closed_by: str | None = None
    department_code: str | None = None
    ranked_total: int = 0
    # Satisfaction rate per department (code) per quarter, oldest quarter first; None: no ratings.
    trend_quarters: list[str] = field(default_factory=list)
    trend_rates: dict[str, list[float | None]] = field(default_factory=dict)
    cases: list[CaseRow] = field(default_factory=list)
    # Ratings that arrived after the close, per department code: kept, never in the figures.
    late_since_close: dict[str, int] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        """Whether the figures are the closed quarter's frozen snapshot."""
        return self.closed_at is not None

    def local(self, value: datetime | None) -> str:
        """Format an instant in the report's time zone."""
        return "" if value is None else value.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    def cases_of(self, department_id: int) -> list[CaseRow]:
        """Return one department's cases."""
        return [row for row in self.cases if row.department_id == department_id]


def checked_quarter(text: str) -> str:
    """Return a quarter written as '2026Q3'; raise ValueError if malformed or its year is out of YEARS."""
    quarter = normalise_quarter(text)
    if int(quarter[:4]) not in YEARS:
        raise ValueError(f"quarter {quarter} is out of range: its year must be {YEARS[0]} to {YEARS[-1]}")
    return quarter


def figures_with_late(
    session: Session, quarter: str, settings: Settings, now: datetime
) -> tuple[list[DepartmentFigures], QuarterClose | None]:
    """Return every department's figures, ranked among all, and the close; late answers counted now."""
    figures, closing = figures_for(session, quarter, settings, now)
    if closing is not None:
        # The snapshot froze the late count at 0: the answers stored since the close are counted now.
        late = late_rating_counts(session, quarter)
        figures = [replace(f, late_answers=late.get(f.department_id, 0)) for f in figures]
    return figures, closing


def trend_quarters(quarter: str, count: int = TREND_QUARTERS) -> list[str]:
    """Return `count` quarters ending with `quarter`, oldest first."""
    quarters = [quarter]
    while len(quarters) < count:
        quarters.append(previous_quarter(quarters[-1]))
    return quarters[::-1]


def _trend_rates(
    session: Session, quarters: list[str], figures: list[DepartmentFigures]
) -> dict[str, list[float | None]]:
    ids = {f.department_id: f.department_code for f in figures}
    # Closed quarters show what was published; only the open ones are computed.
    published = {
        (row.quarter, row.department_id): row.figures.get("satisfaction_rate")
        for row in session.scalars(
            select(QuarterSnapshot).where(
                QuarterSnapshot.quarter.in_(quarters), QuarterSnapshot.department_id.in_(list(ids))
            )
        )
    }
    closed = set(session.scalars(select(QuarterClose.quarter).where(QuarterClose.quarter.in_(quarters))))
    still_open = [q for q in quarters if q not in closed]
    live = trend(session, still_open, list(ids)) if still_open else {}
    rates: dict[str, list[float | None]] = {}
    for department_id, code in ids.items():
        series = live.get(department_id, {})
        rates[code] = [
            published.get((q, department_id))
            if q in closed
            else (series[q].satisfaction_rate if q in series else None)
            for q in quarters
        ]
    return rates


def _cases(session: Session, quarter: str, department_ids: list[int]) -> list[CaseRow]:
    stmt = (
        select(Case, Department.code, Department.name)
        .join(Department, Department.id == Case.department_id)
        .where(Case.quarter == quarter, Case.department_id.in_(department_ids))
        .order_by(Department.code, Case.opened_at, Case.id)
    )
    return [
        CaseRow(
            c.id, c.department_id, code, name, c.grade, list(c.categories or []), c.comment, c.state,
            c.opened_at, c.due_at, c.answered_at, c.feedback, c.verification_result, c.escalation,
            c.escalation_reason,
        )
        for c, code, name in session.execute(stmt)
    ]


def build_report(
    session: Session,
    quarter: str,
    settings: Settings,
    now: datetime,
    department_code: str | None = None,
) -> ReportData:
    """Gather a quarter's figures, trend and cases, optionally for one department only."""
    quarter = checked_quarter(quarter)
    # Ranks are computed among all departments, then the report is cut to the one asked for.
    figures, closing = figures_with_late(session, quarter, settings, now)
    ranked_total = sum(1 for f in figures if f.rank is not None)
    if department_code is not None:
        figures = [f for f in figures if f.department_code == department_code]
    data = ReportData(
        org=settings.app.org,
        quarter=quarter,
        generated_at=now,
        tz=settings.app.tz,
        figures=figures,
        closed_at=closing.closed_at if closing else None,
        closed_by=closing.closed_by if closing else None,
        department_code=department_code,
        ranked_total=ranked_total,
    )
    data.trend_quarters = trend_quarters(quarter)
    if figures:
        data.trend_rates = _trend_rates(session, data.trend_quarters, figures)
        data.cases = _cases(session, quarter, [f.department_id for f in figures])
    if closing is not None:
        data.late_since_close = {f.department_code: f.late_answers for f in figures if f.late_answers}
    return data
