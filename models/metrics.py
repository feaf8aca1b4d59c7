"""The figures of DESIGN §8 per department and quarter, computed by SQL aggregates on both databases.

Only counts leave the database: every query groups by department (and quarter, grade or state), and
Python turns the few aggregated rows into rates. Answers marked late (they arrived after their
quarter was closed) never count. The covering indexes below, declared beside the queries that read
them (migrations 0003 and 0005), let a quarter be read from indexes alone: its surveys in id order,
and the answers and attempts of its range of survey ids, so both databases read each index's slice
of the quarter once, in order (PostgreSQL merges the joins).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Index,
    Integer,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from models.cases import Case, CaseState
from models.departments import Department
from models.domain import AAPOR_CLASS, BAD_GRADES, DEFAULT_GRADE_WEIGHTS, AaporClass, Category, Grade
from models.surveys import Answer, Attempt, Survey, SurveyKind, SurveyState
from scheduler.policy import previous_quarter

# One quarter's surveys in id order (its first and last id are the ends of the range), with the
# department, state and disposition the figures group by.
SURVEY_METRICS_INDEX = Index(
    "ix_surveys_quarter_metrics",
    Survey.quarter,
    Survey.kind,
    Survey.id,
    Survey.department_id,
    Survey.state,
    Survey.disposition,
)
# Ratings only (a partial index: comments are long texts), joined to surveys without a table read.
# `question` is constant in it, but lets SQLite prefer it to the unique (survey_id, question) index.
RATING_INDEX = Index(
    "ix_answers_rating",
    Answer.survey_id,
    Answer.question,
    Answer.late,
    Answer.value,
    sqlite_where=literal_column("question") == literal_column("'rating'"),
    postgresql_where=literal_column("question") == literal_column("'rating'"),
)
# Categories only (the few answers of bad reviews), read by survey id range without a table read.
CATEGORIES_INDEX = Index(
    "ix_answers_categories",
    Answer.survey_id,
    Answer.question,
    Answer.late,
    Answer.value,
    sqlite_where=literal_column("question") == literal_column("'categories'"),
    postgresql_where=literal_column("question") == literal_column("'categories'"),
)
# One quarter's cases by department.
CASE_INDEX = Index("ix_cases_quarter_department", Case.quarter, Case.department_id)

AGGREGATE_WORK_MEM = "32MB"  # PostgreSQL memory per sort or hash of these aggregates
Z_95 = 1.959963984540054  # the standard normal quantile of a two-sided 95 % interval


def _constant(value: str) -> ColumnClause[str]:
    """Return a trusted string constant written into the SQL (never user input)."""
    assert "'" not in value
    return literal_column(f"'{value}'", String)


# Constants written into the SQL, not bound, so the planner can match the partial rating index.
_RATING = _constant("rating")
_CATEGORIES = _constant("categories")
_SURVEY_KIND = _constant(SurveyKind.SURVEY.value)
# Final dispositions of surveys that never reached the citizen, or whose rating does not count.
NO_RATING = frozenset(
    {"not_eligible", "no_answer", "busy", "machine", "failed", "not_contacted", "undelivered"}
)
_NO_RATING = [_constant(d) for d in sorted(NO_RATING)]
GRADES = tuple(Grade)
CATEGORIES = tuple(Category)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Return the Wilson score interval of a proportion, or None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n successes a bound is exactly 0 or 1; floating point leaves 5.55e-17 in an export.
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass
class AaporRates:
    """Final dispositions by AAPOR class and the response rates of DESIGN §8."""

    counts: dict[str, int] = field(default_factory=lambda: {c.value: 0 for c in AaporClass})
    rr1: float | None = None
    rr2: float | None = None
    coop1: float | None = None
    ref1: float | None = None
    con1: float | None = None

    @classmethod
    def from_dispositions(cls, dispositions: Mapping[str, int]) -> AaporRates:
        """Map final disposition counts to AAPOR classes and compute the rates."""
        rates = cls()
        for disposition, count in dispositions.items():
            klass = AAPOR_CLASS.get(disposition)  # type: ignore[call-overload]
            rates.counts[(klass or AaporClass.UO).value] += count
        c = rates.counts
        interviews = c["I"] + c["P"]
        all_eligible = interviews + c["R"] + c["NC"] + c["O"] + c["UH"] + c["UO"]
        rates.rr1 = _ratio(c["I"], all_eligible)
        rates.rr2 = _ratio(interviews, all_eligible)
        rates.coop1 = _ratio(c["I"], interviews + c["R"] + c["O"])
        rates.ref1 = _ratio(c["R"], all_eligible)
        rates.con1 = _ratio(interviews + c["R"] + c["O"], all_eligible)
        return rates


@dataclass
class CaseFigures:
    """Rectification cases opened for a quarter's bad reviews, and how they went."""

    opened: int = 0
    answered: int = 0
    answered_on_time: int = 0
    overdue: int = 0
    verified_satisfied: int = 0
    closed: int = 0


