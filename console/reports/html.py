"""The report as one HTML page that prints on A4, with its charts inline as SVG."""

from __future__ import annotations

import functools
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from console.reports import charts
from console.reports.data import ReportData
from console.reports.labels import (
    CASE_STATE_LABELS,
    CATEGORY_LABELS,
    GRADE_LABELS,
    number,
    percent,
    points,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"


def trend_class(change: float | None) -> str:
    """Return the CSS class of a change: up, down or nothing."""
    if change is None or change == 0:
        return ""
    return "up" if change > 0 else "down"


@functools.cache
def environment() -> Environment:
    """Return the Jinja2 environment of the report templates (autoescaped)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), auto_reload=False
    )
    env.globals.update(
        percent=percent,
        points=points,
        number=number,
        trend_class=trend_class,
        grade_labels=GRADE_LABELS,
        category_labels=CATEGORY_LABELS,
        state_labels=CASE_STATE_LABELS,
        css=Markup((TEMPLATES / "base.css").read_text(encoding="utf-8")),  # noqa: S704 - our own file
    )
    env.filters["category"] = lambda key: CATEGORY_LABELS.get(key, key)
    return env


def render_html(data: ReportData, min_ratings: int) -> str:
    """Return the quarterly report as an HTML document."""
    names = {f.department_code: f.department_name for f in data.figures}
    return environment().get_template("report.html").render(
        data=data,
        min_ratings=min_ratings,
        late_total=sum(data.late_since_close.values()) or sum(f.late_answers for f in data.figures),
        # pygal escapes every label it draws, so its SVG is safe to embed as it is.
        trend_svg=Markup(charts.trend_chart(data.trend_quarters, data.trend_rates, names)),  # noqa: S704
        ranking_svg=Markup(charts.ranking_chart(data.figures)),  # noqa: S704
        category_svg=Markup(charts.category_chart(data.figures)),  # noqa: S704
    )
