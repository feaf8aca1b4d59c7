"""The campaign form and its previews: form fields to a definition and back, voice and SMS previews.

Validation is the scheduler's (scheduler.campaigns.parse_definition); this module only maps the form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from werkzeug.datastructures import MultiDict

from ivr.script import Flow, ItemContext, Script, default_script, load_script, start
from ivr.sms_outbound import with_opt_out_line
from ivr.sms_text import count_segments
from scheduler.campaigns import LANGUAGES, SAMPLE_MATTER, CampaignDefinition

CHANNEL_ORDERS = ("voice sms", "sms voice", "voice", "sms")
TEXT_FIELDS = ("delay", "max_age", "expire_after", "script")
OPTIONAL_NUMBERS = ("quota", "calls_per_second")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]


def form_to_data(form: MultiDict[str, str]) -> dict[str, Any]:
    """Return the definition a submitted campaign form describes (validated by the caller)."""
    channels = (form.get("channels") or "voice sms").split()
    data: dict[str, Any] = {
        "name": form.get("name", ""),
        "departments": form.getlist("departments"),
        "matters": _lines(form.get("matters", "")),
        "sampling_rate": form.get("sampling_rate", "1.0") or "1.0",
        "channels": channels,
        "windows": _lines(form.get("windows", "")) or ["09:00-12:00", "14:00-20:00"],
        "working_days_only": form.get("working_days_only") == "on",
        "sms_max_segments": form.get("sms_max_segments", "3") or "3",
    }
    if form.get("status"):
        data["status"] = form["status"]
    for key in TEXT_FIELDS:
        if form.get(key, "").strip():
            data[key] = form[key].strip()
    for key in OPTIONAL_NUMBERS:
        if form.get(key, "").strip():
            data[key] = form[key].strip()
    for key in ("timezone", "language"):
        if form.get(key, "").strip():
            data[key] = form[key].strip()
    retry = {
        channel: form.get(f"retry_{channel}", "").strip()
        for channel in ("voice", "sms")
        if channel in channels and f"retry_{channel}" in form
    }
    if retry:
        data["retry"] = retry
    texts = {lang: form.get(f"sms_text_{lang}", "").strip() for lang in LANGUAGES}
    data["sms_text"] = {lang: text for lang, text in texts.items() if text}
    return data


def definition_to_form(definition: CampaignDefinition | None) -> dict[str, Any]:
    """Return the form's field values for a stored definition (defaults for a new campaign)."""
    d = definition or CampaignDefinition(name="new")
    return {
        "name": d.name if definition else "",
        "status": d.status or "",
        "departments": list(d.departments),
        "matters": "\n".join(d.matters),
        "sampling_rate": d.sampling_rate,
        "quota": "" if d.quota is None else d.quota,
        "channels": " ".join(d.channels),
        "delay": d.delay,
        "max_age": d.max_age,
        "expire_after": d.expire_after,
        "retry_voice": d.retry_intervals("voice"),
        "retry_sms": d.retry_intervals("sms"),
        "windows": "\n".join(d.windows),
        "working_days_only": d.working_days_only,
        "timezone": d.timezone or "",
        "calls_per_second": "" if d.calls_per_second is None else d.calls_per_second,
        "script": d.script,
        "language": d.language or "",
        "sms_max_segments": d.sms_max_segments,
        **{f"sms_text_{lang}": d.sms_text.get(lang, "") for lang in LANGUAGES},  # type: ignore[call-overload]
    }


def form_values(form: MultiDict[str, str]) -> dict[str, Any]:
    """Return the submitted values to show again next to the problems found."""
    values: dict[str, Any] = {key: form.get(key, "") for key in form}
    values["departments"] = form.getlist("departments")
    values["working_days_only"] = form.get("working_days_only") == "on"
    return values


def problems_by_field(problems: list[str]) -> dict[str, list[str]]:
    """Group validation problems by their top-level key ('windows[1]: ...' goes to windows)."""
    grouped: dict[str, list[str]] = {}
    for problem in problems:
        key = problem.split(":", 1)[0].split("[", 1)[0]
        if key == "retry" or key.startswith("retry."):
            key = "retry_" + key.split(".", 1)[1] if "." in key else "retry_voice"
        elif key.startswith("sms_text."):
            key = "sms_text_" + key.split(".", 1)[1]
        grouped.setdefault(key, []).append(problem)
    return grouped


@dataclass(frozen=True)
class Preview:
    """What a citizen hears and reads in one language."""

    language: str
    voice: list[str]
    sms: str
    sms_segments: int
    sms_encoding: str
    sms_limit: int  # sms_max_segments: the page warns when the text (the script's own too) is longer


def _script(definition: CampaignDefinition) -> Script:
    return default_script() if definition.script == "default" else load_script(Path(definition.script))


def previews(definition: CampaignDefinition, org: str, department: str, matter: str | None) -> list[Preview]:
    """Return the voice script and the survey text of the campaign in each language."""
    script = _script(definition)
    out = []
    for language in LANGUAGES:
        ctx = ItemContext(org, department, matter or SAMPLE_MATTER, date.today(), language)
        opening = start(script, ctx, Flow.SURVEY, "voice").say
        voice = [*opening] + [script.render(key, ctx) for key in ("categories", "comment", "thanks")]
        resolved = script.resolve_language(language)
        template = definition.sms_text.get(language)  # type: ignore[call-overload]
        if template:
            day = ctx.completed_on
            when = script.prompts[resolved]["date"].format(
                year=day.year, month=day.month, day=day.day, month_name=day.strftime("%B")
            )
            text = template.format(org=org, department=department, matter=ctx.matter, date=when)
        else:
            text = script.render("sms_invite", ctx)
        text = with_opt_out_line(text, resolved)
        info = count_segments(text)
        limit = definition.sms_max_segments
        out.append(Preview(language, voice, text, info.segments, info.encoding.value, limit))
    return out
