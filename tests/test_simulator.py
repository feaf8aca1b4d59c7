"""The simulated phone network against a small stand-in webhook app serving fixed TwiML."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import threading
import time
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from ivr.simulator import (
    HANGUP,
    FlaskTransport,
    HangUpAfter,
    HttpTransport,
    PhoneNetwork,
    RandomPersona,
    ScriptedPersona,
    SimulatedGateway,
    Speech,
    TerminalPersona,
    TransportError,
    parse_twiml,
)
from scheduler.gateway import CallRequest, GatewayError, SmsRequest

AUTH_TOKEN = "12345678901234567890123456789012"
BASE = "https://rv.example.gov.cn"
NOW = datetime(2025, 3, 3, 1, 30, tzinfo=UTC)


def fallback_signature(auth_token: str, url: str, params) -> str:
    """Twilio's algorithm: HMAC-SHA1 over the URL and the sorted key+value pairs, base64."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


try:
    from ivr.twilio_adapter import sign_request as SIGN
except ImportError:  # the adapter is written in parallel; the test keeps its own copy meanwhile
    SIGN = fallback_signature


def twiml(*verbs: str) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?><Response>' + "".join(verbs) + "</Response>"


def make_stand_in_app() -> Flask:
    """A fixed-TwiML webhook app that checks every signature and keeps every form it got."""
    app = Flask(__name__)
    received: list[tuple[str, dict[str, str], dict[str, str]]] = []
    app.config["received"] = received

    @app.before_request
    def check_signature():
        form = request.form.to_dict()
        received.append((request.path, request.args.to_dict(), form))
        expected = fallback_signature(AUTH_TOKEN, request.url, form)
        if not hmac.compare_digest(request.headers.get("X-Twilio-Signature", ""), expected):
            return "bad signature", 403
        return None

    @app.post("/voice")
    def voice():
        return twiml(
            '<Say voice="Polly.Zhiyu" language="cmn-CN">您好，这里是政务服务回访。</Say>',
            '<Gather numDigits="1" action="/voice/rated?seq=1" timeout="8">',
            "<Say>非常满意请按1，满意请按2，基本满意请按3，不满意请按4，非常不满意请按5。</Say>",
            "</Gather>",
            "<Redirect>/voice/no-input</Redirect>",
        )

    @app.post("/voice/rated")
    def rated():
        if request.form.get("Digits") in ("4", "5"):
            return twiml(
                '<Gather finishOnKey="#" timeout="10" action="categories">',
                "<Say>请选择您不满意的原因，输入完毕请按井号键。</Say>",
                "</Gather>",
                "<Redirect>/voice/no-input</Redirect>",
            )
        return twiml("<Say>感谢您的评价，再见。</Say>", "<Hangup/>")

    @app.post("/voice/categories")
    def categories():
        return twiml(
            "<Say>请在提示音后留言，说完请按井号键。</Say>",
            '<Record action="/voice/recorded" maxLength="60" finishOnKey="#" playBeep="true"'
            ' recordingStatusCallback="/voice/recording-status"/>',
            "<Say>没有收到留言。</Say>",
            "<Hangup/>",
        )

    @app.post("/voice/recorded")
    def recorded():
        return twiml("<Say>感谢您的意见，再见。</Say>", "<Hangup/>")

    @app.post("/voice/recording-status")
    def recording_status():
        return "", 204

    @app.post("/voice/no-input")
    def no_input():
        return twiml("<Say>没有收到您的按键。</Say>", '<Pause length="2"/>', "<Hangup/>")

    @app.post("/voice/empty")
    def empty_result():
        return twiml(
            '<Gather numDigits="1" actionOnEmptyResult="true" action="/voice/rated">',
            "<Say>请按键。</Say>",
            "</Gather>",
            "<Say>unreachable</Say>",
        )

    @app.post("/voice/hangup")
    def hangup():
        return twiml("<Hangup/>")

    @app.post("/voice/loop")
    def loop():
        return twiml("<Redirect>/voice/loop</Redirect>")

    @app.post("/voice/broken")
    def broken():
        return "boom", 500

    @app.post("/voice/not-xml")
    def not_xml():
        return "hello"

    @app.post("/status")
    def status():
        return "", 204

    @app.post("/sms")
    def sms():
        body = request.form["Body"]
        if body.startswith("4"):
            return twiml(
                f"<Message>收到：{escape(body)}</Message>", "<Message>请回复原因：1卡 2推 3拖</Message>"
            )
        return twiml("<Message><Body>感谢您的评价！</Body></Message>")

    @app.post("/sms/status")
    def sms_status():
        return "", 204

    return app


