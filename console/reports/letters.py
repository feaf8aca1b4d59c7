"""Per-department notification letters: its figures, its cases, its change since the last quarter."""

from __future__ import annotations

import re
from pathlib import Path

from console.reports.data import ReportData
from console.reports.html import environment
from models.metrics import DepartmentFigures


def render_letter(data: ReportData, figures: DepartmentFigures, min_ratings: int) -> str:
    """Return one department's notification letter as an HTML document."""
    return environment().get_template("letter.html").render(
        data=data, f=figures, cases=data.cases_of(figures.department_id), min_ratings=min_ratings
    )


def letter_filename(data: ReportData, figures: DepartmentFigures) -> str:
    """Return a safe file name for a department's letter."""
    code = re.sub(r"[^A-Za-z0-9_.-]+", "_", figures.department_code).strip("._") or str(figures.department_id)
    return f"{data.quarter}-{code}.html"


def write_letters(data: ReportData, out_dir: Path, min_ratings: int) -> list[Path]:
    """Write a letter per department of the report into out_dir; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for figures in data.figures:
        path = out_dir / letter_filename(data, figures)
        path.write_text(render_letter(data, figures, min_ratings), encoding="utf-8")
        written.append(path)
    return written
