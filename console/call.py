"""`returnvisit call`: play a survey call in the terminal through the real webhook app."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivr.app import create_app
from ivr.simulator import FlaskTransport, Persona, PhoneNetwork
from ivr.simulator.network import CallRecord
from ivr.urls import voice_status_url, voice_url
from models.campaigns import Campaign, CampaignStatus
from models.items import ServiceItem
from models.settings import Settings
from models.surveys import Attempt, AttemptStatus, Survey, SurveyKind, SurveyState
from scheduler.picking import TRY_OUT_CAMPAIGN  # the contact cap leaves its surveys out
from scheduler.policy import quarter_of


class CallError(ValueError):
    """The call cannot be played (unknown survey or item, finished survey, no usable number)."""


def _try_out_campaign(session: Session) -> Campaign:
    campaign = session.scalars(select(Campaign).where(Campaign.name == TRY_OUT_CAMPAIGN)).first()
    if campaign is None:
        # A draft campaign: the scheduler never picks or dispatches for it.
        campaign = Campaign(
            name=TRY_OUT_CAMPAIGN,
            status=CampaignStatus.DRAFT,
            seed=TRY_OUT_CAMPAIGN,
            config={"script": "default", "channels": ["voice"]},
        )
        session.add(campaign)
        session.flush()
    return campaign


def prepare_call(
    session: Session,
    settings: Settings,
    *,
    survey_id: int | None = None,
    item_id: int | None = None,
    language: str | None = None,
    now: datetime,
) -> tuple[Survey, Attempt]:
    """Return a survey ready to be called and a new attempt for the call (not committed)."""
    if survey_id is not None:
        survey = session.get(Survey, survey_id)
        if survey is None:
            raise CallError(f"no survey with id {survey_id}")
        if survey.state == SurveyState.DONE:
            raise CallError(f"survey {survey_id} is finished ({survey.disposition})")
    else:
        item = session.get(ServiceItem, item_id)
        if item is None:
            raise CallError(f"no service item with id {item_id}")
        campaign = _try_out_campaign(session)
        survey = Survey(
            campaign_id=campaign.id,
            item_id=item.id,
            kind=SurveyKind.SURVEY,
            token=secrets.token_urlsafe(24),
            department_id=item.department_id,
            quarter=quarter_of(item.completed_at, settings.app.tz),
            language=language or settings.app.language,
            channel="voice",
            state=SurveyState.IN_PROGRESS,
            created_at=now,
            updated_at=now,
        )
        session.add(survey)
        session.flush()
    if not survey.item.phone_e164:
        raise CallError(f"survey {survey.id} has no usable phone number")
    number = session.scalar(
        select(func.count())
        .select_from(Attempt)
        .where(Attempt.survey_id == survey.id, Attempt.channel == "voice")
    )
    attempt = Attempt(
        survey_id=survey.id,
        channel="voice",
        number=(number or 0) + 1,
        from_number=settings.twilio.voice_from,
        status=AttemptStatus.QUEUED,
        created_at=now,
    )
    session.add(attempt)
    session.flush()
    return survey, attempt


def play_call(
    settings: Settings,
    survey: Survey,
    attempt: Attempt,
    persona: Persona,
    *,
    app_factory: Callable[[Settings], object] = create_app,
) -> CallRecord:
    """Play the call through the webhook app in this process, signed as Twilio signs."""
    app = app_factory(settings)
    network = PhoneNetwork(FlaskTransport(app), settings.twilio.auth_token)  # type: ignore[arg-type]
    base = settings.app.public_base_url
    return network.run_call(
        survey.item.phone_e164 or "",
        attempt.from_number or settings.twilio.voice_from,
        voice_url(base, survey.token, attempt.id, survey.language),
        persona=persona,
        status_callback=voice_status_url(base, survey.token, attempt.id),
        machine_detection=True,
    )
