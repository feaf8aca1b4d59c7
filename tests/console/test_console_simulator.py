"""The browser simulator: the keypad plays the real IVR script through the webhook app, step by step;
the SMS pane posts signed replies to the messaging webhook."""

from __future__ import annotations

import json

from sqlalchemy import select

from models.messages import Message
from models.surveys import Answer, Survey


def _answers(session, survey_id):
    rows = session.scalars(select(Answer).where(Answer.survey_id == survey_id))
    return {a.question: a for a in rows}


def test_a_call_played_on_the_keypad_completes_a_survey(supervisor, create_item, departments, session):
    item = create_item(department_id=departments["SWJ"].id, external_id="SIM-1", matter="企业开办登记")
    page = supervisor.post("/simulator/call", {"item": "SIM-1", "language": "zh-CN"}).get_data(as_text=True)
    assert "企业开办登记" in page and "税务局" in page and "非常满意请按1" in page
    assert 'id="keypad-form"' in page
    page = supervisor.post("/simulator/call/keys", {"keys": "4"}).get_data(as_text=True)
    assert "不满意的原因" in page
    page = supervisor.post("/simulator/call/keys", {"keys": "35#"}).get_data(as_text=True)
    assert 'id="record-form"' in page
    page = supervisor.post("/simulator/call/record", {"seconds": "7"}).get_data(as_text=True)
    assert 'id="call-ended"' in page and "感谢" in page
    survey = session.scalars(select(Survey).where(Survey.item_id == item.id)).one()
    session.refresh(survey)
    assert survey.state == "done" and survey.disposition == "complete"
    answers = _answers(session, survey.id)
    assert answers["rating"].value == "dissatisfied"
    assert answers["categories"].value == "delay,cold"
    assert answers["comment"].recording_duration == 7
    assert "/simulator/recordings/RE" in answers["comment"].recording_url
    wav = supervisor.get(answers["comment"].recording_url.split("localhost", 1)[1])
    assert wav.status_code == 200 and wav.mimetype == "audio/wav" and wav.data[:4] == b"RIFF"


def test_silence_and_invalid_keys_reprompt_then_a_hangup_keeps_the_partial(supervisor, create_item,
                                                                         departments, session):
    item = create_item(department_id=departments["SWJ"].id, external_id="SIM-2")
    supervisor.post("/simulator/call", {"item": "SIM-2", "language": "en-US"})
    page = supervisor.post("/simulator/call/keys", {"silence": "1"}).get_data(as_text=True)
    assert "did not receive" in page
    page = supervisor.post("/simulator/call/keys", {"keys": "2"}).get_data(as_text=True)
    assert 'id="call-ended"' in page
    survey = session.scalars(select(Survey).where(Survey.item_id == item.id)).one()
    session.refresh(survey)
    assert survey.disposition == "complete" and _answers(session, survey.id)["rating"].value == "satisfied"

    item3 = create_item(department_id=departments["SWJ"].id, external_id="SIM-3")
    supervisor.post("/simulator/call", {"item": "SIM-3"})
    supervisor.post("/simulator/call/keys", {"keys": "5"})
    page = supervisor.post("/simulator/call/hangup").get_data(as_text=True)
    survey = session.scalars(select(Survey).where(Survey.item_id == item3.id)).one()
    session.refresh(survey)
    assert survey.state == "done" and survey.disposition == "partial"


def test_an_item_tried_out_already_is_refused(supervisor, create_item, departments):
    create_item(department_id=departments["SWJ"].id, external_id="SIM-4")
    supervisor.post("/simulator/call", {"item": "SIM-4"})
    supervisor.post("/simulator/call/keys", {"keys": "1"})
    response = supervisor.post("/simulator/call", {"item": "SIM-4"})
    assert response.status_code == 302
    assert supervisor.post("/simulator/call", {"item": "NO-SUCH"}).status_code == 404


def test_the_session_cookie_keeps_no_phone_number(supervisor, console_app, create_item, departments):
    # Flask signs the session cookie but does not encrypt it: whoever holds it can read it.
    create_item(department_id=departments["SWJ"].id, external_id="SIM-5", phone_e164="+8613912345678")
    serializer = console_app.session_interface.get_signing_serializer(console_app)
    for url, form in [("/simulator/call", {"item": "SIM-5"}), ("/simulator/call/keys", {"keys": "1"})]:
        page = supervisor.post(url, form).get_data(as_text=True)
        assert "139****5678" in page  # read from the store at each step
        stored = serializer.loads(supervisor.raw.get_cookie("returnvisit_console").value)
        assert stored["sim_call"]["token"] and "12345678" not in json.dumps(stored)
    assert 'id="call-ended"' in page


def test_keys_without_a_call_are_a_conflict(supervisor):
    assert supervisor.post("/simulator/call/keys", {"keys": "1"}).status_code == 409


def test_the_sms_pane_runs_a_text_conversation(supervisor, create_item, departments, session):
    item = create_item(department_id=departments["SWJ"].id, external_id="SMS-1", phone_e164="+8613700137000")
    assert supervisor.post("/simulator/sms", {"item": "SMS-1", "language": "zh-CN"}).status_code == 302
    page = supervisor.get("/simulator").get_data(as_text=True)
    assert 'id="sms-messages"' in page and "回复TD退订" in page and "137****7000" in page
    supervisor.post("/simulator/sms/reply", {"body": "4 拖 太慢了"})
    survey = session.scalars(select(Survey).where(Survey.item_id == item.id)).one()
    session.refresh(survey)
    answers = _answers(session, survey.id)
    assert answers["rating"].value == "dissatisfied" and answers["categories"].value == "delay"
    texts = select(Message.body).where(Message.survey_id == survey.id).order_by(Message.id)
    bodies = session.scalars(texts).all()
    assert bodies[1] == "4 拖 太慢了" and len(bodies) >= 3
    page = supervisor.get("/simulator").get_data(as_text=True)
    assert "4 拖 太慢了" in page
