"""A survey text conversation tried out from the browser: the invitation, then the citizen's replies
posted, signed, to the public app's messaging webhook in this process (as `returnvisit call` does)."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.call import TRY_OUT_CAMPAIGN
from ivr.simulator import FlaskTransport, PhoneNetwork
from ivr.sms_outbound import compose_sms
from ivr.urls import sms_inbound_url
from models.campaigns import Campaign, CampaignStatus
from models.items import ServiceItem
from models.messages import Direction, Message
from models.settings import Settings
from models.surveys import Attempt, AttemptStatus, Survey, SurveyKind, SurveyState
from scheduler.policy import quarter_of


class SmsTryError(ValueError):
    """The text cannot be tried out (no mobile number)."""


def _try_out_campaign(session: Session) -> Campaign:
    campaign = session.scalars(select(Campaign).where(Campaign.name == TRY_OUT_CAMPAIGN)).first()
    if campaign is None:
        # A draft campaign, as `returnvisit call` makes: the scheduler never picks or dispatches for it.
        campaign = Campaign(
            name=TRY_OUT_CAMPAIGN, status=CampaignStatus.DRAFT, seed=TRY_OUT_CAMPAIGN,
            config={"script": "default", "channels": ["voice"]},
        )
        session.add(campaign)
        session.flush()
    return campaign


def start_sms(
    session: Session, settings: Settings, item: ServiceItem, language: str, now: datetime
) -> Survey:
    """Create a try-out SMS survey of an item and store its invitation as sent and delivered."""
    if not item.phone_e164 or item.phone_kind != "mobile":
        raise SmsTryError(f"item {item.external_id} has no mobile number")
    campaign = _try_out_campaign(session)
    survey = session.scalars(
        select(Survey).where(
            Survey.campaign_id == campaign.id, Survey.item_id == item.id, Survey.kind == SurveyKind.SURVEY
        )
    ).first()
    if survey is not None and survey.state != SurveyState.DONE:
        raise SmsTryError(f"item {item.external_id} has a try-out survey in progress ({survey.id})")
    if survey is not None:
        raise SmsTryError(f"item {item.external_id} was tried out already (survey {survey.id})")
    survey = Survey(
        campaign_id=campaign.id, item_id=item.id, kind=SurveyKind.SURVEY, token=secrets.token_urlsafe(24),
        department_id=item.department_id, quarter=quarter_of(item.completed_at, settings.app.tz),
        language=language, channel="sms", state=SurveyState.IN_PROGRESS, created_at=now, updated_at=now,
        first_attempt_at=now,
    )
    session.add(survey)
    session.flush()
    text = compose_sms(session, survey, settings, now)
    sid = "SM" + secrets.token_hex(16)
    session.add(
        Attempt(survey_id=survey.id, channel="sms", number=1, provider_id=sid,
                from_number=settings.twilio.sms_from, status=AttemptStatus.DELIVERED, created_at=now,
                started_at=now)
    )
    session.add(
        Message(direction=Direction.OUTBOUND.value, provider_id=sid, survey_id=survey.id,
                from_e164=settings.twilio.sms_from, to_e164=item.phone_e164, body=text,
                status=AttemptStatus.DELIVERED.value, created_at=now)
    )
    session.flush()
    return survey


def send_reply(webhook_app: Flask, settings: Settings, phone: str, body: str) -> tuple[int | None, list[str]]:
    """Post the citizen's reply to the messaging webhook, signed; return the status and our replies."""
    network = PhoneNetwork(FlaskTransport(webhook_app), settings.twilio.auth_token,
                           account_sid=settings.twilio.account_sid)
    return network.deliver_sms(phone, settings.twilio.sms_from, body,
                               sms_inbound_url(settings.app.public_base_url))


def conversation(session: Session, survey: Survey) -> list[Message]:
    """Return every text of the survey, oldest first."""
    return list(session.scalars(select(Message).where(Message.survey_id == survey.id).order_by(Message.id)))
