"""Names shown in reports: grades, categories, case states (Chinese first, English after)."""

from __future__ import annotations

from models.domain import CATEGORY_WORDS_ZH, GRADE_WORDS_ZH, Category, Grade

GRADE_LABELS = {grade.value: f"{GRADE_WORDS_ZH[grade]} {grade.value.replace('_', ' ')}" for grade in Grade}
CATEGORY_LABELS = {category.value: f"{CATEGORY_WORDS_ZH[category]} {category.value}" for category in Category}
CASE_STATE_LABELS = {
    "open": "待答复 open",
    "answered": "已答复待回访 answered",
    "reopened": "重新整改 reopened",
    "escalated": "已督办 escalated",
    "closed": "已办结 closed",
}
ESCALATION_LABELS = {"interview": "约谈 interview", "discipline": "移交纪检 discipline"}


def percent(value: float | None, digits: int = 1) -> str:
    """Format a proportion as a percentage ('' when there is none)."""
    return "" if value is None else f"{value * 100:.{digits}f}%"


def points(value: float | None, digits: int = 1) -> str:
    """Format a change of a proportion in percentage points, with its sign."""
    return "" if value is None else f"{value * 100:+.{digits}f} pp"


def number(value: float | None, digits: int = 1) -> str:
    """Format an index value ('' when there is none)."""
    return "" if value is None else f"{value:.{digits}f}"
