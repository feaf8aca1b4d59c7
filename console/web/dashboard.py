"""The dashboard: today's contacts, the live list, the quarter so far with charts; its JSON API."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from console.web import monitor
from console.web.access import department_scope
from console.web.charts import bar_chart
from console.web.i18n import GRADE_LABELS, STATE_LABELS, format_dt, format_pct
from ivr import web
from models.base import utcnow
from models.domain import Grade
from models.phones import mask_phone
from models.quarter_ops import live_figures
from scheduler.policy import quarter_of

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index() -> str:
    """Show today's counts, the calls and texts in flight, and the quarter so far."""
    session, settings, now = web.db_session(), web.settings(), utcnow()
    scope = department_scope()
    quarter = quarter_of(now, settings.app.tz)
    figures = live_figures(session, quarter, settings, now, scope)
    grades = {grade: sum(f.grades.get(grade.value, 0) for f in figures) for grade in Grade}
    charts = {
        "rate": bar_chart(
            [(f.department_name, f.satisfaction_rate) for f in figures],
            title=_("Satisfaction rate by department"),
            max_value=1.0,
            value_text=format_pct,
        ),
        "grades": bar_chart(
            [(str(GRADE_LABELS[grade]), count) for grade, count in grades.items()],
            title=_("Ratings by grade"),
            css_class="grades",
        ),
    }
    return render_template(
        "dashboard.html",
        today=monitor.today(session, settings, now, scope),
        live=monitor.live(session, scope),
        quarter=quarter,
        figures=figures,
        charts=charts,
    )


@bp.get("/api/dashboard")
def api() -> ResponseReturnValue:
    """Return today's counts and the live list as JSON (scoped like the page)."""
    session, settings, now = web.db_session(), web.settings(), utcnow()
    scope = department_scope()
    counts = monitor.today(session, settings, now, scope)
    rows: list[dict[str, Any]] = [
        {
            "attempt": row.attempt.id,
            "survey": row.survey.id,
            "at": format_dt(row.attempt.created_at),
            "department": row.department.name,
            "matter": row.item.matter,
            "phone": mask_phone(row.item.phone_e164),
            "channel": str(STATE_LABELS.get(row.attempt.channel, row.attempt.channel)),
            "status": str(STATE_LABELS.get(row.attempt.status, row.attempt.status)),
            "disposition": str(STATE_LABELS.get(row.survey.disposition or "", row.survey.disposition or "")),
        }
        for row in monitor.live(session, scope)
    ]
    return jsonify(today=counts.__dict__, live=rows)