@pytest.fixture
def app() -> Flask:
    return make_stand_in_app()


@pytest.fixture
def network(app) -> PhoneNetwork:
    return PhoneNetwork(FlaskTransport(app), AUTH_TOKEN, clock=lambda: NOW, rng=random.Random(7), signer=SIGN)


def received(app, path: str) -> list[dict[str, str]]:
    return [form for got_path, _, form in app.config["received"] if got_path == path]


def call(network, path="/voice", persona=None, **kwargs):
    return network.run_call(
        "+8613800138000",
        "+8651012345",
        f"{BASE}{path}?survey=tok&attempt=1",
        persona=persona or ScriptedPersona([]),
        status_callback=f"{BASE}/status?survey=tok&attempt=1",
        **kwargs,
    )


def test_digits_are_posted_to_the_action_with_twilio_params_and_a_valid_signature(app, network):
    record = call(network, persona=ScriptedPersona(["2"]))

    assert record.errors == []
    assert [form.get("Digits") for form in record.forms("twiml")] == [None, "2"]
    action = record.requests[4]  # initiated, ringing, answered, then /voice
    assert action.url == f"{BASE}/voice/rated?seq=1"
    form = received(app, "/voice/rated")[0]
    assert form == {
        "CallSid": record.sid,
        "AccountSid": network.account_sid,
        "From": "+8651012345",
        "To": "+8613800138000",
        "Called": "+8613800138000",
        "Caller": "+8651012345",
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        "Digits": "2",
        "FinishedOnKey": "",
    }
    assert record.sid.startswith("CA") and len(record.sid) == 34
    assert network.account_sid.startswith("AC") and len(network.account_sid) == 34
    assert record.said == ["您好，这里是政务服务回访。", record.said[1], "感谢您的评价，再见。"]
    assert record.speech[0].voice == "Polly.Zhiyu" and record.speech[0].language == "cmn-CN"
    assert record.hung_up_by == "app"


def test_the_persona_hears_the_prompt_said_before_and_inside_the_gather(network):
    persona = ScriptedPersona(["1"])
    call(network, persona=persona)

    assert persona.prompts[0][0] == "您好，这里是政务服务回访。"
    assert "非常不满意请按5" in persona.prompts[0][1]


def test_finish_key_is_stripped_and_relative_action_resolved(app, network):
    record = call(network, persona=ScriptedPersona(["4", "13#"], record_seconds=[None]))

    assert record.keys == ["4", "13#"]
    assert received(app, "/voice/categories")[0]["Digits"] == "13"
    assert received(app, "/voice/categories")[0]["FinishedOnKey"] == "#"
    assert record.requests[5].url == f"{BASE}/voice/categories"  # relative to /voice/rated


def test_keys_past_num_digits_are_ignored(app, network):
    call(network, persona=ScriptedPersona(["29#"]))

    assert received(app, "/voice/rated")[0]["Digits"] == "2"


def test_silence_falls_through_to_the_redirect(app, network):
    record = call(network, persona=ScriptedPersona([None]))

    assert [request.url for request in record.requests if request.kind == "twiml"] == [
        f"{BASE}/voice?survey=tok&attempt=1",
        f"{BASE}/voice/no-input",
    ]
    assert received(app, "/voice/rated") == []
    assert record.said[-1] == "没有收到您的按键。"


