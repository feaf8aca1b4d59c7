"""Chinese and English interface (Flask-Babel): the user's language, dates in the centre's time zone.

Catalogs live in console/translations: `zh` (Babel resolves zh_CN to zh_Hans_CN, whose gettext
fallback is zh) and `en` (the msgids are English). The compiled .mo files are committed beside the .po
files, so a checkout needs no build step; a test checks that they match.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

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
    "test": _l("test"),
    # Attempt statuses not named above (models.surveys.AttemptStatus).
    "pending": _l("pending"),
    "queued": _l("queued"),
    "ringing": _l("ringing"),
    "completed": _l("completed"),
    "canceled": _l("cancelled"),
    "sent": _l("sent"),
    "delivered": _l("delivered"),
}
# The questions of the survey script (ivr.script.engine) as answers name them.
QUESTION_LABELS = {
    "rating": _l("rating"),
    "categories": _l("reasons"),
    "comment": _l("comment"),
    "verification": _l("verification"),
    "eligible": _l("handled the item"),
}
# What answered a call (Twilio's AnsweredBy); an unknown value is shown as it came.
ANSWERED_BY_LABELS = {
    "human": _l("a person"),
    "machine_start": _l("answering machine (greeting)"),
    "machine_end_beep": _l("answering machine (after the beep)"),
    "machine_end_silence": _l("answering machine (after silence)"),
    "machine_end_other": _l("answering machine"),
    "fax": _l("fax"),
    "unknown": _l("unknown"),
}
# Verification verdicts (Case.verification_result) and the "eligible" answer.
VERDICT_LABELS = {
    "satisfied": _l("satisfied"),
    "dissatisfied": _l("dissatisfied"),
    "unverified": _l("no answer on the verification visit"),
    "no": _l("no"),
    "yes": _l("yes"),
}
AUDIT_ACTION_LABELS = {
    "login": _l("logged in"),
    "login_failed": _l("login failed"),
    "login_refused_locked": _l("login refused (account locked)"),
    "phone_viewed": _l("full number viewed"),
    "optout_added": _l("opt-out added"),
    "optout_removed": _l("opt-out removed"),
    "items_imported": _l("service items imported"),
    "department_created": _l("department added"),
    "department_changed": _l("department changed"),
    "campaign_created": _l("campaign created"),
    "campaign_changed": _l("campaign changed"),
    "campaign_pause": _l("campaign paused"),
    "campaign_resume": _l("campaign resumed"),
    "campaign_archive": _l("campaign archived"),
    "campaign_test_contact": _l("test call or text"),
    "case_answered": _l("case answered"),
    "case_escalated": _l("case escalated"),
    "case_closed": _l("case closed"),
    "quarter_closed": _l("quarter closed"),
    "user_disabled": _l("account disabled"),
}
# What an audit event is about (AuditEvent.target_type).
TARGET_LABELS = {
    "staff_user": _l("account"),
    "service_item": _l("service item"),
    "phone": _l("phone"),
    "optout": _l("opt-out"),
    "import": _l("import"),
    "department": _l("department"),
    "campaign": _l("campaign"),
    "case": _l("case"),
    "quarter": _l("quarter"),
}
OPTOUT_SOURCE_LABELS = {
    "staff": _l("entered by staff"),
    "keypad": _l("keypad in a call"),
    "sms_keyword": _l("SMS reply"),
    "carrier": _l("carrier"),
}
PHONE_KIND_LABELS = {
    "mobile": _l("mobile"),
    "fixed": _l("landline"),
    "invalid": _l("invalid"),
}
# Who acted on a case when it was not a staff member (models.cases_ops), or the command line.
ACTOR_LABELS = {
    "system": _l("system"),
    "verification-visit": _l("verification visit"),
    "escalation-job": _l("overdue check"),
    "cli": _l("command line"),
}


def _labelled(labels: dict[str, Any]) -> Callable[[str | None], Any]:
    """Return a filter that shows a code's label, or the code itself when it has none."""
    return lambda value: labels.get(value or "", value or "")


def answered_by_label(value: str | None) -> Any:
    """Name what answered a call; any other machine_* value is an answering machine."""
    if value and value not in ANSWERED_BY_LABELS and value.startswith("machine"):
        return ANSWERED_BY_LABELS["machine_end_other"]
    return ANSWERED_BY_LABELS.get(value or "", value or "")


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
        state=_labelled(STATE_LABELS),
        question=_labelled(QUESTION_LABELS),
        answered_by=answered_by_label,
        verdict=_labelled(VERDICT_LABELS),
        audit_action=_labelled(AUDIT_ACTION_LABELS),
        target=_labelled(TARGET_LABELS),
        optout_source=_labelled(OPTOUT_SOURCE_LABELS),
        phone_kind=_labelled(PHONE_KIND_LABELS),
        actor=_labelled(ACTOR_LABELS),
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
