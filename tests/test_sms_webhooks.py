"""SMS webhooks as tables: signed Twilio form in, status and TwiML out, rows afterwards."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from ivr.conversation import conversation_state
from ivr.simulator.network import parse_message_replies
from ivr.sms_outbound import compose_sms
from ivr.urls import sms_status_url
from models.messages import Message
from models.optouts import OptOut, is_opted_out
from models.surveys import Answer, Attempt, AttemptStatus, Survey, SurveyState

BASE = "http://127.0.0.1:5000"
OURS = "+12025550100"  # the number create_survey's attempts were sent from
STRANGER = "+8613900009999"


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def reload(session, obj):
    session.expire_all()
    return session.get(type(obj), obj.id)


def answers(session, survey) -> dict[str, str]:
    session.expire_all()
    return {a.question: a.value for a in session.scalars(select(Answer).where(Answer.survey_id == survey.id))}


def messages(session, **where) -> list[Message]:
    session.expire_all()
    stmt = select(Message).filter_by(**where).order_by(Message.id)
    return list(session.scalars(stmt))


def opt_outs(session, phone: str) -> list[OptOut]:
    session.expire_all()
    return list(session.scalars(select(OptOut).where(OptOut.phone_e164 == phone).order_by(OptOut.id)))


@pytest.fixture
def texted(session, settings, create_survey):
    """Factory: an SMS survey whose invitation was composed (the conversation waits for a reply)."""

    def make(**kwargs):
        survey, attempt = create_survey("sms", **kwargs)
        compose_sms(session, survey, settings, now=datetime(2026, 11, 16, 2, 0, tzinfo=UTC))
        session.flush()
        return survey, attempt

    return make


@pytest.fixture
def send(twilio_post):
    """Post an inbound text; return (response, reply texts)."""

    def post(body: str, *, from_: str, to: str = OURS, sid: str | None = None, sign: str | None = "valid"):
        form = {
            "MessageSid": sid or new_sid(),
            "AccountSid": "AC" + "0" * 32,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        response = twilio_post("/twilio/sms", form, sign=sign)
        texts = parse_message_replies(response.get_data(as_text=True)) if response.status_code == 200 else []
        return response, texts

    return post


@pytest.mark.parametrize(
    ("replies", "expected_answers", "disposition", "last_reply_has"),
    [
        (["1"], {"rating": "very_satisfied"}, "complete", "感谢您的评价"),
        (["满意"], {"rating": "satisfied"}, "complete", "感谢您的评价"),
        (["５分"], {"rating": "very_dissatisfied"}, None, "请回复您不满意的原因"),
        (["4 拖 太慢了"], {"rating": "dissatisfied", "categories": "delay", "comment": "太慢了"}, "complete",
         "感谢您的评价"),
        (["4", "拖 冷"], {"rating": "dissatisfied", "categories": "delay,cold"}, "complete", "感谢您的评价"),
        (["5", "36"], {"rating": "very_dissatisfied", "categories": "delay,poor"}, "complete", "感谢"),
        (["不满意", "窗口没人"], {"rating": "dissatisfied", "comment": "窗口没人"}, "complete", "感谢"),
        (["1 2", "2"], {"rating": "satisfied"}, "complete", "感谢您的评价"),
        (["1 2", "1 2"], {}, "break_off", "感谢您的评价"),
        (["4", "。", "嗯"], {"rating": "dissatisfied", "comment": "嗯"}, "complete", "感谢您的评价"),
        (["4", "", "..."], {"rating": "dissatisfied"}, "partial", "感谢您的评价"),
        (["８"], {"eligible": "no"}, "not_eligible", "抱歉打扰您了"),
    ],
    ids=["rating", "grade-word", "score-bad", "all-in-one", "two-step", "two-step-digits", "two-step-words",
         "ambiguous-then-clear", "ambiguous-twice", "invalid-then-comment", "empty-twice", "not-eligible"],
)
def test_replies_store_answers_and_disposition(
    session, texted, send, replies, expected_answers, disposition, last_reply_has
):
    survey, attempt = texted()
    texts: list[str] = []
    for body in replies:
        response, texts = send(body, from_=survey.item.phone_e164)
        assert response.status_code == 200
        assert response.mimetype == "application/xml"
        assert len(texts) == 1
    assert last_reply_has in texts[0]
    assert answers(session, survey) == expected_answers
    survey = reload(session, survey)
    assert survey.disposition == disposition
    assert survey.state == (SurveyState.DONE if disposition else SurveyState.IN_PROGRESS)
    inbound = messages(session, survey_id=survey.id, direction="inbound")
    assert [m.body for m in inbound] == replies
    assert all(m.from_e164 == survey.item.phone_e164 and m.to_e164 == OURS and not m.late for m in inbound)
    outbound = messages(session, survey_id=survey.id, direction="outbound")
    assert [m.body for m in outbound][-1] == texts[0]
    assert reload(session, attempt).status == AttemptStatus.DELIVERED  # a reply proves delivery


def test_two_step_reply_asks_for_the_categories_then_thanks(session, texted, send):
    survey, _ = texted()
    _, first = send("4", from_=survey.item.phone_e164)
    assert first == [
        "请回复您不满意的原因，可多选：1卡（刁难）2推（推诿）3拖（拖延）4乱（程序不规范）5冷（态度冷漠）6差（能力差），"
        "也可直接写下您的意见。回复TD退订"
    ]
    assert conversation_state(reload(session, survey), "sms")["node"] == "categories"
    _, second = send("3", from_=survey.item.phone_e164)
    assert second == ["感谢您的评价！"]


def test_ambiguous_reply_gets_one_clarifying_reprompt(session, texted, send):
    survey, _ = texted()
    _, texts = send("1 2", from_=survey.item.phone_e164)
    assert texts[0].startswith("抱歉，没能识别您的回复。\n【示范县政务服务中心】")
    assert "回复1非常满意" in texts[0]
    assert reload(session, survey).state == SurveyState.IN_PROGRESS


def test_english_survey_replies_in_english(session, texted, send):
    survey, _ = texted(language="en-US")
    _, texts = send("very satisfied", from_=survey.item.phone_e164)
    assert texts == ["Thank you for your feedback!"]
    assert answers(session, survey) == {"rating": "very_satisfied"}


def test_verification_visit_by_sms_stores_the_verdict(session, texted, send):
    survey, _ = texted(kind="verification")
    _, texts = send("是的", from_=survey.item.phone_e164)
    assert texts == ["感谢您的评价！"]
    assert answers(session, survey) == {"verification": "satisfied"}
    assert reload(session, survey).disposition == "complete"


@pytest.mark.parametrize("keyword", ["TD", "td。", "T", "退订", "ＳＴＯＰ", "unsubscribe", "QUIT"])
def test_opt_out_keyword_writes_one_opt_out_refuses_and_confirms(session, texted, send, keyword):
    survey, _ = texted()
    phone = survey.item.phone_e164
    response, texts = send(keyword, from_=phone)
    assert response.status_code == 200
    assert texts == ["您已退订，今后不会再收到回访短信。"]
    survey = reload(session, survey)
    assert (survey.state, survey.disposition) == (SurveyState.DONE, "refused")
    [opt_out] = opt_outs(session, phone)
    assert (opt_out.channel, opt_out.source, opt_out.revoked_at) == ("all", "sms_keyword", None)
    _, again = send(keyword, from_=phone)
    assert again == ["您已退订，今后不会再收到回访短信。"]
    assert len(opt_outs(session, phone)) == 1
    assert answers(session, survey) == {}


def test_opt_out_ends_every_open_sms_survey_of_the_number(session, texted, send, create_survey):
    first, _ = texted()
    second, _ = texted(item=first.item)
    voice_only, _ = create_survey("voice", item=first.item)
    _, texts = send("退订", from_=first.item.phone_e164)
    assert texts == ["您已退订，今后不会再收到回访短信。"]
    assert reload(session, first).disposition == "refused"
    assert reload(session, second).disposition == "refused"
    # Never texted: the scheduler honours the OptOut before its next call.
    assert reload(session, voice_only).state == SurveyState.IN_PROGRESS
    assert is_opted_out(session, first.item.phone_e164, "voice")


def test_opt_out_from_an_unknown_number_is_recorded_and_confirmed(session, send):
    _, texts = send("STOP", from_=STRANGER)
    assert texts == ["您已退订，今后不会再收到回访短信。"]
    assert [o.source for o in opt_outs(session, STRANGER)] == ["sms_keyword"]


def test_opt_in_revokes_the_citizens_opt_outs_and_confirms(session, texted, send):
    from models.survey_ops import add_opt_out

    survey, _ = texted()
    phone = survey.item.phone_e164
    send("TD", from_=phone)
    assert is_opted_out(session, phone, "sms")
    _, texts = send("订阅", from_=phone)
    assert texts == ["您已重新订阅示范县政务服务中心政务服务回访短信。回复TD退订"]
    assert not is_opted_out(session, phone, "sms")
    assert opt_outs(session, phone)[0].revoked_at is not None
    # An opt-out entered by staff is theirs to lift: START does not.
    add_opt_out(session, phone, source="staff", now=datetime(2026, 11, 17, tzinfo=UTC))
    session.flush()
    _, texts = send("START", from_=phone)
    assert texts[0].startswith("您已重新订阅")
    assert is_opted_out(session, phone, "sms")
    assert reload(session, survey).disposition == "refused"  # opting in does not reopen a survey


@pytest.mark.parametrize(("keyword", "language", "has"), [
    ("帮助", "zh-CN", ["【示范县政务服务中心】", "回复TD退订"]),
    ("HELP", "en-US", ["示范县政务服务中心 return visits", "Reply TD to opt out"]),
    ("info", "zh-CN", ["回复1至5评价"]),
])
def test_help_names_the_organisation_and_the_opt_out(session, texted, send, keyword, language, has):
    survey, _ = texted(language=language)
    state_before = dict(reload(session, survey).script_state)
    _, texts = send(keyword, from_=survey.item.phone_e164)
    assert len(texts) == 1
    for fragment in has:
        assert fragment in texts[0]
    survey = reload(session, survey)
    assert survey.state == SurveyState.IN_PROGRESS and survey.script_state == state_before
    assert answers(session, survey) == {}
    send("1", from_=survey.item.phone_e164)
    assert answers(session, survey) == {"rating": "very_satisfied"}


def test_help_at_the_categories_step_repeats_that_question(session, texted, send):
    survey, _ = texted()
    phone = survey.item.phone_e164
    send("4", from_=phone)
    _, texts = send("帮助", from_=phone)
    assert texts[0].startswith("【示范县政务服务中心】政务服务回访短信，请按以下提示回复：")
    assert "请回复您不满意的原因" in texts[0] and "回复1至5评价" not in texts[0]
    send("5", from_=phone)  # as the help said: 5 is 冷, not a grade
    assert answers(session, survey) == {"rating": "dissatisfied", "categories": "cold"}


def test_help_in_a_verification_visit_asks_the_verification_question(session, texted, send):
    survey, _ = texted(kind="verification", language="en-US")
    _, texts = send("HELP", from_=survey.item.phone_e164)
    assert "Please reply as follows" in texts[0] and "Reply 1 if you are satisfied" in texts[0]
    assert "reply 1 to 5" not in texts[0]
    send("2", from_=survey.item.phone_e164)
    assert answers(session, survey) == {"verification": "dissatisfied"}


def test_late_reply_after_the_survey_closed_is_kept_and_answered_briefly(session, texted, send):
    survey, _ = texted()
    send("1", from_=survey.item.phone_e164)
    response, texts = send("还有，窗口服务很好", from_=survey.item.phone_e164)
    assert response.status_code == 200
    assert texts == ["本次回访已经结束，感谢您的回复。"]
    late = messages(session, body="还有，窗口服务很好")
    assert [(m.survey_id, m.late, m.direction) for m in late] == [(survey.id, True, "inbound")]
    assert answers(session, survey) == {"rating": "very_satisfied"}
    # Once only: an auto-responder answering our reply must not start a loop.
    _, again = send("[自动回复] 我正在开车", from_=survey.item.phone_e164)
    assert again == []
    assert messages(session, body="[自动回复] 我正在开车")[0].late


def test_late_reply_in_english(session, texted, send):
    survey, _ = texted(language="en-US")
    send("STOP", from_=survey.item.phone_e164)
    _, texts = send("sorry, one more thing", from_=survey.item.phone_e164)
    assert texts == ["This survey has ended. Thank you for your reply."]


def test_unknown_number_is_stored_without_a_survey_and_not_answered(session, texted, send):
    texted()
    response, texts = send("4 拖 太慢了", from_=STRANGER)
    assert response.status_code == 200
    assert texts == []
    assert "<Message" not in response.get_data(as_text=True)
    [stored] = messages(session, from_e164=STRANGER)
    assert (stored.survey_id, stored.late, stored.direction) == (None, False, "inbound")
    assert stored.body == "4 拖 太慢了"
    assert session.scalar(select(func.count()).select_from(Answer)) == 0


def test_reply_to_another_of_our_numbers_is_not_routed_to_the_survey(session, texted, send):
    survey, _ = texted()
    _, texts = send("1", from_=survey.item.phone_e164, to="+12025550188")
    assert texts == []
    assert answers(session, survey) == {}
    assert messages(session, to_e164="+12025550188")[0].survey_id is None


def test_from_is_normalised_to_e164(session, texted, send):
    survey, _ = texted()
    national = survey.item.phone_e164.removeprefix("+86")
    _, texts = send("1", from_=f"{national[:3]} {national[3:7]} {national[7:]}")
    assert texts == ["感谢您的评价！"]
    assert messages(session, direction="inbound")[0].from_e164 == survey.item.phone_e164


def test_reply_goes_to_the_newest_open_survey_on_the_number_answered(session, texted, send):
    older, _ = texted()
    other_number, other_attempt = texted(item=older.item)
    other_attempt.from_number = "+12025550177"
    newer, _ = texted(item=older.item)
    session.flush()
    send("2", from_=older.item.phone_e164)
    assert answers(session, newer) == {"rating": "satisfied"}
    assert answers(session, older) == {} and answers(session, other_number) == {}
    send("3", from_=older.item.phone_e164, to="+12025550177")
    assert answers(session, other_number) == {"rating": "basically_satisfied"}
    send("1", from_=older.item.phone_e164)
    assert answers(session, older) == {"rating": "very_satisfied"}


@pytest.mark.parametrize("unread", ["undelivered", "failed", "pending", "canceled"])
def test_reply_goes_to_the_survey_whose_text_was_read_not_a_newer_unread_one(session, texted, send, unread):
    read, _ = texted()
    waiting, attempt = texted(item=read.item)  # newer, but its text never reached the phone
    attempt.status = unread
    session.flush()
    send("2", from_=read.item.phone_e164)
    assert answers(session, read) == {"rating": "satisfied"} and answers(session, waiting) == {}
    send("1", from_=read.item.phone_e164)  # nothing else open on the number: the unread one, after all
    assert answers(session, waiting) == {"rating": "very_satisfied"}


def test_repeated_message_sid_gets_the_same_reply_and_stores_nothing_twice(session, texted, send):
    survey, _ = texted()
    phone = survey.item.phone_e164
    sid = new_sid()
    _, first = send("4", from_=phone, sid=sid)
    _, second = send("4", from_=phone, sid=sid)
    assert first == second and "请回复您不满意的原因" in first[0]
    assert answers(session, survey) == {"rating": "dissatisfied"}
    assert conversation_state(reload(session, survey), "sms")["node"] == "categories"
    assert len(messages(session, provider_id=sid)) == 1
    assert len(messages(session, provider_id=sid + "/reply")) == 1
    other = new_sid()
    _, done = send("4 拖 太慢了", from_=phone, sid=other)
    _, done_again = send("4 拖 太慢了", from_=phone, sid=other)
    assert done == done_again == ["感谢您的评价！"]
    assert answers(session, survey) == {"rating": "dissatisfied", "categories": "chaotic,delay",
                                        "comment": "太慢了"}
    assert session.scalar(select(func.count()).select_from(Answer).where(Answer.survey_id == survey.id)) == 3


def test_free_text_of_every_reply_is_kept_in_the_comment_once(session, texted, send):
    survey, _ = texted()
    phone = survey.item.phone_e164
    send("窗口的人态度很差", from_=phone)  # no grade: kept, and asked again
    sid = new_sid()
    send("4 还让我跑了三趟", from_=phone, sid=sid)
    send("4 还让我跑了三趟", from_=phone, sid=sid)  # Twilio repeats the webhook: added once
    send("拖 排队两小时", from_=phone)
    assert answers(session, survey) == {
        "rating": "dissatisfied",
        "categories": "delay",
        "comment": "窗口的人态度很差\n还让我跑了三趟\n排队两小时",
    }
    assert reload(session, survey).disposition == "complete"
    from models.cases import Case

    case = session.scalars(select(Case).where(Case.survey_id == survey.id)).one()
    assert case.comment == "窗口的人态度很差\n还让我跑了三趟\n排队两小时"  # what the department reads


def test_repeated_message_sid_without_a_reply_stays_unanswered(session, send):
    sid = new_sid()
    assert send("hello", from_=STRANGER, sid=sid)[1] == []
    assert send("hello", from_=STRANGER, sid=sid)[1] == []
    assert len(messages(session, provider_id=sid)) == 1


@pytest.mark.parametrize(
    "sign",
    [None, "wrong-url", "wrong-token", "non-ascii"],
    ids=["missing", "wrong-url", "forged", "non-ascii"],
)
@pytest.mark.parametrize("endpoint", ["inbound", "status"])
def test_bad_signatures_are_refused_and_store_nothing(
    session, texted, send, twilio_post, sign, endpoint, caplog
):
    survey, attempt = texted()
    state_before = dict(reload(session, survey).script_state)
    if endpoint == "inbound":
        response, _ = send("TD", from_=survey.item.phone_e164, sign=sign)
    else:
        form = {"MessageSid": attempt.provider_id, "MessageStatus": "failed", "ErrorCode": "21610"}
        response = twilio_post(sms_status_url(BASE, survey.token, attempt.id)[len(BASE):], form, sign=sign)
    assert response.status_code == 403
    assert "forged or unsigned" in caplog.text
    assert messages(session) == []
    assert opt_outs(session, survey.item.phone_e164) == []
    assert reload(session, attempt).status == AttemptStatus.QUEUED
    survey = reload(session, survey)
    assert survey.script_state == state_before and survey.state == SurveyState.IN_PROGRESS


def test_database_failure_answers_an_empty_response_not_a_trace(texted, send, monkeypatch, caplog):
    survey, _ = texted()

    def broken(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr("ivr.sms.open_sms_survey", broken)
    response, texts = send("1", from_=survey.item.phone_e164)
    assert response.status_code == 200 and texts == []
    body = response.get_data(as_text=True)
    assert "<Response" in body and "Traceback" not in body and "OperationalError" not in body
    assert "webhook /twilio/sms failed" in caplog.text


# --- delivery status callbacks -------------------------------------------------------------------


@pytest.fixture
def report(twilio_post):
    """Post status callbacks of an attempt's text; return the last response."""

    def post(survey, attempt, *statuses: str | tuple[str, str]):
        response = None
        for item in statuses:
            status, code = item if isinstance(item, tuple) else (item, None)
            form = {"MessageSid": attempt.provider_id, "SmsSid": attempt.provider_id, "MessageStatus": status,
                    "AccountSid": "AC" + "0" * 32, "To": survey.item.phone_e164, "From": OURS}
            if code:
                form["ErrorCode"] = code
            response = twilio_post(sms_status_url(BASE, survey.token, attempt.id)[len(BASE):], form)
            assert response.status_code == 204
        return response

    return post