def test_action_on_empty_result_posts_empty_digits(app, network):
    record = call(network, "/voice/empty", persona=ScriptedPersona([None]))

    assert received(app, "/voice/rated")[0]["Digits"] == ""
    assert "unreachable" not in record.said


def test_caller_hang_up_in_a_gather_ends_the_call_without_a_request(app, network):
    record = call(network, persona=ScriptedPersona([HANGUP]))

    assert record.hung_up_by == "caller"
    assert len(record.forms("twiml")) == 1
    assert record.forms("status")[-1]["CallStatus"] == "completed"


def test_record_posts_the_recording_then_its_status_callback(app, network):
    record = call(network, persona=ScriptedPersona(["5", "3#"], record_seconds=[12]))

    assert record.errors == []
    action = received(app, "/voice/recorded")[0]
    recording = record.recordings[0]
    assert action["RecordingUrl"] == (
        f"https://api.twilio.com/2010-04-01/Accounts/{network.account_sid}/Recordings/{recording.sid}"
    )
    assert action["RecordingDuration"] == "12" and action["Digits"] == "#"
    assert action["RecordingSid"].startswith("RE")
    callback = received(app, "/voice/recording-status")[0]
    assert callback["RecordingStatus"] == "completed"
    assert callback["RecordingUrl"] == action["RecordingUrl"]
    assert callback["RecordingDuration"] == "12"
    assert callback["CallSid"] == record.sid
    kinds = [request.kind for request in record.requests]
    assert kinds.index("recording") == kinds.index("twiml") + 4  # right after the Record's action


def test_recording_is_capped_at_max_length(app, network):
    call(network, persona=ScriptedPersona(["5", "3#"], record_seconds=[90]))

    action = received(app, "/voice/recorded")[0]
    assert action["RecordingDuration"] == "60" and "Digits" not in action


def test_an_empty_recording_posts_no_action_and_goes_on(app, network):
    record = call(network, persona=ScriptedPersona(["5", "3#"], record_seconds=[None]))

    assert received(app, "/voice/recorded") == []
    assert received(app, "/voice/recording-status") == []
    assert record.said[-1] == "没有收到留言。"


def test_hang_up_during_a_recording_posts_digits_hangup_and_ends(app, network):
    record = call(network, persona=ScriptedPersona(["5", "3#"], record_seconds=[HangUpAfter(7)]))

    action = received(app, "/voice/recorded")[0]
    assert action["Digits"] == "hangup" and action["RecordingDuration"] == "7"
    assert "感谢您的意见，再见。" not in record.said  # the action's answer is not played
    assert record.hung_up_by == "caller"
    assert len(received(app, "/voice/recording-status")) == 1


def test_status_callbacks_arrive_in_twilio_order(app, network):
    record = call(network, persona=ScriptedPersona(["1"]))

    forms = received(app, "/status")
    assert [form["CallStatus"] for form in forms] == ["initiated", "ringing", "in-progress", "completed"]
    assert [form["SequenceNumber"] for form in forms] == ["0", "1", "2", "3"]
    assert all(form["CallbackSource"] == "call-progress-events" for form in forms)
    assert forms[0]["Timestamp"] == "Mon, 03 Mar 2025 01:30:00 +0000"
    assert forms[-1]["CallDuration"] == str(record.duration) and record.duration > 0
    assert [request.kind for request in record.requests][:3] == ["status"] * 3
    assert record.requests[-1].kind == "status"


def test_only_subscribed_events_are_posted(app, network):
    call(network, persona=ScriptedPersona(["1"]), status_events=("completed",))

    forms = received(app, "/status")
    assert [(form["CallStatus"], form["SequenceNumber"]) for form in forms] == [("completed", "0")]


