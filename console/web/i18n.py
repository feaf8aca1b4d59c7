"""Chinese and English interface (Flask-Babel): the user's language, dates in the centre's time zone.

Catalogs live in console/translations: `zh` (Babel resolves zh_CN to zh_Hans_CN, whose gettext
fallback is zh) and `en` (the msgids are English). The compiled .mo files are committed beside the .po
files, so a checkout needs no build step; a test checks that they match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, request, session
from flask_babel import Babel, format_datetime, format_decimal, format_percent, get_locale, gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from models.domain import Category, Grade
from models.phones import mask_phone
from models.settings import Settings
from models.translatable import Translatable

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
# Why picking gave an item no survey (models.picks.SkipReason), on the campaigns page.
SKIP_REASON_LABELS = {
    "not_sampled": _l("not sampled"),
    "invalid_phone": _l("no usable phone"),
    "landline_sms_only": _l("landline, texts only"),
    "opted_out": _l("opted out"),
    "contact_cap": _l("contacted recently"),
    "quota_full": _l("quota full"),
    "no_window_before_expiry": _l("no calling window in time"),
}
# Who acted on a case when it was not a staff member (models.cases_ops), or the command line.
ACTOR_LABELS = {
    "system": _l("system"),
    "verification-visit": _l("verification visit"),
    "escalation-job": _l("overdue check"),
    "cli": _l("command line"),
}



def N_(text: str) -> str:
    """Mark a text for extraction only: it is translated where it is shown, by `translated`."""
    return text


# The templates of the model and scheduler layers' messages (models.translatable.Translatable), listed
# so that pybabel extracts them; tests/console/test_console_errors.py checks every one raised is here.
MESSAGE_TEMPLATES = frozenset({
    # models.cases_ops.CaseError
    N_("case %(id)s is %(state)s: it cannot become %(to)s (allowed: %(allowed)s)"),
    N_("case %(id)s is %(state)s: it cannot become %(to)s (allowed: none: it is final)"),
    N_("case %(id)s: the %(field)s contains a NUL character"),
    N_("case %(id)s has no survey"),
    N_("case %(id)s: the feedback must say how the complaint was handled"),
    N_("case %(id)s: an escalation needs a reason"),
    N_("case %(id)s: closing by hand needs a note"),
    N_("case %(id)s waits for its verification visit: it closes when the citizen answers"),
    # models.quarter_ops.QuarterError
    N_("quarter %(quarter)s was already closed on %(when)s by %(by)s: "
       "its published figures cannot change"),
    N_("quarter %(quarter)s has not ended yet (it ends %(end)s %(timezone)s)"),
    N_("quarter %(quarter)s was closed at the same moment by someone else"),
    N_("no department with code %(code)r"),
    # scheduler.campaigns.change_status (CampaignError)
    N_("no campaign named %(name)r"),
    N_("cannot %(operation)s campaign %(name)r: it is %(status)s"),
    # console.test_contact.TestContactError
    N_("channel %(channel)r is not voice or sms"),
    N_("phone %(phone)r: %(reason)s"),
    N_("phone %(phone)r is not a mobile number: it cannot receive a text"),
    N_("no department to name in the test: import service items first"),
    N_("the gateway refused the test (%(code)s): %(error)s"),
    N_("the gateway refused the test (no code): %(error)s"),
    # models.intake.RowError and the importer's rejected rows
    N_("missing %(fields)s"),
    N_("external_id longer than 128 characters"),
    N_("completed_at is empty"),
    N_("completed_at %(value)r is not a date and time"),
    N_("completed_at %(value)s is out of range"),
    N_("completed_at %(date)s is in the future"),
    N_("unknown department %(code)r"),
    N_("external_id %(id)r repeated later in the batch: the later row is kept"),
    # console.import_files (a JSON Lines line) and the intake API (an array element)
    N_("not valid JSON (%(detail)s)"),
    N_("not a JSON object"),
    N_("item is not a JSON object"),
})
# Why a phone number is unusable (models.phones' NormalizedPhone.reason).
PHONE_REASON_LABELS = {
    "no digits": _l("no digits"),
    "extension without a number": _l("extension without a number"),
    "too short": _l("too short"),
    "too long": _l("too long"),
    "wrong length": _l("wrong length"),
    "unknown country code": _l("unknown country code"),
    "short code": _l("short code"),
    "local number without area code": _l("local number without area code"),
    "not a valid number": _l("not a valid number"),
    "not a phone number": _l("not a phone number"),
    "premium/toll-free number 400/800 not allowed": _l("premium/toll-free number 400/800 not allowed"),
    "premium/toll-free/shared-cost number not allowed": _l(
        "premium/toll-free/shared-cost number not allowed"
    ),
}
_MOBILE_LENGTH = re.compile(r"(too short|too long): a mobile number has 11 digits, not (\d+)")
# The texts of a case that a message names (models.cases_ops._refuse_nul).
CASE_TEXT_LABELS = {"feedback": _l("feedback"), "reason": _l("reason"), "note": _l("note")}
CAMPAIGN_OPERATION_LABELS = {"pause": _l("pause"), "resume": _l("resume"), "archive": _l("archive")}
# The values of a Translatable that are codes, by the name the templates give them.
MESSAGE_PARAM_LABELS: dict[str, dict[str, Any]] = {
    "state": STATE_LABELS,
    "to": STATE_LABELS,
    "allowed": STATE_LABELS,
    "status": STATE_LABELS,
    "by": ACTOR_LABELS,
    "field": CASE_TEXT_LABELS,
    "operation": CAMPAIGN_OPERATION_LABELS,
}


def phone_reason_label(reason: str) -> str:
    """Name why a phone number is unusable in the user's language (an unknown reason as it came)."""
    match = _MOBILE_LENGTH.fullmatch(reason)
    if match:
        return gettext("%(size)s: a mobile number has 11 digits, not %(digits)s",
                       size=phone_reason_label(match[1]), digits=match[2])
    return str(PHONE_REASON_LABELS.get(reason, reason))


def _message_value(name: str, value: Any) -> Any:
    if name == "reason" and isinstance(value, str):
        return phone_reason_label(value)
    labels = MESSAGE_PARAM_LABELS.get(name, {})
    if isinstance(value, list | tuple):
        return gettext(", ").join(str(labels.get(item, item)) for item in value)
    return str(labels[value]) if isinstance(value, str) and value in labels else value


def translated(message: str | BaseException) -> str:
    """Return a message of the model layers (or the error carrying one) in the user's language.

    A Translatable whose template is listed in MESSAGE_TEMPLATES is looked up with gettext and filled
    with its values, codes among them named by their labels; any other text is shown as it is.
    """
    if isinstance(message, BaseException):
        message = getattr(message, "message", None) or str(message)
    if not isinstance(message, Translatable) or message.template not in MESSAGE_TEMPLATES:
        return str(message)
    values = {name: _message_value(name, value) for name, value in message.params.items()}
    return str(gettext(message.template, **values))


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
        skip_reason=_labelled(SKIP_REASON_LABELS),
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
