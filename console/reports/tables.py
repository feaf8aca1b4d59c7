"""The report's tables as rows of plain values, shared by the XLSX and CSV exports.

Every text cell goes through `neutralise`, so a department name or a citizen's comment that starts
with = + - @ (or a tab or carriage return) is never read as a spreadsheet formula, and control
characters a worksheet cannot hold (a vertical tab pasted into a feedback) are dropped, from the CSV too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from console.reports.data import ReportData
from console.reports.labels import CASE_STATE_LABELS, CATEGORY_LABELS, GRADE_LABELS
from models.domain import Category, Grade
from models.metrics import DepartmentFigures

# A cell starting with one of these is read as a formula by Excel, LibreOffice or Google Sheets
# (full-width forms too, which some input methods type).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
Cell = str | int | float | None


def neutralise(value: Any) -> Cell:
    """Return a cell value a spreadsheet shows as text: formulas get a leading apostrophe."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, int | float):
        return value
    text = ILLEGAL_CHARACTERS_RE.sub("", str(value))
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@dataclass(frozen=True)
class Table:
    """A titled table: a sheet of the workbook, or a CSV file."""

    name: str
    headers: list[str]
    rows: list[list[Cell]]


def _count(attribute: str, key: str) -> Callable[[DepartmentFigures], int]:
    return lambda f: int(getattr(f, attribute).get(key, 0))


def _aapor_count(klass: str) -> Callable[[DepartmentFigures], int]:
    return lambda f: f.aapor.counts.get(klass, 0)


def _aapor_rate(rate: str) -> Callable[[DepartmentFigures], float | None]:
    return lambda f: getattr(f.aapor, rate)


def _department_table(
    name: str,
    figures: Sequence[DepartmentFigures],
    columns: Sequence[tuple[str, Callable[[DepartmentFigures], Any]]],
) -> Table:
    headers = ["部门编码 code", "部门 department"] + [title for title, _ in columns]
    rows = [
        [neutralise(f.department_code), neutralise(f.department_name)]
        + [neutralise(value(f)) for _, value in columns]
        for f in figures
    ]
    return Table(name, headers, rows)


def figures_table(data: ReportData) -> Table:
    """Return the main table: one row per department with every rate and count."""
    columns: list[tuple[str, Callable[[DepartmentFigures], Any]]] = [
        ("回访 surveys", lambda f: f.surveys),
        ("呼叫/短信 attempts", lambda f: f.attempts),
        ("完成 completes", lambda f: f.completes),
        ("评价 ratings", lambda f: f.rated),
    ]
    columns += [(GRADE_LABELS[g.value], _count("grades", g.value)) for g in Grade]
    columns += [
        ("满意率 satisfaction rate", lambda f: f.satisfaction_rate),
        ("95%下限 Wilson low", lambda f: f.satisfaction_low),
        ("95%上限 Wilson high", lambda f: f.satisfaction_high),
        ("差评率 bad-review rate", lambda f: f.bad_review_rate),
        ("满意度指数 satisfaction index", lambda f: f.satisfaction_index),
        ("上季满意率 previous rate", lambda f: f.previous_satisfaction_rate),
        ("满意率变化 rate change", lambda f: f.satisfaction_rate_change),
        ("上季指数 previous index", lambda f: f.previous_satisfaction_index),
        ("指数变化 index change", lambda f: f.satisfaction_index_change),
        ("排名 rank", lambda f: f.rank),
        ("迟到评价 late answers", lambda f: f.late_answers),
    ]
    return _department_table("Figures", data.figures, columns)


def categories_table(data: ReportData) -> Table:
    """Return bad reviews by complaint category per department."""
    columns: list[tuple[str, Callable[[DepartmentFigures], Any]]] = [
        (CATEGORY_LABELS[c.value], _count("categories", c.value)) for c in Category
    ]
    columns.append(("差评 bad reviews", lambda f: f.bad))
    return _department_table("Categories", data.figures, columns)


def response_rates_table(data: ReportData) -> Table:
    """Return final dispositions by AAPOR class and the response rates."""
    columns: list[tuple[str, Callable[[DepartmentFigures], Any]]] = [
        (klass, _aapor_count(klass)) for klass in ("I", "P", "R", "NC", "O", "UH", "UO", "NE")
    ]
    columns += [
        (rate.upper(), _aapor_rate(rate)) for rate in ("rr1", "rr2", "coop1", "ref1", "con1")
    ]
    return _department_table("Response rates", data.figures, columns)


def case_figures_table(data: ReportData) -> Table:
    """Return the case figures per department."""
    columns: list[tuple[str, Callable[[DepartmentFigures], Any]]] = [
        ("立案 opened", lambda f: f.cases.opened),
        ("已答复 answered", lambda f: f.cases.answered),
        ("按时答复 answered on time", lambda f: f.cases.answered_on_time),
        ("逾期 overdue", lambda f: f.cases.overdue),
        ("回访满意 verified satisfied", lambda f: f.cases.verified_satisfied),
        ("办结 closed", lambda f: f.cases.closed),
    ]
    return _department_table("Case figures", data.figures, columns)


def case_list_table(data: ReportData) -> Table:
    """Return every case of the quarter."""

    def when(value: datetime | None) -> str | None:
        return data.local(value) or None

    headers = [
        "案件 case", "部门编码 code", "部门 department", "评价 grade", "问题类别 categories",
        "意见 comment", "状态 state", "立案 opened", "期限 due", "答复 answered", "整改反馈 feedback",
        "回访结果 verification", "督办 escalation", "督办理由 reason",
    ]
    rows = [
        [
            neutralise(value)
            for value in (
                row.id, row.department_code, row.department_name, GRADE_LABELS.get(row.grade, row.grade),
                ", ".join(CATEGORY_LABELS.get(c, c) for c in row.categories), row.comment,
                CASE_STATE_LABELS.get(row.state, row.state), when(row.opened_at), when(row.due_at),
                when(row.answered_at), row.feedback, row.verification_result, row.escalation,
                row.escalation_reason,
            )
        ]
        for row in data.cases
    ]
    return Table("Cases", headers, rows)


def trend_table(data: ReportData) -> Table:
    """Return the satisfaction rate per department over the report's quarters."""
    names = {f.department_code: f.department_name for f in data.figures}
    headers = ["部门编码 code", "部门 department"] + list(data.trend_quarters)
    rows = [
        [neutralise(code), neutralise(names.get(code, code))] + [neutralise(v) for v in rates]
        for code, rates in sorted(data.trend_rates.items())
    ]
    return Table("Trend", headers, rows)


def all_tables(data: ReportData) -> list[Table]:
    """Return every table of the report, in sheet order."""
    return [
        figures_table(data),
        categories_table(data),
        response_rates_table(data),
        case_figures_table(data),
        case_list_table(data),
        trend_table(data),
    ]