@pytest.mark.parametrize(
    ("outcome", "statuses"),
    [
        ("no-answer", ["initiated", "ringing", "no-answer"]),
        ("busy", ["initiated", "ringing", "busy"]),
        ("failed", ["initiated", "failed"]),
    ],
)
def test_unanswered_calls_never_request_twiml(app, network, outcome, statuses):
    record = call(network, persona=ScriptedPersona(pick_up=outcome))

    assert record.forms("twiml") == []
    assert [form["CallStatus"] for form in received(app, "/status")] == statuses
    assert received(app, "/status")[-1]["CallDuration"] == "0"
    assert record.status == outcome


def test_machine_with_detection_is_announced_as_machine_start(app, network):
    record = call(
        network, "/voice/hangup", persona=ScriptedPersona(pick_up="machine"), machine_detection=True
    )

    assert received(app, "/voice/hangup")[0]["AnsweredBy"] == "machine_start"
    assert received(app, "/status")[-1]["AnsweredBy"] == "machine_start"
    assert record.answered_by == "machine_start"


def test_human_with_detection_is_human_and_without_detection_has_no_answered_by(app, network):
    call(network, persona=ScriptedPersona(["1"]), machine_detection=True)
    call(network, persona=ScriptedPersona(["1"]))

    voice_forms = received(app, "/voice")
    assert voice_forms[0]["AnsweredBy"] == "human"
    assert "AnsweredBy" not in voice_forms[1]


def test_an_undetected_machine_listens_in_silence(app, network):
    record = call(network, persona=ScriptedPersona(["1"], pick_up="machine"))

    assert received(app, "/voice/rated") == []
    assert record.said[-1] == "没有收到您的按键。"


def test_a_redirect_loop_is_stopped_by_the_guard(network):
    record = call(network, "/voice/loop")

    assert len(record.forms("twiml")) == 50
    assert "loop" in record.errors[0]
    assert record.forms("status")[-1]["CallStatus"] == "completed"


@pytest.mark.parametrize(("path", "error"), [("/voice/broken", "HTTP 500"), ("/voice/not-xml", "not TwiML")])
def test_an_application_error_ends_the_call(network, path, error):
    record = call(network, path, persona=ScriptedPersona(["1"]))

    assert len(record.forms("twiml")) == 1
    assert error in record.errors[0]
    assert record.status == "completed"


def test_a_bad_signature_is_refused_by_the_stand_in(app):
    network = PhoneNetwork(FlaskTransport(app), "wrong-token", signer=SIGN)
    record = call(network)

    assert "HTTP 403" in record.errors[-1]


def test_default_signer_is_the_twilio_adapter(app):
    pytest.importorskip("ivr.twilio_adapter")
    network = PhoneNetwork(FlaskTransport(app), AUTH_TOKEN)
    record = call(network, persona=ScriptedPersona(["1"]))

    assert record.errors == []


def test_fallback_signature_matches_twilio_documentation_example():
    # The worked example of Twilio's "Webhooks security" page.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    signature = fallback_signature("12345", url, params)

    assert signature == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert SIGN("12345", url, params) == signature


def run_random_calls(seed: int) -> list[tuple]:
    app = make_stand_in_app()
    network = PhoneNetwork(
        FlaskTransport(app), AUTH_TOKEN, clock=lambda: NOW, rng=random.Random(seed), signer=SIGN
    )
    persona = RandomPersona(random.Random(seed), answer_rate=0.8)
    records = [call(network, persona=persona) for _ in range(30)]
    return [
        (r.sid, r.outcome, tuple(r.keys), r.duration, len(r.recordings), tuple(r.errors)) for r in records
    ]


def test_random_persona_with_a_fixed_seed_is_reproducible():
    first = run_random_calls(11)

    assert first == run_random_calls(11)
    assert first != run_random_calls(12)
    outcomes = {outcome for _, outcome, *_ in first}
    assert "answer" in outcomes and len(outcomes) > 1
    assert all(errors == () for *_, errors in first)


