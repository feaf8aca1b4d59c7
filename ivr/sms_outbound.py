"""The outbound survey text: the SMS conversation's first message, and its segment check.

`compose_sms` opens the survey's SMS conversation (the engine state is stored, so the citizen's reply
continues it) and returns the text to send: the script's invitation naming the item (department,
matter, date) and the reply digits — or, for a survey (not a verification visit), the campaign's own
`sms_text` for the survey's language — ending with the opt-out line. The dispatcher sends it once the
attempt that records it is committed.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime

from sqlalchemy.orm import Session

from ivr import conversation
from ivr.script import ItemContext, Script
from ivr.sms_text import count_segments
from models.base import utcnow
from models.domain import Channel
from models.settings import Settings
from models.surveys import Survey, SurveyKind

log = logging.getLogger(__name__)

# The line every survey text ends with, per language (DESIGN §6: default "回复TD退订").
OPT_OUT_LINES = {"zh-CN": "回复TD退订", "en-US": "Reply TD to opt out."}
# An opt-out line already at the end of a text (the default script's prompts carry one).
_ENDS_WITH_OPT_OUT = re.compile(
    r"(回复\s*(TD|T|退订|STOP)\s*(即可)?退订|reply\s+(TD|STOP)\s+to\s+(opt\s*out|unsubscribe))\W*\Z",
    re.IGNORECASE,
)
_SENTENCE_END = "。！？.!?；;"
DEFAULT_SEGMENT_LIMIT = 2


def compose_sms(session: Session, survey: Survey, settings: Settings, now: datetime | None = None) -> str:
    """Open the survey's SMS conversation and return the outbound text (the caller commits)."""
    result = conversation.begin(session, survey, Channel.SMS.value, settings, now or utcnow())
    ctx = conversation.context_for(session, survey, settings)
    script = conversation.script_for(session, survey)
    language = script.resolve_language(survey.language)
    # The campaign's own text asks for a rating; a verification visit asks whether the case was handled
    # well (1 yes, 2 no), so it always sends the script's own question.
    template = (
        ((survey.campaign.config or {}).get("sms_text") or {}).get(language)
        if survey.kind != SurveyKind.VERIFICATION
        else None
    )
    text = _fill(template, script, ctx) if template else "\n".join(result.say)
    text = with_opt_out_line(text, language)
    limit = int((survey.campaign.config or {}).get("sms_max_segments") or DEFAULT_SEGMENT_LIMIT)
    warning = segment_warning(text, limit)
    if warning:
        log.warning("survey %s: %s", survey.id, warning)
    return text


def with_opt_out_line(text: str, language: str) -> str:
    """Return the text ending with the opt-out line of its language (unless it already has one)."""
    text = text.rstrip()
    if _ENDS_WITH_OPT_OUT.search(text):
        return text
    if language not in OPT_OUT_LINES:
        language = "en-US" if language.lower().startswith("en") else "zh-CN"
    line = OPT_OUT_LINES[language]
    if not text:
        return line
    if language == "zh-CN":
        return text + ("" if text[-1] in _SENTENCE_END else "。") + line
    return text + (" " if text[-1] in _SENTENCE_END else ". ") + line


def segment_warning(text: str, limit: int = DEFAULT_SEGMENT_LIMIT) -> str | None:
    """Return a warning when the text is sent as more than `limit` segments, else None."""
    info = count_segments(text)
    if info.segments <= limit:
        return None
    return (
        f"the survey text is {info.segments} SMS segments ({info.encoding.value}, "
        f"{info.characters} characters), over the limit of {limit}"
    )


def _fill(template: str, script: Script, ctx: ItemContext) -> str:
    # A campaign's own text: the placeholders campaigns.py validated ({org} {department} {matter} {date}).
    return template.format(
        org=ctx.org, department=ctx.department, matter=ctx.matter, date=_date_text(script, ctx)
    )


def _date_text(script: Script, ctx: ItemContext) -> str:
    day: date = ctx.completed_on
    pattern = script.prompts[script.resolve_language(ctx.language)]["date"]
    return pattern.format(year=day.year, month=day.month, day=day.day, month_name=day.strftime("%B"))