@pytest.fixture
def settled(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(
        "scheduler.outcomes.settle_attempt", lambda s, survey, attempt, st, now: calls.append(attempt.status)
    )
    return calls


def sent_message(session, survey, attempt) -> Message:
    """The outbound Message the dispatcher stores beside an SMS attempt."""
    message = Message(direction="outbound", provider_id=attempt.provider_id, survey_id=survey.id,
                      from_e164=OURS, to_e164=survey.item.phone_e164, body="invite", status="queued")
    session.add(message)
    session.flush()
    return message


@pytest.mark.parametrize(
    ("statuses", "attempt_status", "error_code", "state", "disposition", "settles", "opt_out"),
    [
        (["queued", "sent"], "sent", None, "in_progress", None, [], None),
        (["sent", "delivered"], "delivered", None, "in_progress", None, [], None),
        ([("failed", "21610")], "failed", "21610", "done", "undelivered", [], ("sms", "carrier")),
        ([("undelivered", "21610")], "undelivered", "21610", "done", "undelivered", [], ("sms", "carrier")),
        ([("failed", "21211")], "failed", "21211", "done", "not_eligible", [], None),
        (["sent", ("undelivered", "21614")], "undelivered", "21614", "done", "not_eligible", [], None),
        (["sent", ("undelivered", "30003")], "undelivered", "30003", "in_progress", "undelivered",
         ["undelivered"], None),
        ([("failed", "30008")], "failed", "30008", "in_progress", "failed", ["failed"], None),
        (["delivered", "sent", "queued"], "delivered", None, "in_progress", None, [], None),
        ([("undelivered", "30003"), "sent", "delivered", ("undelivered", "30003")], "undelivered", "30003",
         "in_progress", "undelivered", ["undelivered"], None),
        (["delivered", ("failed", "30008")], "delivered", None, "in_progress", None, [], None),
    ],
    ids=["sent", "delivered", "carrier-opt-out", "carrier-opt-out-undelivered", "invalid-number",
         "not-a-mobile", "unreachable", "failed-other", "out-of-order", "final-never-moves-back",
         "delivered-stays"],
)
def test_status_callbacks_move_the_attempt_forward_and_settle_failures(
    session, texted, report, settled,
    statuses, attempt_status, error_code, state, disposition, settles, opt_out,
):
    survey, attempt = texted()
    message = sent_message(session, survey, attempt)
    report(survey, attempt, *statuses)
    attempt = reload(session, attempt)
    assert (attempt.status, attempt.error_code) == (attempt_status, error_code)
    assert (attempt.ended_at is not None) == (attempt_status in ("failed", "undelivered"))
    survey = reload(session, survey)
    assert (survey.state, survey.disposition) == (state, disposition)
    assert settled == settles
    rows = opt_outs(session, survey.item.phone_e164)
    assert [(o.channel, o.source) for o in rows] == ([opt_out] if opt_out else [])
    assert reload(session, message).status == attempt_status


def test_error_code_with_a_nul_is_stored_without_it(session, texted, report, settled):
    # PostgreSQL text cannot hold a NUL: the callback answered 503, and Twilio retried it for ever.
    survey, attempt = texted()
    message = sent_message(session, survey, attempt)
    report(survey, attempt, ("undelivered", " \x0030003" + "9" * 30))
    stored = reload(session, attempt)
    assert (stored.status, stored.error_code) == ("undelivered", ("30003" + "9" * 30)[:20])
    assert reload(session, message).error_code == stored.error_code
    assert settled == ["undelivered"]


def test_status_of_a_text_to_a_finished_survey_changes_only_the_attempt(
    session, texted, send, report, settled
):
    survey, attempt = texted()
    send("1", from_=survey.item.phone_e164)
    attempt.status = AttemptStatus.SENT  # as if the reply overtook the callbacks
    session.flush()
    report(survey, attempt, ("undelivered", "21211"))
    assert reload(session, attempt).status == "undelivered"
    survey = reload(session, survey)
    assert survey.disposition == "complete" and settled == []


def test_status_callback_takes_the_sid_when_the_dispatcher_has_not_stored_it(
    session, texted, twilio_post, settled
):
    survey, attempt = texted()
    attempt.provider_id = None
    attempt.status = AttemptStatus.PENDING
    session.flush()
    sid = new_sid()
    path = sms_status_url(BASE, survey.token, attempt.id)[len(BASE):]
    twilio_post(path, {"MessageSid": sid, "MessageStatus": "sent"})
    attempt = reload(session, attempt)
    assert (attempt.provider_id, attempt.status) == (sid, "sent")


@pytest.mark.parametrize(
    ("query", "form"),
    [
        ("survey=nope&attempt=1", {"MessageStatus": "delivered"}),
        ("", {"MessageStatus": "delivered"}),
        ("survey=TOKEN&attempt=999999999", {"MessageStatus": "failed", "ErrorCode": "21610"}),
        ("survey=TOKEN&attempt=ATTEMPT", {"MessageStatus": "teleported"}),
        ("survey=TOKEN&attempt=ATTEMPT", {}),
    ],
    ids=["unknown-survey", "no-query", "other-attempt", "unknown-status", "no-status"],
)
def test_status_callbacks_that_name_nothing_known_change_nothing(
    session, texted, twilio_post, settled, query, form, caplog
):
    survey, attempt = texted()
    query = query.replace("TOKEN", survey.token).replace("ATTEMPT", str(attempt.id))
    response = twilio_post("/twilio/sms/status" + (f"?{query}" if query else ""), form)
    assert response.status_code == 204
    assert reload(session, attempt).status == AttemptStatus.QUEUED
    assert reload(session, survey).state == SurveyState.IN_PROGRESS
    assert opt_outs(session, survey.item.phone_e164) == [] and settled == []
    if form.get("MessageStatus") == "teleported":
        assert "unknown Twilio MessageStatus 'teleported'" in caplog.text


def test_failed_text_is_settled_by_the_real_retry_policy(session, texted, report, create_campaign, caplog):
    campaign = create_campaign(config={"name": "sms only", "channels": ["sms"], "retry": {"sms": ""}})
    survey, attempt = texted(campaign=campaign)
    report(survey, attempt, ("undelivered", "30003"))
    survey = reload(session, survey)
    assert (survey.state, survey.disposition) == (SurveyState.DONE, "undelivered")  # no SMS retry left
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


# --- the terminal simulation (returnvisit sms) ---------------------------------------------------


def test_sms_command_posts_a_signed_text_and_prints_the_reply(settings, backend, tmp_path):
    if backend != "sqlite":
        pytest.skip("the command runs against the configured (SQLite) database")
    from click.testing import CliRunner

    from console.cli import Context
    from console.cli_sms import sms
    from models import migrate
    from models.campaigns import Campaign
    from models.db import make_engine, make_sessionmaker
    from models.departments import Department
    from models.items import ServiceItem

    engine = make_engine(settings.database.url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as db:
        department = Department(code="SWJ", name="税务局")
        campaign = Campaign(name="c", status="active", seed="s", config={"script": "default"})
        db.add_all([department, campaign])
        db.flush()
        item = ServiceItem(source="t", external_id="1", department_id=department.id, matter="契税申报",
                           phone_e164="+8613800138000", phone_kind="mobile",
                           completed_at=datetime(2026, 11, 10, 2, tzinfo=UTC))
        db.add(item)
        db.flush()
        survey = Survey(campaign_id=campaign.id, item_id=item.id, token="cli-token",
                        department_id=department.id, quarter="2026Q4", language="zh-CN", channel="sms",
                        state=SurveyState.IN_PROGRESS)
        db.add(survey)
        db.flush()
        db.add(Attempt(survey_id=survey.id, channel="sms", number=1, provider_id="SM" + "1" * 32,
                       from_number=settings.twilio.sms_from, status="queued"))
        compose_sms(db, survey, settings)
        db.commit()
    engine.dispose()

    runner = CliRunner()
    context = Context(config_path=None, _settings=settings)
    result = runner.invoke(sms, ["13800138000", "4 拖 太慢了"], obj=context)
    assert result.exit_code == 0, result.output
    assert "感谢您的评价！" in result.output
    result = runner.invoke(sms, ["+8613800138000", "帮助"], obj=context)
    assert "示范县政务服务中心" in result.output
    result = runner.invoke(sms, ["+8613900000000", "hello"], obj=context)
    assert result.exit_code == 0 and "(no reply)" in result.output
    context.close()


@pytest.mark.parametrize(("code", "disposition"), [("21211", "not_eligible"), ("21610", "undelivered")])
def test_a_verification_text_that_cannot_arrive_tells_its_case(session, settings, create_survey, report,
                                                              code, disposition):
    from models.cases import CaseState
    from models.cases_ops import answer_case, open_case_for
    from models.survey_ops import finish_survey, record_answer

    rated, _ = create_survey("sms")
    rated_at = datetime(2026, 11, 16, tzinfo=UTC)
    record_answer(session, rated, "rating", "dissatisfied", channel="sms", now=rated_at)
    finish_survey(session, rated, "complete", rated_at)
    case = open_case_for(session, rated, settings, rated_at)
    visit = answer_case(session, case, "已整改", "officer1", settings, datetime(2026, 11, 17, 2, tzinfo=UTC))
    visit.channel = "sms"
    attempt = Attempt(survey_id=visit.id, channel="sms", number=1, status="sent", from_number=OURS,
                      provider_id=f"SM{uuid.uuid4().hex}", created_at=datetime(2026, 11, 18, 2, tzinfo=UTC))
    session.add(attempt)
    session.flush()
    report(visit, attempt, ("undelivered", code))
    session.expire_all()
    assert reload(session, visit).disposition == disposition
    case = reload(session, case)
    # Not left waiting for an answer that cannot come: a supervisor can close it.
    assert (case.state, case.verification_result) == (CaseState.ANSWERED, "unverified")