def test_random_persona_answers_the_menus_it_hears(network):
    persona = RandomPersona(
        random.Random(3),
        grade_weights=(0, 0, 0, 0, 1),
        invalid_key_rate=0,
        hangup_rate=0,
        silence_rate=0,
        optout_rate=0,
        comment_rate=1,
    )
    persona.pick_up = lambda call: "answer"
    record = call(network, persona=persona)

    assert record.keys[0] == "5"
    assert record.keys[1].endswith("#") and set(record.keys[1][:-1]) <= set("123456")
    assert len(record.recordings) == 1


def test_random_persona_replies_to_sms_questions_and_stops_at_thanks():
    persona = RandomPersona(
        random.Random(1), sms_reply_rate=1, sms_free_text_rate=0, grade_weights=(1, 0, 0, 0, 0)
    )

    assert (
        persona.reply_sms(
            ["【中心】请您评价：回复1非常满意，2满意，3基本满意，4不满意，5非常不满意。回复TD退订"]
        )
        == "1"
    )
    assert persona.reply_sms(["感谢您的评价！"]) is None
    assert persona.reply_sms(["请回复您不满意的原因：1卡 2推 3拖 4乱 5冷 6差。回复TD退订"]) in list("123456")


def test_terminal_persona_reads_keys_silence_and_hang_up():
    lines = iter(["1", "", "h"])
    printed: list[str] = []
    persona = TerminalPersona(input_fn=lambda prompt: next(lines), print_fn=printed.append)
    app = make_stand_in_app()
    network = PhoneNetwork(FlaskTransport(app), AUTH_TOKEN, signer=SIGN)

    record = call(network, persona=persona)

    assert record.keys == ["1"]
    assert "感谢您的评价，再见。" in printed

    def eof(prompt):
        raise EOFError

    assert (
        call(network, persona=TerminalPersona(input_fn=eof, print_fn=printed.append)).hung_up_by == "caller"
    )


@pytest.mark.parametrize("body", ["<Say>hi</Say>", "<Response><Say>x</Response>", ""])
def test_parse_twiml_refuses_what_is_not_a_response(body):
    with pytest.raises(ValueError):
        parse_twiml(body)


def test_inbound_sms_delivery_parses_the_message_replies(app, network):
    status, replies = network.deliver_sms("+8613800138000", "+8610690000", "4 拖 太慢了", f"{BASE}/sms")

    assert status == 200
    assert replies == ["收到：4 拖 太慢了", "请回复原因：1卡 2推 3拖"]
    form = received(app, "/sms")[0]
    assert form["MessageSid"].startswith("SM") and form["SmsStatus"] == "received"
    assert form["Body"] == "4 拖 太慢了" and form["NumMedia"] == "0" and form["NumSegments"] == "1"
    assert network.deliver_sms("+8613800138000", "+8610690000", "1", f"{BASE}/sms")[1] == ["感谢您的评价！"]


def test_outbound_sms_reports_delivery_and_carries_the_conversation(app, network):
    persona = ScriptedPersona(sms_replies=["4", "3"])
    record = network.run_outbound_sms(
        "+8613800138000",
        "+8610690000",
        "请您评价：回复1-5",
        persona=persona,
        status_callback=f"{BASE}/sms/status",
        inbound_url=f"{BASE}/sms",
    )

    assert [form["MessageStatus"] for form in received(app, "/sms/status")] == ["queued", "sent", "delivered"]
    assert record.replies == ["4", "3"]
    assert record.received == ["请您评价：回复1-5", "收到：4", "请回复原因：1卡 2推 3拖", "感谢您的评价！"]
    assert record.status == "delivered" and record.errors == []


def test_an_sms_conversation_is_bounded(network):
    persona = ScriptedPersona(sms_replies=["4"] * 10)
    record = network.run_outbound_sms(
        "+8613800138000", "+8610690000", "hi", persona=persona, inbound_url=f"{BASE}/sms", max_rounds=3
    )

    assert record.replies == ["4"] * 3 and len(record.forms("sms")) == 3


