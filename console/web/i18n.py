"""Chinese and English interface (Flask-Babel): the user's language, dates in the centre's time zone.

Catalogs live in console/translations: `zh` (Babel resolves zh_CN to zh_Hans_CN, whose gettext
fallback is zh) and `en` (the msgids are English). The compiled .mo files are committed beside the .po
files, so a checkout needs no build step; a test checks that they match.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask import Flask, current_app, request, session
from flask_babel import Babel, format_datetime, format_decimal, format_percent, get_locale
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from models.domain import Category, Grade
from models.phones import mask_phone
from models.settings import Settings

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
LOCALES = ("zh_CN", "en")

GRADE_LABELS = {
    Grade.VERY_SATISFIED: _l("very satisfied"),
    Grade.SATISFIED: _l("satisfied"),
    Grade.BASICALLY_SATISFIED: _l("basically satisfied"),
    Grade.DISSATISFIED: _l("dissatisfied"),
    Grade.VERY_DISSATISFIED: _l("very dissatisfied"),
}
CATEGORY_LABELS = {
    Category.STUCK: _l("stuck (obstruction)"),
    Category.SHIRK: _l("shirk (pushed elsewhere)"),
    Category.DELAY: _l("delay"),
    Category.CHAOTIC: _l("chaotic (improper procedure)"),
    Category.COLD: _l("cold (poor attitude)"),
    Category.POOR: _l("poor (competence)"),
}
STATE_LABELS = {
    "open": _l("open"),
    "answered": _l("answered"),
    "reopened": _l("reopened"),
    "escalated": _l("escalated"),
    "closed": _l("closed"),
    "draft": _l("draft"),
    "active": _l("active"),
    "paused": _l("paused"),
    "archived": _l("archived"),
    "scheduled": _l("scheduled"),
    "dialling": _l("dialling"),
    "in_progress": _l("in progress"),
    "done": _l("done"),
    "complete": _l("complete"),
    "partial": _l("partial"),
    "break_off": _l("break-off"),
    "refused": _l("refused"),
    "not_eligible": _l("not eligible"),
    "machine": _l("answering machine"),
    "no_answer": _l("no answer"),
    "busy": _l("busy"),
    "failed": _l("failed"),
    "not_contacted": _l("not contacted"),
    "undelivered": _l("undelivered"),
    "voice": _l("voice"),
    "sms": _l("SMS"),
    "all": _l("all channels"),
    "approval": _l("approval"),
    "service": _l("public service"),
    "enforcement": _l("enforcement"),
    "survey": _l("survey"),
    "verification": _l("verification visit"),
    "admin": _l("admin"),
    "supervisor": _l("supervisor"),
    "officer": _l("department officer"),
    "interview": _l("interview"),
    "discipline": _l("discipline inspection"),
}


def init_app(app: Flask, settings: Settings) -> None:
    """Bind Flask-Babel and the template filters that format for the user's locale."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    app.config["BABEL_DEFAULT_LOCALE"] = "en" if settings.app.language.startswith("en") else "zh_CN"
    app.config["BABEL_DEFAULT_TIMEZONE"] = settings.app.timezone
    Babel(app, locale_selector=select_locale)
    app.jinja_env.filters.update(
        dt=format_dt,
        num=format_number,
        pct=format_pct,
        grade=lambda value: GRADE_LABELS.get(value, value or ""),
        category=lambda value: CATEGORY_LABELS.get(value, value or ""),
        state=lambda value: STATE_LABELS.get(value, value or ""),
        masked=mask_phone,
    )
    app.jinja_env.globals.update(
        locale_code=lambda: str(get_locale() or "zh_CN"),
        GRADE_LABELS=GRADE_LABELS,
        CATEGORY_LABELS=CATEGORY_LABELS,
    )


def select_locale() -> str:
    """Return the language chosen in this browser, else the best of Accept-Language, else default."""
    chosen = session.get("lang")
    if chosen in LOCALES:
        return str(chosen)
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"])
    if best:
        return "en" if best == "en" else "zh_CN"
    return str(current_app.config["BABEL_DEFAULT_LOCALE"])


def format_dt(value: datetime | None, fmt: str = "short") -> str:
    """Format an instant in the centre's time zone and the user's locale ('' for None)."""
    return "" if value is None else str(format_datetime(value, fmt))


def format_number(value: float | int | None, digits: int = 0) -> str:
    """Format a number for the user's locale ('–' for None)."""
    if value is None:
        return "–"
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return str(format_decimal(value, format=pattern))


def format_pct(value: float | None, digits: int = 1) -> str | Markup:
    """Format a proportion as a percentage for the user's locale ('–' for None)."""
    if value is None:
        return "–"
    return str(format_percent(value, format="#,##0." + "0" * digits + "%"))
