"""The quarter: its figures and charts (published when closed, live until then), close, downloads."""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from console.reports.data import YEARS, checked_quarter, figures_with_late
from console.web.access import STAFF, current_user, department_scope, require_department, roles_required
from console.web.audit import record
from console.web.charts import bar_chart
from console.web.exports import csv_response
from console.web.i18n import CATEGORY_LABELS, format_number, format_pct, translated
from ivr import web
from models.base import utcnow
from models.departments import Department
from models.domain import Category
from models.metrics import DepartmentFigures
from models.quarter_ops import QuarterError, close_quarter
from models.quarters import QuarterClose
from scheduler.policy import previous_quarter, quarter_bounds, quarter_of

bp = Blueprint("quarter", __name__, url_prefix="/quarter")
REPORT_FORMATS = ("html", "xlsx", "csv")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The report is a standalone document with its own inline styles and SVG charts, and no script.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


def _quarter(text: str | None) -> str:
    if not text:
        return quarter_of(utcnow(), web.settings().app.tz)
    try:
        return checked_quarter(text)
    except ValueError:
        reason = _("There is no quarter %(q)s: write it as 2026Q3, with a year from %(first)s to %(last)s.",
                   q=text[:20], first=YEARS[0], last=YEARS[-1])
        abort(Response(render_template("error.html", code=404, reason=reason), 404))


def _figures(quarter: str) -> tuple[list[DepartmentFigures], QuarterClose | None]:
    """Return the quarter's figures of the departments the user may see, ranked among all departments."""
    figures, closing = figures_with_late(web.db_session(), quarter, web.settings(), utcnow())
    scope = department_scope()
    if scope is not None:
        figures = [f for f in figures if f.department_id in scope]
    return figures, closing


@bp.get("")
def index() -> str:
    """Show a quarter's figures per department with charts."""
    quarter = _quarter(request.args.get("q"))
    figures, closing = _figures(quarter)
    categories = {c: sum(f.categories.get(c.value, 0) for f in figures) for c in Category}
    charts = {
        "index": bar_chart(
            [(f.department_name, f.satisfaction_index) for f in figures],
            title=_("Satisfaction index by department"),
            max_value=100.0,
            value_text=lambda v: format_number(v, 1),
        ),
        "rate": bar_chart(
            [(f.department_name, f.satisfaction_rate) for f in figures],
            title=_("Satisfaction rate by department"),
            max_value=1.0,
            value_text=format_pct,
        ),
        "categories": bar_chart(
            [(str(CATEGORY_LABELS[c]), n) for c, n in categories.items()],
            title=_("Bad reviews by category"),
            css_class="categories",
        ),
    }
    return render_template(
        "quarter.html", quarter=quarter, previous=previous_quarter(quarter), figures=figures,
        closing=closing, charts=charts, report_formats=REPORT_FORMATS,
        can_close=current_user().role in STAFF and closing is None
        and quarter_bounds(quarter, web.settings().app.tz)[1] <= utcnow(),  # only an ended quarter closes
    )


@bp.post("/close")
@roles_required(*STAFF)
def close() -> ResponseReturnValue:
    """Freeze the quarter's figures (refused while it runs, and a second time)."""
    session, settings, now = web.db_session(), web.settings(), utcnow()
    quarter = _quarter(request.form.get("q"))
    try:
        close_quarter(session, quarter, current_user().username, settings, now)
    except QuarterError as exc:
        session.rollback()
        flash(translated(exc), "error")
        return redirect(url_for("quarter.index", q=quarter))
    record(session, current_user().username, "quarter_closed", "quarter", quarter)
    session.commit()
    flash(_("Quarter %(q)s is closed; its figures are published.", q=quarter), "ok")
    return redirect(url_for("quarter.index", q=quarter))