def test_undelivered_sms_carries_the_error_code_and_gets_no_reply(app, network):
    persona = ScriptedPersona(sms_replies=["1"], sms_delivery=("undelivered", "30003"))
    record = network.run_outbound_sms(
        "+8613800138000",
        "+8610690000",
        "hi",
        persona=persona,
        status_callback=f"{BASE}/sms/status",
        inbound_url=f"{BASE}/sms",
    )

    forms = received(app, "/sms/status")
    assert [form["MessageStatus"] for form in forms] == ["queued", "sent", "undelivered"]
    assert forms[-1]["ErrorCode"] == "30003" and "ErrorCode" not in forms[0]
    assert received(app, "/sms") == [] and record.error_code == "30003"


def make_gateway(app, personas: dict[str, ScriptedPersona], **kwargs) -> SimulatedGateway:
    network = PhoneNetwork(FlaskTransport(app), AUTH_TOKEN, clock=lambda: NOW, signer=SIGN)
    return SimulatedGateway(network, BASE, personas.__getitem__, **kwargs)


def voice_app() -> Flask:
    """The stand-in app with our real webhook paths mapped onto its fixed TwiML."""
    app = make_stand_in_app()
    app.add_url_rule("/twilio/voice", "twilio_voice", app.view_functions["voice"], methods=["POST"])
    app.add_url_rule("/twilio/voice/status", "twilio_status", app.view_functions["status"], methods=["POST"])
    app.add_url_rule("/twilio/sms", "twilio_sms", app.view_functions["sms"], methods=["POST"])
    app.add_url_rule(
        "/twilio/sms/status", "twilio_sms_status", app.view_functions["sms_status"], methods=["POST"]
    )
    return app


def test_gateway_queues_calls_and_runs_them_in_order():
    app = voice_app()
    first, second = ScriptedPersona(["1"]), ScriptedPersona(pick_up="busy")
    gateway = make_gateway(app, {"+8613800000001": first, "+8613800000002": second, "+8613800000003": first})

    one = gateway.place_call(CallRequest("tok1", 1, "+8613800000001", "+8651012345", machine_detection=False))
    two = gateway.place_call(CallRequest("tok2", 2, "+8613800000002", "+8651012345"))
    text = gateway.send_sms(SmsRequest("tok3", 3, "+8613800000003", "+8610690000", "请您评价"))

    assert (one.status, one.provider_id[:2], two.provider_id[:2], text.provider_id[:2]) == (
        "queued",
        "CA",
        "CA",
        "SM",
    )
    assert app.config["received"] == [] and gateway.pending == 3
    records = gateway.run_pending(max_calls=2)
    assert [record.sid for record in records] == [one.provider_id, two.provider_id]
    assert records[0].requests[3].url == f"{BASE}/twilio/voice?survey=tok1&attempt=1&lang=zh-CN"
    assert records[0].requests[0].url == f"{BASE}/twilio/voice/status?survey=tok1&attempt=1"
    assert "AnsweredBy" not in records[0].forms("twiml")[0]
    assert records[1].status == "busy"
    assert gateway.pending == 1
    (sms,) = gateway.run_pending()
    assert sms.sid == text.provider_id
    assert sms.requests[0].url == f"{BASE}/twilio/sms/status?survey=tok3&attempt=3"
    assert gateway.records == [*records, sms]


def test_gateway_fail_next_raises_once_with_the_code():
    gateway = make_gateway(voice_app(), {})
    gateway.fail_next("21211", retryable=False)

    with pytest.raises(GatewayError) as caught:
        gateway.place_call(CallRequest("tok", 1, "+8613800000001", "+8651012345"))
    assert caught.value.code == "21211" and caught.value.retryable is False
    assert gateway.place_call(CallRequest("tok", 1, "+8613800000001", "+8651012345")).status == "queued"
    assert gateway.pending == 1


def test_gateway_refuses_a_number_that_is_not_e164():
    gateway = make_gateway(voice_app(), {})

    with pytest.raises(GatewayError) as caught:
        gateway.send_sms(SmsRequest("tok", 1, "13800138000", "+8610690000", "hi"))
    assert caught.value.code == "21211" and gateway.pending == 0


