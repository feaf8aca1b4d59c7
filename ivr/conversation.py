"""One conversation step for any channel: build the item context, run the engine, store what it said.

Voice and SMS views call this; only the rendering (TwiML or a text) differs. The survey is an ORM
`Survey` or, on the hot webhooks, a `SurveyRecord` (models/survey_ops.py) whose owner writes back its
changed columns; answers are written here either way.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from ivr.script import (
    Flow,
    Input,
    ItemContext,
    Script,
    StepResult,
    default_script,
    load_script,
    start,
    step,
)
from models.cases_ops import finish_survey_and_case, open_case_for
from models.domain import BAD_GRADES
from models.optouts import OptOutChannel, OptOutSource
from models.quarter_ops import is_quarter_closed, mark_late_answers
from models.settings import Settings
from models.survey_ops import SurveyRecord, add_opt_out, add_to_answer, record_answer
from models.surveys import Survey, SurveyKind, SurveyState
from scheduler.policy import quarter_of

AnySurvey = Survey | SurveyRecord


@functools.lru_cache(maxsize=32)
def _load_script_file(path: str, mtime: float) -> Script:
    return load_script(Path(path))


def script_for(session: Session, survey: AnySurvey) -> Script:
    """Return the script the survey's campaign uses (the default script unless it names a file)."""
    name = str((survey.campaign.config or {}).get("script", "default") or "default")
    if name == "default":
        return default_script()
    path = Path(name)
    return _load_script_file(str(path), path.stat().st_mtime)


def context_for(session: Session, survey: AnySurvey, settings: Settings) -> ItemContext:
    """Return what the prompts say about the survey's item: department, matter, local date."""
    item = survey.item
    return ItemContext(
        org=settings.app.org,
        department=item.department.name,
        matter=item.matter,
        completed_on=item.completed_at.astimezone(settings.app.tz).date(),
        language=survey.language,
    )


def conversation_state(survey: AnySurvey, channel: str) -> dict[str, Any] | None:
    """Return the engine state of the survey's conversation on this channel, if one started."""
    stored = survey.script_state or {}
    engine = stored.get("engine")
    if engine and stored.get("channel") == channel:
        return dict(engine)
    return None


def begin(session: Session, survey: AnySurvey, channel: str, settings: Settings, now: datetime) -> StepResult:
    """Open the conversation: greeting and first question."""
    flow = Flow.VERIFICATION if survey.kind == SurveyKind.VERIFICATION else Flow.SURVEY
    result = start(script_for(session, survey), context_for(session, survey, settings), flow, channel)
    _store(session, survey, channel, result, settings, now)
    return result


def advance(
    session: Session, survey: AnySurvey, channel: str, user_input: Input, settings: Settings, now: datetime
) -> StepResult:
    """Apply one input to the stored conversation and store what it produced."""
    state = conversation_state(survey, channel)
    if state is None:
        raise ValueError(f"survey {survey.id} has no {channel} conversation")
    result = step(script_for(session, survey), context_for(session, survey, settings), state, user_input)
    _store(session, survey, channel, result, settings, now)
    return result


def _store(
    session: Session, survey: AnySurvey, channel: str, result: StepResult, settings: Settings, now: datetime
) -> None:
    survey.script_state = {**(survey.script_state or {}), "engine": result.state, "channel": channel}
    survey.updated_at = now
    for answer in result.answers:
        if answer.more:
            add_to_answer(session, survey, answer.key, answer.value)
            continue
        record_answer(
            session,
            survey,
            answer.key,
            answer.value,
            channel=channel,
            now=now,
            recording_duration=answer.duration,
        )
    if result.optout:
        phone = survey.item.phone_e164
        if phone:
            source = OptOutSource.KEYPAD if channel == "voice" else OptOutSource.SMS_KEYWORD
            add_opt_out(session, phone, channel=OptOutChannel.ALL, source=source, now=now)
    if result.answers:
        # A bad review opens its rectification case (and later answers fill it in).
        if result.state.get("grade") in BAD_GRADES:
            open_case_for(session, survey, settings, now)
        # An answer for a closed quarter is kept but marked late, so published figures never
        # change; a quarter cannot be closed before it ends, so the current one needs no look-up.
        if survey.quarter != quarter_of(now, settings.app.tz) and is_quarter_closed(session, survey.quarter):
            mark_late_answers(session, survey)
    if result.outcome is not None:
        finish_survey_and_case(session, survey, result.outcome.value, settings, now)
    elif survey.state not in (SurveyState.DONE, SurveyState.IN_PROGRESS):
        # Assigned only when it changes: a SurveyRecord writes every assigned column, and the state
        # is in two of the survey indexes, which each step would otherwise rewrite.
        survey.state = SurveyState.IN_PROGRESS