@dataclass
class GradeSummary:
    """Rates derived from grade counts (also the shape of one point of the trend)."""

    grades: dict[str, int]
    weights: Mapping[Grade, int] = field(default_factory=lambda: DEFAULT_GRADE_WEIGHTS, repr=False)

    @property
    def rated(self) -> int:
        return sum(self.grades.values())

    @property
    def satisfied(self) -> int:
        return self.rated - self.bad

    @property
    def bad(self) -> int:
        return sum(self.grades.get(grade.value, 0) for grade in BAD_GRADES)

    @property
    def satisfaction_rate(self) -> float | None:
        return _ratio(self.satisfied, self.rated)

    @property
    def bad_review_rate(self) -> float | None:
        return _ratio(self.bad, self.rated)

    @property
    def satisfaction_index(self) -> float | None:
        total = sum(self.weights[Grade(g)] * n for g, n in self.grades.items())
        return _ratio(total, self.rated)


@dataclass
class DepartmentFigures:
    """Every figure of one department in one quarter (JSON-ready through as_dict)."""

    quarter: str
    department_id: int
    department_code: str
    department_name: str
    surveys: int = 0
    finished: int = 0
    attempts: int = 0
    completes: int = 0
    grades: dict[str, int] = field(default_factory=lambda: {g.value: 0 for g in GRADES})
    rated: int = 0
    satisfied: int = 0
    bad: int = 0
    satisfaction_rate: float | None = None
    satisfaction_low: float | None = None
    satisfaction_high: float | None = None
    bad_review_rate: float | None = None
    satisfaction_index: float | None = None
    categories: dict[str, int] = field(default_factory=lambda: {c.value: 0 for c in CATEGORIES})
    late_answers: int = 0
    previous_satisfaction_rate: float | None = None
    previous_satisfaction_index: float | None = None
    satisfaction_rate_change: float | None = None
    satisfaction_index_change: float | None = None
    rank: int | None = None
    cases: CaseFigures = field(default_factory=CaseFigures)
    aapor: AaporRates = field(default_factory=AaporRates)

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as plain JSON values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DepartmentFigures:
        """Rebuild figures stored by as_dict (e.g. a quarter snapshot)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["cases"] = CaseFigures(**data.get("cases", {}))
        values["aapor"] = AaporRates(**data.get("aapor", {}))
        return cls(**values)

    def apply_grades(self, summary: GradeSummary) -> None:
        """Fill the grade counts and the rates derived from them."""
        self.grades = {g.value: summary.grades.get(g.value, 0) for g in GRADES}
        self.rated, self.satisfied, self.bad = summary.rated, summary.satisfied, summary.bad
        self.satisfaction_rate = summary.satisfaction_rate
        self.bad_review_rate = summary.bad_review_rate
        self.satisfaction_index = summary.satisfaction_index
        interval = wilson_interval(summary.satisfied, summary.rated)
        self.satisfaction_low, self.satisfaction_high = interval or (None, None)

    def apply_previous(self, rate: float | None, index: float | None) -> None:
        """Record the previous quarter's rate and index and the change against them."""
        self.previous_satisfaction_rate = rate
        self.previous_satisfaction_index = index
        if rate is not None and self.satisfaction_rate is not None:
            self.satisfaction_rate_change = self.satisfaction_rate - rate
        if index is not None and self.satisfaction_index is not None:
            self.satisfaction_index_change = self.satisfaction_index - index


