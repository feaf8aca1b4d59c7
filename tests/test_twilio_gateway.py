"""The Twilio gateway against a local HTTP server standing in for Twilio's REST API."""

import json
import socket
import threading
from datetime import timedelta

import pytest
from scheduler_fixtures import FakeClock, add_campaign, add_item, add_survey, settings_with
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from ivr.gateway import RebasedHttpClient, TwilioGateway, gateway_error
from ivr.urls import sms_status_url, voice_status_url
from models.surveys import Attempt
from scheduler.dispatch import Dispatcher
from scheduler.gateway import CallRequest, GatewayError, SmsRequest

SID, TOKEN = "AC0123456789abcdef0123456789abcdef", "s3cret-token"
PUBLIC = "https://rv.example.org/hooks"


class TwilioStub:
    """A WSGI app answering like Twilio's REST API and recording every request."""

    def __init__(self):
        self.requests = []
        self.replies = []  # (status, JSON body) per request, in order; default: created

    def __call__(self, environ, start_response):
        request = Request(environ)
        auth = request.authorization
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "auth": (auth.username, auth.password) if auth else None,
                "form": request.form.to_dict(flat=False),
            }
        )
        if self.replies:
            status, body = self.replies.pop(0)
        else:
            prefix = "CA" if request.path.endswith("/Calls.json") else "SM"
            status, body = 201, {"sid": f"{prefix}{len(self.requests):032d}", "status": "queued"}
        return Response(json.dumps(body), status=status, content_type="application/json")(
            environ, start_response
        )


@pytest.fixture
def stub():
    app = TwilioStub()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_port}"
    yield app
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def gateway_for():
    made = []

    def make(base_url):
        settings = settings_with(
            twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": base_url},
            app={"public_base_url": PUBLIC},
        )
        made.append(TwilioGateway(settings, timeout=5))
        return made[-1]

    yield make
    for gateway in made:
        gateway.close()


def call(attempt_id=7, to="+8613812345678"):
    return CallRequest(
        survey_token="tok123", attempt_id=attempt_id, to=to, from_="+12025550100", timeout_seconds=25
    )


def test_place_call_sends_every_field_twilio_needs(stub, gateway_for):
    result = gateway_for(stub.url).place_call(call())
    assert (result.provider_id, result.status) == (f"CA{1:032d}", "queued")
    [request] = stub.requests
    assert request["method"] == "POST"
    assert request["path"] == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert request["auth"] == (SID, TOKEN)
    assert request["form"] == {
        "To": ["+8613812345678"],
        "From": ["+12025550100"],
        "Url": [f"{PUBLIC}/twilio/voice?survey=tok123&attempt=7&lang=zh-CN"],  # the apology's language
        "Method": ["POST"],
        "StatusCallback": [voice_status_url(PUBLIC, "tok123", 7)],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "StatusCallbackMethod": ["POST"],
        "MachineDetection": ["Enable"],
        "Timeout": ["25"],
    }


def test_send_sms_sends_body_and_status_callback(stub, gateway_for):
    request = SmsRequest(
        survey_token="tok9", attempt_id=9, to="+8613812345678", from_="+12025550101", body="请回复1-5"
    )
    result = gateway_for(stub.url).send_sms(request)
    assert result.provider_id == f"SM{1:032d}"
    [seen] = stub.requests
    assert seen["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json" and seen["auth"] == (SID, TOKEN)
    assert seen["form"] == {
        "To": ["+8613812345678"],
        "From": ["+12025550101"],
        "Body": ["请回复1-5"],
        "StatusCallback": [sms_status_url(PUBLIC, "tok9", 9)],
    }


def test_base_url_may_carry_a_path_prefix(stub, gateway_for):
    gateway_for(stub.url + "/emulator/").place_call(call())
    assert stub.requests[0]["path"] == f"/emulator/2010-04-01/Accounts/{SID}/Calls.json"
    assert (
        RebasedHttpClient("http://h:1/p").rebase("https://api.twilio.com/a.json?x=1")
        == "http://h:1/p/a.json?x=1"
    )


@pytest.mark.parametrize(
    ("status", "code", "expected_code", "retryable"),
    [
        (400, 21211, "21211", False),
        (400, 21614, "21614", False),
        (400, 21610, "21610", False),
        (401, 20003, "20003", False),
        (404, None, "404", False),
        (429, 20429, "20429", True),
        (500, 20500, "20500", True),
        (503, None, "503", True),
    ],
)
def test_rest_errors_become_gateway_errors(stub, gateway_for, status, code, expected_code, retryable):
    body = {"status": status, "message": "refused"} | ({"code": code} if code else {})
    stub.replies.append((status, body))
    with pytest.raises(GatewayError) as caught:
        gateway_for(stub.url).place_call(call())
    assert (caught.value.code, caught.value.retryable) == (expected_code, retryable)


def test_unreachable_api_is_retryable(gateway_for):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(GatewayError) as caught:
        gateway_for(f"http://127.0.0.1:{port}").place_call(call())
    assert (caught.value.code, caught.value.retryable) == ("connection", True)
    assert gateway_error(ValueError("odd")).retryable


def test_invalid_number_ends_the_attempt_with_its_code_and_no_retry(
    stub, gateway_for, session, session_factory, now, create_department
):
    campaign = add_campaign(session, now)
    item = add_item(session, create_department(), now - timedelta(days=1))
    survey = add_survey(session, campaign, item, next_attempt_at=now)
    stub.replies.append(
        (400, {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400})
    )
    clock = FakeClock(now)
    settings = settings_with(gateway={"calls_per_second": 100.0, "max_concurrent_calls": 10})
    dispatcher = Dispatcher(
        session_factory, settings, gateway_for(stub.url), lambda s, v: "", clock, clock.sleep
    )
    assert dispatcher.run()["failed_not_eligible"] == 1
    [attempt] = session.scalars(select(Attempt).where(Attempt.survey_id == survey.id)).all()
    session.refresh(survey)
    assert (attempt.status, attempt.error_code, attempt.provider_id) == ("failed", "21211", None)
    assert (survey.state, survey.disposition) == ("done", "not_eligible")
    clock.advance(days=2)
    assert dispatcher.run() == {} and len(stub.requests) == 1