def test_gateway_run_inline_plays_the_call_before_returning():
    app = voice_app()
    gateway = make_gateway(app, {"+8613800000001": ScriptedPersona(["2"])}, run_inline=True)

    result = gateway.place_call(CallRequest("tok", 1, "+8613800000001", "+8651012345"))

    assert gateway.pending == 0
    assert gateway.records[0].sid == result.provider_id
    assert received(app, "/voice/rated")[0]["Digits"] == "2"


def test_gateway_worker_plays_queued_calls_in_the_background():
    app = voice_app()
    gateway = make_gateway(app, {f"+861380000000{i}": ScriptedPersona(["1"]) for i in range(3)})
    gateway.start_worker()
    try:
        sids = [
            gateway.place_call(CallRequest("tok", i, f"+861380000000{i}", "+8651012345")).provider_id
            for i in range(3)
        ]
        for _ in range(200):
            if len(gateway.records) == 3:
                break
            time.sleep(0.01)
    finally:
        gateway.stop()
    assert [record.sid for record in gateway.records] == sids


@pytest.fixture
def live_server():
    app = make_stand_in_app()
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_transport_talks_to_a_real_server(live_server):
    app, base = live_server
    network = PhoneNetwork(HttpTransport(timeout=5), AUTH_TOKEN, signer=SIGN)

    record = network.run_call(
        "+8613800138000",
        "+8651012345",
        f"{base}/voice?survey=tok&attempt=1",
        persona=ScriptedPersona(["4", "2#"], record_seconds=[5]),
        status_callback=f"{base}/status",
    )

    assert record.errors == []
    assert received(app, "/voice/categories")[0]["Digits"] == "2"
    assert record.said[-1] == "感谢您的意见，再见。"
    assert HttpTransport().post(f"{base}/voice/broken", {}, {})[0] == 403  # unsigned: refused, not raised


def test_http_transport_raises_only_when_unreachable(live_server):
    _, base = live_server
    with pytest.raises(TransportError):
        HttpTransport(timeout=2).post("http://127.0.0.1:9/", {}, {})
    network = PhoneNetwork(HttpTransport(timeout=2), AUTH_TOKEN, signer=SIGN)
    record = network.run_call(
        "+8613800138000", "+8651012345", "http://127.0.0.1:9/voice", persona=ScriptedPersona(["1"])
    )
    assert record.errors and record.requests[-1].status is None


AUDIO = "https://cdn.example.gov.cn/audio/welcome.mp3"


def serve(app, path: str, *verbs: str) -> None:
    """Let the stand-in app answer POST `path` with a fixed TwiML document of these verbs."""
    app.add_url_rule(path, path, lambda: twiml(*verbs), methods=["POST"])


def test_play_is_heard_as_audio_and_timed(app, network):
    serve(app, "/voice/play", f"<Play>{AUDIO}</Play>", "<Hangup/>")
    persona = ScriptedPersona([])

    record = call(network, "/voice/play", persona=persona)

    assert record.errors == []
    assert record.speech == [Speech("play", AUDIO)] and persona.heard == record.speech
    assert record.said == []  # audio is not a Say
    assert record.hung_up_by == "app" and record.status == "completed"
    assert record.duration == 5  # a played file counts five simulated seconds


def test_play_nested_in_a_gather_is_heard_before_the_keys(app, network):
    serve(
        app,
        "/voice/play-menu",
        '<Gather numDigits="1" action="/voice/rated">',
        f'<Play loop="2">{AUDIO}</Play>',
        "</Gather>",
        "<Hangup/>",
    )
    persona = ScriptedPersona(["1"])

    record = call(network, "/voice/play-menu", persona=persona)

    assert record.errors == []
    assert [(speech.kind, speech.text) for speech in record.speech] == [
        ("play", AUDIO),
        ("say", "感谢您的评价，再见。"),
    ]
    assert received(app, "/voice/rated")[0]["Digits"] == "1"
    # Played twice (10 s), one key (1 s), the thanks (10 characters, 2 s).
    assert record.duration == 13