def _survey_scope(quarter: str, department_ids: Iterable[int] | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Survey.quarter == quarter, Survey.kind == _SURVEY_KIND]
    if department_ids is not None:
        conditions.append(Survey.department_id.in_(list(department_ids)))
    return conditions


def _tune(session: Session) -> None:
    """Prepare a PostgreSQL transaction for these aggregates (SQLite's cache is set in models.db)."""
    if session.get_bind().dialect.name == "postgresql":
        # JIT compilation costs more than these sub-second aggregates take to run, and a quarter's
        # groups sorted or hashed in 4 MB (the default) spill to disk.
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text(f"SET LOCAL work_mem = '{AGGREGATE_WORK_MEM}'"))


def _may_have_rating() -> ColumnElement[bool]:
    # A citizen who rated and then said they never handled the item is not a rating either.
    return or_(Survey.disposition.is_(None), Survey.disposition.not_in(_NO_RATING))


def may_have_rating(disposition: str | None) -> bool:
    """Return whether a survey with this final disposition (None: not final yet) counts its rating."""
    return disposition is None or disposition not in NO_RATING


def quarter_id_bounds(session: Session, quarters: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Return the first and last survey id of each quarter that has surveys (two index probes each).

    Surveys are created as their items complete, so a quarter's surveys span a narrow id range:
    joins bounded by it read only that slice of the answer and attempt indexes, in id order.
    """
    bounds = []
    for quarter in quarters:
        of_quarter = _survey_scope(quarter, None)
        bounds.append(select(func.min(Survey.id)).where(*of_quarter).scalar_subquery())
        bounds.append(select(func.max(Survey.id)).where(*of_quarter).scalar_subquery())
    if not bounds:
        return {}
    row = session.execute(select(*bounds)).one()
    return {
        quarter: (row[2 * n], row[2 * n + 1]) for n, quarter in enumerate(quarters) if row[2 * n] is not None
    }


def _between(column: Any, bounds: tuple[int, int]) -> ColumnElement[bool]:
    # Written into the SQL rather than bound: a plan PostgreSQL keeps for a prepared statement
    # would otherwise guess the range's size instead of seeing it.
    low, high = bounds
    return column.between(
        bindparam(None, low, Integer, literal_execute=True),
        bindparam(None, high, Integer, literal_execute=True),
    )


def grade_counts(
    session: Session, quarters: Sequence[str], department_ids: Iterable[int] | None = None
) -> dict[tuple[str, int], dict[str, int]]:
    """Return on-time rating counts by (quarter, department) and grade: one aggregate per quarter."""
    departments = None if department_ids is None else list(department_ids)
    _tune(session)
    per_quarter = [
        select(literal(quarter), Survey.department_id, Answer.value, func.count())
        .join(
            Answer,
            and_(
                Answer.survey_id == Survey.id, Answer.question == _RATING, _between(Answer.survey_id, bounds)
            ),
        )
        .where(*_survey_scope(quarter, departments), Answer.late == false(), _may_have_rating())
        .group_by(Survey.department_id, Answer.value)
        for quarter, bounds in quarter_id_bounds(session, list(dict.fromkeys(quarters))).items()
    ]
    if not per_quarter:
        return {}
    result: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    valid = {g.value for g in GRADES}
    # Each quarter is its own aggregate over its id range (an index range and a join in id order),
    # sent together as one statement.
    for quarter, department_id, grade, count in session.execute(union_all(*per_quarter)):
        if grade in valid:
            result[(quarter, department_id)][grade] = count
    return dict(result)


def trend(
    session: Session,
    quarters: Sequence[str],
    department_ids: Iterable[int] | None = None,
    weights: Mapping[Grade, int] = DEFAULT_GRADE_WEIGHTS,
) -> dict[int, dict[str, GradeSummary]]:
    """Return each department's grade summary per quarter."""
    out: dict[int, dict[str, GradeSummary]] = defaultdict(dict)
    for (quarter, department_id), grades in grade_counts(session, quarters, department_ids).items():
        out[department_id][quarter] = GradeSummary(grades, weights)
    return dict(out)


def _quarter_rows(
    session: Session, quarter: str, departments: Iterable[int] | None, bounds: tuple[int, int]
) -> Any:
    """Read a quarter's surveys once, with their rating, categories and number of attempts.

    The rows are grouped by department, state, disposition, grade and lateness of the rating; each
    carries its count of surveys, of attempts, and how many on-time categories answers name each
    category. The caller decides which groups count as ratings and bad reviews.
    """
    rating, chosen = aliased(Answer), aliased(Answer)
    tries = (
        select(Attempt.survey_id, func.count().label("n"))
        .where(_between(Attempt.survey_id, bounds))
        .group_by(Attempt.survey_id)
        .subquery("tries")
    )
    padded = literal(",") + chosen.value + literal(",")
    stmt = (
        select(
            Survey.department_id,
            Survey.state,
            Survey.disposition,
            rating.value,
            rating.late,
            func.count(),
            func.sum(tries.c.n),
            *(func.sum(case((padded.like(f"%,{c.value},%"), 1), else_=0)) for c in CATEGORIES),
        )
        .select_from(Survey)
        .outerjoin(
            rating,
            and_(
                rating.survey_id == Survey.id, rating.question == _RATING, _between(rating.survey_id, bounds)
            ),
        )
        .outerjoin(
            chosen,
            and_(
                chosen.survey_id == Survey.id,
                chosen.question == _CATEGORIES,
                chosen.late == false(),
                _between(chosen.survey_id, bounds),
            ),
        )
        .outerjoin(tries, tries.c.survey_id == Survey.id)
        .where(*_survey_scope(quarter, departments))
        .group_by(Survey.department_id, Survey.state, Survey.disposition, rating.value, rating.late)
    )
    return session.execute(stmt)


def _case_rows(session: Session, quarter: str, departments: Iterable[int] | None, now: datetime) -> Any:
    def count_if(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    stmt = select(
        Case.department_id,
        func.count(),
        count_if(Case.answered_at.is_not(None)),
        count_if(Case.answered_at <= Case.due_at),
        count_if(
            or_(
                Case.overdue_flagged_at.is_not(None),
                Case.answered_at > Case.due_at,
                and_(Case.state.in_([CaseState.OPEN, CaseState.REOPENED]), Case.due_at < now),
            )
        ),
        count_if(Case.verification_result == "satisfied"),
        count_if(Case.state == CaseState.CLOSED),
    ).where(Case.quarter == quarter)
    if departments is not None:
        stmt = stmt.where(Case.department_id.in_(list(departments)))
    return session.execute(stmt.group_by(Case.department_id))


def late_rating_counts(session: Session, quarter: str) -> dict[int, int]:
    """Return how many ratings of a quarter arrived late (after its close), per department."""
    stmt = (
        select(Survey.department_id, func.count())
        .join(Answer, and_(Answer.survey_id == Survey.id, Answer.question == _RATING))
        .where(*_survey_scope(quarter, None), Answer.late.is_(True))
        .group_by(Survey.department_id)
    )
    return {department_id: count for department_id, count in session.execute(stmt)}


def rank_departments(figures: Sequence[DepartmentFigures], min_ratings: int) -> None:
    """Rank departments with at least min_ratings ratings by index, then rate (ties share a rank)."""
    ranked = sorted(
        (f for f in figures if f.rated >= max(min_ratings, 1) and f.satisfaction_index is not None),
        key=lambda f: (-(f.satisfaction_index or 0.0), -(f.satisfaction_rate or 0.0)),
    )
    previous_key: tuple[float, float] | None = None
    for position, figure in enumerate(ranked, start=1):
        key = (round(figure.satisfaction_index or 0.0, 9), round(figure.satisfaction_rate or 0.0, 9))
        if key != previous_key:
            rank, previous_key = position, key
        figure.rank = rank
    for figure in figures:
        if figure not in ranked:
            figure.rank = None


def quarter_figures(
    session: Session,
    quarter: str,
    *,
    now: datetime,
    min_ratings_to_rank: int,
    previous: Mapping[int, tuple[float | None, float | None]] | None = None,
    department_ids: Iterable[int] | None = None,
    weights: Mapping[Grade, int] = DEFAULT_GRADE_WEIGHTS,
) -> list[DepartmentFigures]:
    """Return every department's figures for a quarter, ranked.

    `previous` maps a department to its previous quarter's (satisfaction rate, index) — from that
    quarter's published snapshot when it is closed; without it they are computed live here.
    `now` decides which unanswered cases are overdue.
    """
    departments = None if department_ids is None else list(department_ids)
    figures: dict[int, DepartmentFigures] = {}

    def figure(department_id: int) -> DepartmentFigures:
        if department_id not in figures:
            figures[department_id] = DepartmentFigures(quarter, department_id, "", "")
        return figures[department_id]

    dispositions: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    grades: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    valid_grades = {g.value for g in GRADES}
    bad_grades = {g.value for g in BAD_GRADES}
    _tune(session)
    bounds = quarter_id_bounds(session, [quarter]).get(quarter)
    rows = _quarter_rows(session, quarter, departments, bounds) if bounds else ()
    for department_id, state, disposition, grade, late, count, attempts, *chosen in rows:
        f = figure(department_id)
        f.surveys += count
        f.attempts += int(attempts or 0)
        if state == SurveyState.DONE and disposition:
            f.finished += count
            dispositions[department_id][disposition] += count
            if disposition == "complete":
                f.completes += count
        if grade is None or not may_have_rating(disposition):
            continue
        if late:
            f.late_answers += count
        elif grade in valid_grades:
            grades[department_id][grade] += count
            if grade in bad_grades:  # a bad review's categories count
                for category, n in zip(CATEGORIES, chosen, strict=True):
                    f.categories[category.value] += int(n or 0)
    for department_id, opened, answered, on_time, overdue, satisfied, closed in _case_rows(
        session, quarter, departments, now
    ):
        figure(department_id).cases = CaseFigures(
            opened,
            int(answered or 0),
            int(on_time or 0),
            int(overdue or 0),
            int(satisfied or 0),
            int(closed or 0),
        )
    if previous is None:
        before = previous_quarter(quarter)
        previous = {
            department_id: (summary.satisfaction_rate, summary.satisfaction_index)
            for department_id, quarters in trend(session, [before], departments, weights).items()
            for summary in quarters.values()
        }
    for department_id, counts in grades.items():
        figure(department_id).apply_grades(GradeSummary(dict(counts), weights))
    for department_id, f in figures.items():
        f.aapor = AaporRates.from_dispositions(dispositions.get(department_id, {}))
        f.apply_previous(*previous.get(department_id, (None, None)))
    if figures:
        for department in session.scalars(select(Department).where(Department.id.in_(list(figures)))):
            figures[department.id].department_code = department.code
            figures[department.id].department_name = department.name
    result = sorted(figures.values(), key=lambda f: f.department_code)
    rank_departments(result, min_ratings_to_rank)
    return result
