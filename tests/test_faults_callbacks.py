"""Twilio callbacks duplicated and out of order store exactly what the in-order run stores.

Each scenario plays one call (or one text conversation) twice on two surveys of the same campaign:
once in Twilio's order, once shuffled and repeated as the network may deliver it. The rows each run
leaves (survey, attempts, answers, messages, case, opt-outs) are compared whole, with only the values
that must differ between two surveys (ids, tokens, call sids, phone numbers, clock times) masked.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from ivr.sms_outbound import compose_sms
from ivr.urls import recording_status_url, sms_status_url, voice_gather_url, voice_status_url, voice_url
from models.cases import Case
from models.messages import Direction, Message
from models.optouts import OptOut
from models.surveys import Answer, Attempt, AttemptStatus, Survey

BASE = "http://127.0.0.1:5000"  # the development public_base_url the twilio_post fixture signs for
OURS = "+12025550100"  # the number create_survey's attempts come from
RECORDING = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE{n}"


def _path(url: str) -> str:
    assert url.startswith(BASE)
    return url[len(BASE) :]


def _masked(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, datetime):
        return "<time>"
    if isinstance(value, dict | list):
        return json.loads(_masked(json.dumps(value, ensure_ascii=False), subs))
    if isinstance(value, str):
        for old, new in subs.items():
            value = value.replace(old, new)
    return value


def _row(obj: Any, subs: dict[str, str], ids: dict[str, int]) -> dict[str, Any]:
    """Every column of a row, masked; foreign keys to the run's own survey and item become names."""
    out: dict[str, Any] = {}
    for column in obj.__table__.columns:
        if column.primary_key:
            continue
        value = getattr(obj, column.key)
        if column.key in ids and value == ids[column.key]:
            value = f"<{column.key}>"
        out[column.key] = _masked(value, subs)
    return out


def snapshot(session, survey: Survey, subs: dict[str, str]) -> dict[str, Any]:
    """Every row one survey's run left behind, masked so two runs compare equal when they agree."""
    session.expire_all()
    survey = session.get(Survey, survey.id)
    ids = {"survey_id": survey.id, "item_id": survey.item_id}
    phone = survey.item.phone_e164

    def rows(stmt) -> list[dict[str, Any]]:
        return [_row(obj, subs, ids) for obj in session.scalars(stmt)]

    return {
        "survey": _row(survey, subs, ids),
        "attempts": rows(select(Attempt).where(Attempt.survey_id == survey.id).order_by(Attempt.number)),
        "answers": rows(select(Answer).where(Answer.survey_id == survey.id).order_by(Answer.question)),
        "messages": rows(
            select(Message).where(Message.survey_id == survey.id).order_by(Message.direction, Message.body)
        ),
        "cases": rows(select(Case).where(Case.survey_id == survey.id)),
        "opt_outs": rows(select(OptOut).where(OptOut.phone_e164 == phone).order_by(OptOut.channel)),
    }


