"""Survey results: filters by department, quarter, grade and category; a recorded comment plays in
the page; the same rows as a CSV export. An officer sees their own department only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, and_, literal, select
from sqlalchemy.orm import aliased

from console.web.access import department_scope, require_department
from console.web.exports import csv_response
from console.web.i18n import format_dt
from console.web.paging import Page
from ivr import web
from models.cases import Case
from models.departments import Department
from models.domain import Category, Grade
from models.items import ServiceItem
from models.messages import Message
from models.phones import mask_phone
from models.surveys import Answer, Attempt, Survey, SurveyKind

bp = Blueprint("results", __name__, url_prefix="/results")
EXPORT_LIMIT = 200_000

Rating = aliased(Answer, name="rating")
Categories = aliased(Answer, name="categories")
Comment = aliased(Answer, name="comment")


@dataclass
class Filters:
    """The filters of the results page and export (unknown values are dropped)."""

    department: str = ""
    quarter: str = ""
    grade: str = ""
    category: str = ""

    @classmethod
    def from_args(cls, args: Any) -> Filters:
        grade = args.get("grade", "")
        category = args.get("category", "")
        return cls(
            department=args.get("department", "").strip(),
            # Compared whole: "2026Q4' OR 'x'='x" must match nothing, not quarter 2026Q4.
            quarter=args.get("quarter", "").strip().upper(),
            grade=grade if grade in {g.value for g in Grade} else "",
            category=category if category in {c.value for c in Category} else "",
        )


def results_query(filters: Filters, scope: list[int] | None) -> Select[Any]:
    """Return the surveys with their item, department, rating, categories and comment."""
    stmt = (
        select(Survey, ServiceItem, Department, Rating, Categories, Comment)
        .join(ServiceItem, ServiceItem.id == Survey.item_id)
        .join(Department, Department.id == Survey.department_id)
        .outerjoin(Rating, and_(Rating.survey_id == Survey.id, Rating.question == "rating"))
        .outerjoin(Categories, and_(Categories.survey_id == Survey.id, Categories.question == "categories"))
        .outerjoin(Comment, and_(Comment.survey_id == Survey.id, Comment.question == "comment"))
        .where(Survey.kind == SurveyKind.SURVEY)
        .order_by(Survey.id.desc())
    )
    if scope is not None:
        stmt = stmt.where(Survey.department_id.in_(scope))
    if filters.department:
        stmt = stmt.where(Department.code == filters.department)
    if filters.quarter:
        stmt = stmt.where(Survey.quarter == filters.quarter)
    if filters.grade:
        stmt = stmt.where(Rating.value == filters.grade)
    if filters.category:
        padded = literal(",") + Categories.value + literal(",")
        stmt = stmt.where(padded.like(f"%,{filters.category},%"))
    return stmt


def _departments(scope: list[int] | None) -> list[Department]:
    stmt = select(Department).order_by(Department.code)
    if scope is not None:
        stmt = stmt.where(Department.id.in_(scope))
    return list(web.db_session().scalars(stmt))


@bp.get("")
def index() -> str:
    """List results with the filters applied."""
    scope = department_scope()
    filters = Filters.from_args(request.args)
    page = Page.of(web.db_session(), results_query(filters, scope), request.args.get("page"), scalars=False)
    quarters = web.db_session().scalars(select(Survey.quarter).distinct().order_by(Survey.quarter.desc()))
    return render_template(
        "results.html", page=page, filters=filters, departments=_departments(scope),
        quarters=list(quarters), grades=list(Grade), categories=list(Category),
    )


@bp.get("/export.csv")
def export() -> ResponseReturnValue:
    """Download the filtered results as CSV (numbers masked, formulas neutralised)."""
    scope = department_scope()
    filters = Filters.from_args(request.args)
    rows = web.db_session().execute(results_query(filters, scope).limit(EXPORT_LIMIT))
    header = [
        "survey", "quarter", "department_code", "department", "item_id", "matter", "phone", "channel",
        "state", "disposition", "grade", "categories", "comment", "recording_url", "finished_at",
    ]
    body = [
        [
            survey.id, survey.quarter, department.code, department.name, item.external_id, item.matter,
            mask_phone(item.phone_e164 or item.phone_raw), survey.channel, survey.state, survey.disposition,
            rating.value if rating else "", categories.value if categories else "",
            "" if comment is None or comment.recording_url else comment.value,
            comment.recording_url if comment is not None else "",
            format_dt(survey.finished_at, "yyyy-MM-dd HH:mm") if survey.finished_at else "",
        ]
        for survey, item, department, rating, categories, comment in rows
    ]
    return csv_response("results.csv", header, body)


@bp.get("/<int:survey_id>")
def detail(survey_id: int) -> str:
    """Show one survey: its answers (a recorded comment plays), attempts, texts and case."""
    session = web.db_session()
    survey = session.get(Survey, survey_id)
    if survey is None:
        abort(404)
    require_department(survey.department_id)
    answers = list(session.scalars(select(Answer).where(Answer.survey_id == survey.id).order_by(Answer.id)))
    attempts = list(
        session.scalars(select(Attempt).where(Attempt.survey_id == survey.id).order_by(Attempt.id))
    )
    messages = list(
        session.scalars(select(Message).where(Message.survey_id == survey.id).order_by(Message.id))
    )
    case = session.scalars(select(Case).where(Case.survey_id == survey.id)).first()
    return render_template(
        "result.html", survey=survey, answers=answers, attempts=attempts, messages=messages, case=case
    )