def figure_rows(figures: list[DepartmentFigures]) -> list[list[Any]]:
    """Return one CSV row per department."""
    return [
        [f.quarter, f.department_code, f.department_name, f.surveys, f.attempts, f.completes, f.rated,
         *(f.grades.get(g, 0) for g in f.grades), f.satisfaction_rate, f.satisfaction_low,
         f.satisfaction_high, f.bad_review_rate, f.satisfaction_index, f.satisfaction_rate_change,
         f.rank, *(f.categories.get(c.value, 0) for c in Category), f.cases.opened,
         f.cases.answered_on_time, f.cases.overdue, f.cases.verified_satisfied, f.aapor.rr1,
         f.aapor.rr2, f.aapor.coop1, f.aapor.ref1, f.aapor.con1, f.late_answers]
        for f in figures
    ]


@bp.get("/<q>/figures.csv")
def figures_csv(q: str) -> ResponseReturnValue:
    """Download the quarter's figures of the departments the user may see."""
    quarter = _quarter(q)
    figures, _closing = _figures(quarter)
    grade_keys = list(figures[0].grades) if figures else []
    header = ["quarter", "department_code", "department", "surveys", "attempts", "completes", "rated",
              *grade_keys, "satisfaction_rate", "satisfaction_low", "satisfaction_high", "bad_review_rate",
              "satisfaction_index", "satisfaction_rate_change", "rank", *(c.value for c in Category),
              "cases_opened", "cases_answered_on_time", "cases_overdue", "cases_verified_satisfied",
              "rr1", "rr2", "coop1", "ref1", "con1", "late_answers"]
    return csv_response(f"figures-{quarter}.csv", header, figure_rows(figures))


def _report_data(quarter: str):  # type: ignore[no-untyped-def]
    """Build the report of the departments the user may see (an officer: their own only)."""
    from console.reports import build_report

    session = web.db_session()
    scope = department_scope()
    code = request.args.get("department", "").strip() or None
    if scope is not None:
        own = session.get(Department, scope[0]) if scope else None
        if own is None:
            abort(404)
        if code not in (None, own.code):
            abort(404)
        code = own.code
    elif code is not None and session.scalar(select(Department.id).where(Department.code == code)) is None:
        abort(404)
    return build_report(session, quarter, web.settings(), utcnow(), code)


@bp.get("/<q>/report.<fmt>")
def report(q: str, fmt: str) -> ResponseReturnValue:
    """Download the quarter report (HTML with charts, XLSX, CSV) rendered by console.reports."""
    if fmt not in REPORT_FORMATS:
        abort(404)
    quarter = _quarter(q)
    data = _report_data(quarter)
    min_ratings = web.settings().cases.min_ratings_to_rank
    if fmt == "html":
        from console.reports.html import render_html

        response = Response(render_html(data, min_ratings), mimetype="text/html")
        response.headers["Content-Security-Policy"] = REPORT_POLICY
    elif fmt == "xlsx":
        from console.reports.xlsx import write_xlsx

        buffer = io.BytesIO()
        write_xlsx(data, buffer)
        response = Response(buffer.getvalue(), mimetype=XLSX)
    else:
        from console.reports.csv import write_csv

        text = io.StringIO()
        write_csv(data, text)
        response = Response("\ufeff" + text.getvalue(), mimetype="text/csv")
    suffix = f"-{data.department_code}" if data.department_code else ""
    response.headers["Content-Disposition"] = f'attachment; filename="report-{quarter}{suffix}.{fmt}"'
    return response


@bp.get("/<q>/letter/<code>.html")
def letter(q: str, code: str) -> ResponseReturnValue:
    """Show a department's notification letter for the quarter (its figures, cases and change)."""
    from console.reports.letters import render_letter

    quarter = _quarter(q)
    session = web.db_session()
    department = session.scalars(select(Department).where(Department.code == code)).first()
    if department is None:
        abort(404)
    require_department(department.id)
    data = _report_data_for(quarter, code)
    figures = next((f for f in data.figures if f.department_code == code), None)
    if figures is None:
        abort(404)
    response = Response(render_letter(data, figures, web.settings().cases.min_ratings_to_rank),
                        mimetype="text/html")
    response.headers["Content-Security-Policy"] = REPORT_POLICY
    return response


def _report_data_for(quarter: str, code: str):  # type: ignore[no-untyped-def]
    from console.reports import build_report

    return build_report(web.db_session(), quarter, web.settings(), utcnow(), code)