def masks(survey: Survey, attempt: Attempt, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The values that differ between two surveys by construction, and their placeholder."""
    item = survey.item
    subs = {survey.token: "<token>", f"attempt={attempt.id}": "attempt=<attempt>"}
    if attempt.provider_id:
        subs[attempt.provider_id] = "<sid>"
    subs[item.phone_e164] = "<phone>"
    subs[item.phone_raw] = "<phone-raw>"
    subs[item.external_id] = "<external-id>"
    subs.update(extra or {})
    return subs


# --- voice ---------------------------------------------------------------------------------------


def voice_events(survey: Survey, attempt: Attempt, recording: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Every request Twilio makes for a call that rates 4, picks categories 1 and 3 and records."""
    sid = attempt.provider_id
    base = {
        "CallSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": OURS,
        "To": survey.item.phone_e164,
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
    }
    status = _path(voice_status_url(BASE, survey.token, attempt.id))

    def gather(seq: int, **form: str) -> tuple[str, dict[str, str]]:
        return _path(voice_gather_url(BASE, survey.token, seq)), {**base, "CallStatus": "in-progress", **form}

    return {
        "initiated": (status, {**base, "CallStatus": "initiated"}),
        "ringing": (status, {**base, "CallStatus": "ringing"}),
        "answered": (status, {**base, "CallStatus": "in-progress"}),
        "answer": (
            _path(voice_url(BASE, survey.token, attempt.id)),
            {**base, "CallStatus": "in-progress", "AnsweredBy": "human"},
        ),
        "rate": gather(0, Digits="4"),
        "categories": gather(1, Digits="13#"),
        "comment": gather(2, Digits="#", RecordingUrl=recording, RecordingDuration="12", RecordingSid="RE1"),
        "completed": (status, {**base, "CallStatus": "completed", "CallDuration": "75"}),
        "recording": (
            _path(recording_status_url(BASE, survey.token)),
            {**base, "RecordingUrl": recording, "RecordingDuration": "12", "RecordingStatus": "completed"},
        ),
    }


IN_ORDER = "initiated ringing answered answer rate categories comment completed recording".split()

VOICE_SCENARIOS = {
    # Twilio's "answered" event reaches us after the call already completed.
    "completed-before-in-progress": (
        "initiated answer rate categories comment completed answered ringing recording"
    ).split(),
    # Status callbacks (a repeated completed, a late ringing) after the last Gather and the hang-up.
    "status-after-last-gather": (
        "initiated ringing answered answer rate categories comment ringing answered"
        " completed completed recording completed"
    ).split(),
    # Every Gather (and the answer webhook) delivered twice, some after the next step.
    "same-gather-twice": (
        "initiated ringing answered answer answer rate rate categories rate categories"
        " comment comment categories completed recording recording"
    ).split(),
    # The recording's own status callback overtakes the Record action.
    "recording-before-its-action": (
        "initiated ringing answered answer rate categories recording comment completed"
    ).split(),
    # The caller hangs up while recording: the completed callback races the Record action and wins.
    "completed-before-last-action": (
        "initiated ringing answered answer rate categories completed comment recording"
    ).split(),
    # The call's status callbacks all arrive in reverse order, each twice.
    "statuses-reversed-and-doubled": (
        "answer rate categories comment completed completed answered answered ringing"
        " ringing initiated initiated recording"
    ).split(),
}


def play_voice(twilio_post, survey, attempt, order: list[str], recording: str) -> None:
    events = voice_events(survey, attempt, recording)
    for name in order:
        path, form = events[name]
        response = twilio_post(path, form)
        assert response.status_code in (200, 204), (name, response.status_code, response.get_data())


# Scenarios where the call ended before its last action ran the script: the survey's conversation
# state (its working memory, not a stored answer) legitimately stops one step short.
ENDED_BEFORE_LAST_ACTION = {"completed-before-last-action"}
@pytest.mark.parametrize(
    "scenario",
    list(VOICE_SCENARIOS),
)
def test_voice_callbacks_duplicated_or_out_of_order_store_what_the_in_order_call_stores(
    session, twilio_post, create_survey, create_campaign, scenario
):
    campaign = create_campaign()
    expected_survey, expected_attempt = create_survey(campaign=campaign)
    survey, attempt = create_survey(campaign=campaign)
    play_voice(twilio_post, expected_survey, expected_attempt, IN_ORDER, RECORDING.format(n=1))
    play_voice(twilio_post, survey, attempt, VOICE_SCENARIOS[scenario], RECORDING.format(n=2))

    expected = snapshot(
        session,
        expected_survey,
        masks(expected_survey, expected_attempt, {RECORDING.format(n=1): "<recording>"}),
    )
    got = snapshot(session, survey, masks(survey, attempt, {RECORDING.format(n=2): "<recording>"}))
    # The in-order call itself is what the script promises: complete, three answers, one case.
    assert expected["survey"]["disposition"] == "complete"
    assert {a["question"]: a["value"] for a in expected["answers"]} == {
        "rating": "dissatisfied",
        "categories": "stuck,delay",
        "comment": "<recording>",
    }
    assert expected["attempts"][0]["status"] == AttemptStatus.COMPLETED
    assert len(expected["cases"]) == 1
    if scenario in ENDED_BEFORE_LAST_ACTION:
        assert got["survey"].pop("script_state") != expected["survey"].pop("script_state")
    assert got == expected


# --- SMS -----------------------------------------------------------------------------------------


def _status_form(sid: str, status: str, error_code: str | None = None) -> dict[str, str]:
    form = {
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC" + "0" * 32,
        "From": OURS,
        "ApiVersion": "2010-04-01",
    }
    if error_code:
        form["ErrorCode"] = error_code
    return form


def sms_events(survey: Survey, attempt: Attempt, reply_sids: list[str]) -> dict[str, tuple[str, dict]]:
    """The status callbacks of the survey text and the citizen's two replies: a rating with a category
    and a comment, then a thank-you after the survey ended (kept as late, answered once)."""
    status = _path(sms_status_url(BASE, survey.token, attempt.id))
    sid = attempt.provider_id
    phone = survey.item.phone_e164

    def reply(n: int, body: str) -> tuple[str, dict[str, str]]:
        return "/twilio/sms", {
            "MessageSid": reply_sids[n],
            "AccountSid": "AC" + "0" * 32,
            "From": phone,
            "To": OURS,
            "Body": body,
            "NumMedia": "0",
            "SmsStatus": "received",
        }

    return {
        "queued": (status, _status_form(sid, "queued")),
        "sent": (status, _status_form(sid, "sent")),
        "delivered": (status, _status_form(sid, "delivered")),
        "undelivered": (status, _status_form(sid, "undelivered", "30003")),
        "reply-rating": reply(0, "4 拖 等了太久"),
        "reply-comment": reply(1, "谢谢"),
    }


SMS_IN_ORDER = "queued sent delivered reply-rating reply-comment".split()
SMS_SCENARIOS = {
    "statuses-reversed": "delivered sent queued reply-rating reply-comment".split(),
    "reply-before-any-status": "reply-rating queued sent reply-comment delivered".split(),
    "every-callback-twice": (
        "queued queued sent delivered sent reply-rating reply-rating delivered"
        " reply-comment queued reply-comment"
    ).split(),
    "stale-failure-after-delivery": "queued delivered reply-rating undelivered sent reply-comment".split(),
}


def play_sms(twilio_post, survey, attempt, order: list[str], reply_sids: list[str]) -> None:
    events = sms_events(survey, attempt, reply_sids)
    for name in order:
        path, form = events[name]
        response = twilio_post(path, form)
        assert response.status_code in (200, 204), (name, response.status_code, response.get_data())


@pytest.fixture
def sms_survey(session, settings, create_survey, create_campaign):
    """Factory: an SMS survey whose text was composed and stored as the dispatcher stores it."""
    campaign = create_campaign()

    def make():
        survey, attempt = create_survey("sms", campaign=campaign)
        body = compose_sms(session, survey, settings, now=datetime(2026, 11, 16, 2, 0, tzinfo=UTC))
        session.add(
            Message(
                direction=Direction.OUTBOUND,
                provider_id=attempt.provider_id,
                survey_id=survey.id,
                from_e164=OURS,
                to_e164=survey.item.phone_e164,
                body=body,
                status=AttemptStatus.QUEUED,
            )
        )
        session.flush()
        return survey, attempt

    return make


@pytest.mark.parametrize("scenario", list(SMS_SCENARIOS))
def test_sms_callbacks_duplicated_or_out_of_order_store_what_the_in_order_texts_store(
    session, twilio_post, sms_survey, scenario
):
    expected_survey, expected_attempt = sms_survey()
    survey, attempt = sms_survey()
    expected_sids = ["SM" + uuid.uuid4().hex for _ in range(2)]
    sids = ["SM" + uuid.uuid4().hex for _ in range(2)]
    play_sms(twilio_post, expected_survey, expected_attempt, SMS_IN_ORDER, expected_sids)
    play_sms(twilio_post, survey, attempt, SMS_SCENARIOS[scenario], sids)

    def replies(reply_sids):
        return {sid: f"<reply-{n}>" for n, sid in enumerate(reply_sids)}

    expected = snapshot(
        session, expected_survey, masks(expected_survey, expected_attempt, replies(expected_sids))
    )
    got = snapshot(session, survey, masks(survey, attempt, replies(sids)))
    assert expected["survey"]["disposition"] == "complete"
    assert expected["attempts"][0]["status"] == AttemptStatus.DELIVERED
    assert {a["question"]: a["value"] for a in expected["answers"]} == {
        "rating": "dissatisfied",
        "categories": "delay",
        "comment": "等了太久",
    }
    assert sorted((m["direction"], m["late"]) for m in expected["messages"]) == [
        ("inbound", False),
        ("inbound", True),
        ("outbound", False),
        ("outbound", False),
        ("outbound", True),
    ]
    assert got == expected
