"""A staff member's test call or text of a campaign, placed through the real gateway.

The test item and survey are marked (source `console-test`, survey kind `test`), so they never count
in the figures and never open a case; the attempt row is committed before the gateway is called,
as the dispatcher does.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.sms_outbound import compose_sms
from models.campaigns import Campaign
from models.departments import Department
from models.items import ServiceItem
from models.phones import normalize_phone
from models.settings import Settings
from models.surveys import Attempt, AttemptStatus, Survey, SurveyKind, SurveyState
from models.translatable import TranslatableError
from scheduler.gateway import CallRequest, Gateway, GatewayError, SmsRequest
from scheduler.policy import quarter_of

TEST_SOURCE = "console-test"
TEST_MATTER = {"zh-CN": "测试事项", "en-US": "a test service item"}


class TestContactError(TranslatableError):
    """The test contact cannot be made (a bad number, an unknown channel, a gateway refusal)."""


def send_test_contact(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    phone_raw: str,
    channel: str,
    gateway: Gateway,
    now: datetime,
) -> Attempt:
    """Call or text a staff number with the campaign's script; return the placed attempt."""
    if channel not in ("voice", "sms"):
        raise TestContactError("channel %(channel)r is not voice or sms", channel=channel)
    phone = normalize_phone(
        phone_raw, region=settings.phones.default_region, area_code=settings.phones.default_area_code or None
    )
    if phone.e164 is None:
        raise TestContactError("phone %(phone)r: %(reason)s", phone=phone_raw, reason=phone.reason)
    if channel == "sms" and not phone.is_mobile:
        raise TestContactError(
            "phone %(phone)r is not a mobile number: it cannot receive a text", phone=phone_raw
        )
    config = campaign.config or {}
    codes = list(config.get("departments") or [])
    query = select(Department).order_by(Department.code)
    department = session.scalars(query.where(Department.code.in_(codes)) if codes else query).first()
    if department is None:
        raise TestContactError("no department to name in the test: import service items first")
    language = str(config.get("language") or settings.app.language)
    item = ServiceItem(
        source=TEST_SOURCE,
        external_id=uuid.uuid4().hex,
        department_id=department.id,
        matter=TEST_MATTER.get(language, TEST_MATTER["zh-CN"]),
        phone_raw=phone_raw,
        phone_e164=phone.e164,
        phone_kind=phone.kind.value,
        completed_at=now,
        imported_at=now,
        updated_at=now,
    )
    session.add(item)
    session.flush()
    survey = Survey(
        campaign_id=campaign.id,
        item_id=item.id,
        kind=SurveyKind.TEST,
        token=secrets.token_urlsafe(24),
        department_id=department.id,
        quarter=quarter_of(now, settings.app.tz),
        language=language,
        channel=channel,
        state=SurveyState.IN_PROGRESS,
        created_at=now,
        updated_at=now,
    )
    session.add(survey)
    session.flush()
    sender = settings.twilio.voice_from if channel == "voice" else settings.twilio.sms_from
    attempt = Attempt(
        survey_id=survey.id,
        channel=channel,
        number=1,
        from_number=sender,
        status=AttemptStatus.PENDING,
        created_at=now,
    )
    session.add(attempt)
    session.flush()
    body = compose_sms(session, survey, settings, now) if channel == "sms" else ""
    session.commit()  # the attempt exists before anyone is dialled
    try:
        if channel == "voice":
            result = gateway.place_call(CallRequest(survey.token, attempt.id, phone.e164, sender, language))
        else:
            result = gateway.send_sms(SmsRequest(survey.token, attempt.id, phone.e164, sender, body))
    except GatewayError as exc:
        attempt.status = AttemptStatus.FAILED
        attempt.error_code = exc.code
        session.commit()
        if exc.code:
            raise TestContactError(
                "the gateway refused the test (%(code)s): %(error)s", code=exc.code, error=str(exc)
            ) from exc
        raise TestContactError("the gateway refused the test (no code): %(error)s", error=str(exc)) from exc
    if not attempt.provider_id:
        attempt.provider_id = result.provider_id
    attempt.status = AttemptStatus.QUEUED
    session.commit()
    return attempt
