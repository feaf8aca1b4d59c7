"""Rectification cases: the queue per department, a case with its history, answer, verify, escalate.

Officers answer their own department's cases; supervisors and admins also close (after verification)
and escalate. Every transition goes through models.cases_ops, which writes the CaseEvent.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import Select, select

from console.web.access import STAFF, current_user, department_scope, require_department, roles_required
from console.web.audit import record
from console.web.exports import csv_response
from console.web.i18n import STATE_LABELS, format_dt, translated
from console.web.paging import Page
from ivr import web
from models.base import utcnow
from models.cases import Case, CaseState, Escalation
from models.cases_ops import CaseError, answer_case, close_case, events_of, mark_escalation
from models.departments import Department
from models.surveys import Answer, Survey, SurveyState

bp = Blueprint("cases", __name__, url_prefix="/cases")
NOT_CLOSED = "not_closed"
STATE_FILTERS = (NOT_CLOSED, *[s.value for s in CaseState], "all")
ANSWERABLE = (CaseState.OPEN, CaseState.REOPENED, CaseState.ESCALATED)


def _query(scope: list[int] | None, department: str, state: str) -> Select:  # type: ignore[type-arg]
    stmt = (
        select(Case, Department)
        .join(Department, Department.id == Case.department_id)
        .order_by(Case.due_at, Case.id)
    )
    if scope is not None:
        stmt = stmt.where(Case.department_id.in_(scope))
    if department:
        stmt = stmt.where(Department.code == department)
    if state == NOT_CLOSED:
        stmt = stmt.where(Case.state != CaseState.CLOSED)
    elif state in {s.value for s in CaseState}:
        stmt = stmt.where(Case.state == state)
    return stmt


def _filters() -> tuple[str, str]:
    state = request.args.get("state", NOT_CLOSED)
    return request.args.get("department", "").strip(), state if state in STATE_FILTERS else NOT_CLOSED


@bp.get("")
def index() -> str:
    """Show the case queue, soonest due first."""
    scope = department_scope()
    department, state = _filters()
    session = web.db_session()
    page = Page.of(session, _query(scope, department, state), request.args.get("page"), scalars=False)
    departments = select(Department).order_by(Department.code)
    if scope is not None:
        departments = departments.where(Department.id.in_(scope))
    return render_template(
        "cases.html", page=page, department=department, state=state, states=STATE_FILTERS,
        departments=list(session.scalars(departments)), now=utcnow(),
    )


@bp.get("/export.csv")
def export() -> ResponseReturnValue:
    """Download the filtered case queue as CSV."""
    department, state = _filters()
    rows = web.db_session().execute(_query(department_scope(), department, state))
    header = ["case", "department_code", "department", "quarter", "grade", "categories", "state",
              "opened_at", "due_at", "answered_at", "feedback", "verification", "escalation", "comment"]
    body = [
        [case.id, dept.code, dept.name, case.quarter, case.grade, ",".join(case.categories), case.state,
         format_dt(case.opened_at, "yyyy-MM-dd HH:mm"), format_dt(case.due_at, "yyyy-MM-dd HH:mm"),
         format_dt(case.answered_at, "yyyy-MM-dd HH:mm"), case.feedback, case.verification_result,
         case.escalation, case.comment]
        for case, dept in rows
    ]
    return csv_response("cases.csv", header, body)


def _case(case_id: int) -> Case:
    case = web.db_session().get(Case, case_id)
    if case is None:
        abort(404)
    require_department(case.department_id)
    return case


@bp.get("/<int:case_id>")
def detail(case_id: int) -> str:
    """Show a case: the review, the history of every transition, and the actions allowed."""
    session = web.db_session()
    case = _case(case_id)
    survey = session.get(Survey, case.survey_id)
    answers = list(
        session.scalars(select(Answer).where(Answer.survey_id == case.survey_id).order_by(Answer.id))
    )
    visit = session.get(Survey, case.verification_survey_id) if case.verification_survey_id else None
    return render_template(
        "case.html", case=case, survey=survey, answers=answers, events=events_of(session, case),
        visit_pending=visit is not None and visit.state != SurveyState.DONE,  # closing waits for it
        department=session.get(Department, case.department_id), escalations=list(Escalation),
        answerable=case.state in ANSWERABLE, now=utcnow(),
    )


def _act(case: Case, action: str, operation, **detail: str) -> ResponseReturnValue:  # type: ignore[no-untyped-def]
    session = web.db_session()
    try:
        operation()
    except CaseError as exc:
        session.rollback()
        flash(translated(exc), "error")
        return redirect(url_for("cases.detail", case_id=case.id))
    record(session, current_user().username, action, "case", case.id, state=case.state, **detail)
    session.commit()
    flash(_("Case %(id)s is now %(state)s.", id=case.id, state=str(STATE_LABELS.get(case.state, case.state))),
          "ok")
    return redirect(url_for("cases.detail", case_id=case.id))


@bp.post("/<int:case_id>/answer")
def answer(case_id: int) -> ResponseReturnValue:
    """Record the department's rectification feedback; the verification visit is scheduled."""
    case = _case(case_id)
    feedback = request.form.get("feedback", "")
    user = current_user()
    return _act(
        case, "case_answered",
        lambda: answer_case(web.db_session(), case, feedback, user.username, web.settings(), utcnow()),
    )


@bp.post("/<int:case_id>/escalate")
@roles_required(*STAFF)
def escalate(case_id: int) -> ResponseReturnValue:
    """Mark a case for an interview or for the discipline inspection body, with a reason."""
    case = _case(case_id)
    kind = request.form.get("escalation", "")
    reason = request.form.get("reason", "")
    if kind not in {e.value for e in Escalation}:
        flash(_("Choose interview or discipline inspection."), "error")
        return redirect(url_for("cases.detail", case_id=case.id))
    user = current_user()
    return _act(
        case, "case_escalated",
        lambda: mark_escalation(web.db_session(), case, kind, reason, user.username, utcnow()),
        escalation=kind,
    )


@bp.post("/<int:case_id>/close")
@roles_required(*STAFF)
def close(case_id: int) -> ResponseReturnValue:
    """Close a case after verification (an escalated one, or one whose visit could not be made)."""
    case = _case(case_id)
    note = request.form.get("note", "")
    user = current_user()
    return _act(
        case, "case_closed", lambda: close_case(web.db_session(), case, note, user.username, utcnow())
    )