@pytest.mark.parametrize(("pause", "duration"), [('<Pause length="3"/>', 4), ("<Pause/>", 2)])
def test_a_pause_adds_its_length_to_the_call(app, network, pause, duration):
    serve(app, "/voice/pause", "<Say>hello</Say>", pause, "<Hangup/>")  # five characters: one second

    record = call(network, "/voice/pause", persona=ScriptedPersona([]))

    assert record.errors == []
    assert record.said == ["hello"]  # a pause says nothing
    assert record.duration == duration
    completed = received(app, "/status")[-1]
    assert completed["CallStatus"] == "completed" and completed["CallDuration"] == str(duration)
    # Answered after six seconds of ringing, then the call's own seconds.
    assert completed["Timestamp"] == f"Mon, 03 Mar 2025 01:30:{6 + duration:02d} +0000"


def test_a_silent_gather_waits_its_timeout(app, network):
    for timeout in ("8", "2", None):
        attribute = f' timeout="{timeout}"' if timeout else ""
        serve(
            app,
            f"/voice/wait-{timeout}",
            f'<Gather numDigits="1" action="/voice/rated"{attribute}><Say>hello</Say></Gather>',
            "<Hangup/>",
        )

    durations = {
        timeout: call(network, f"/voice/wait-{timeout}", persona=ScriptedPersona([None])).duration
        for timeout in ("8", "2", None)
    }

    # One second of prompt, then the wait for input; Twilio's default timeout is 5 seconds.
    assert durations == {"8": 9, "2": 3, None: 6}
    assert received(app, "/voice/rated") == []  # silence without actionOnEmptyResult posts nothing


def test_keys_that_end_a_gather_skip_the_timeout(app, network):
    serve(
        app,
        "/voice/quick",
        '<Gather finishOnKey="#" timeout="30" action="/voice/hangup"><Say>hello</Say></Gather>',
    )

    record = call(network, "/voice/quick", persona=ScriptedPersona(["13#"]))

    assert record.errors == []
    assert received(app, "/voice/hangup")[0]["Digits"] == "13"
    assert record.duration == 4  # one second of prompt, one per key pressed, no wait


def test_every_running_network_issues_new_sids_whatever_its_seed(settings):
    # The demo and a later `scheduler --once` each build one: the same sids would collide on
    # attempts.provider_id and stop the second process.
    from ivr.simulator.gateway import from_settings

    gateways = [from_settings(settings, seed=7) for _ in range(2)]
    try:
        first, second = ([g.network.new_sid("CA") for _ in range(3)] for g in gateways)
        assert not set(first) & set(second)
    finally:
        for gateway in gateways:
            gateway.stop()


def test_an_unreachable_webhook_app_is_named_with_how_to_start_it():
    with pytest.raises(TransportError, match=r"cannot reach http://127\.0\.0\.1:1/.*returnvisit serve"):
        HttpTransport(timeout=2).post("http://127.0.0.1:1/twilio/voice", {}, {})


def test_the_demos_recordings_are_served_by_the_console(settings):
    # Twilio's URL shape plays nowhere in a demo; the console's simulator route serves a tone.
    from console.web import create_console_app

    network = PhoneNetwork(HttpTransport(), AUTH_TOKEN, recordings_url="http://127.0.0.1:5001/simulator/recordings")
    sid = network.new_sid("RE")
    url = network.recording_url(sid, 12)
    assert url == f"http://127.0.0.1:5001/simulator/recordings/{sid}.wav?seconds=12"
    adapter = create_console_app(settings).url_map.bind("127.0.0.1:5001")
    assert adapter.match(url.split("5001", 1)[1].split("?")[0])[0] == "simulator.recording"
    plain = PhoneNetwork(HttpTransport(), AUTH_TOKEN).recording_url(sid, 12)
    assert plain.startswith("https://api.twilio.com/2010-04-01/Accounts/AC") and plain.endswith(sid)
