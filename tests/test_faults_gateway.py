"""The gateway times out or answers 500: the attempt is recorded as failed and retried by policy.

The real TwilioGateway (ivr/gateway.py) talks to a local stand-in for Twilio's REST API that answers
500, or answers too late for the client's timeout; the real Dispatcher drives it on a fake clock.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from scheduler_fixtures import T0, FakeClock, add_campaign, add_item, add_survey, settings_with
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from ivr.gateway import TwilioGateway
from models.surveys import Attempt, Survey
from scheduler.dispatch import MAX_CONSECUTIVE_ERRORS, Dispatcher

SID, TOKEN = "AC0123456789abcdef0123456789abcdef", "s3cret-token"
CLIENT_TIMEOUT = 0.3  # seconds the gateway waits for Twilio's answer
RETRY_AFTER = timedelta(minutes=30)  # the default first voice retry interval ("30m 2h 1d")


class FlakyTwilio:
    """Twilio's Calls endpoint that fails the way it is told to, then creates calls again."""

    def __init__(self) -> None:
        self.mode = "ok"  # "ok", "500" or "slow"
        self.calls: list[str] = []  # To of every request received

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.calls.append(request.form.get("To", ""))
        if self.mode == "slow":
            time.sleep(CLIENT_TIMEOUT * 4)  # the answer comes after the client gave up
        if self.mode == "500":
            body, status = {"code": 20500, "message": "Internal Server Error", "status": 500}, 500
        else:
            body, status = {"sid": f"CA{len(self.calls):032d}", "status": "queued"}, 201
        response = Response(json.dumps(body), status=status, content_type="application/json")
        return response(environ, start_response)


@pytest.fixture
def twilio():
    app = FlakyTwilio()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_port}"
    yield app
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def dispatcher(twilio, session_factory):
    """A dispatcher on a fake clock at Monday 10:00 (inside a calling window), through TwilioGateway."""
    settings = settings_with(
        twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": twilio.url},
        gateway={"calls_per_second": 1000.0, "max_concurrent_calls": 1000},
    )
    gateway = TwilioGateway(settings, timeout=CLIENT_TIMEOUT)
    clock = FakeClock(T0)
    yield Dispatcher(session_factory, settings, gateway, lambda s, v: "", clock, clock.sleep), clock
    gateway.close()


def _due_surveys(session, create_department, count: int) -> list[Survey]:
    campaign = add_campaign(session, T0)
    department = create_department()
    return [
        add_survey(
            session, campaign, add_item(session, department, T0 - timedelta(days=1)), next_attempt_at=T0
        )
        for _ in range(count)
    ]


def _attempts(session, survey: Survey) -> list[Attempt]:
    session.expire_all()
    return list(session.scalars(select(Attempt).where(Attempt.survey_id == survey.id).order_by(Attempt.id)))


@pytest.mark.parametrize(("mode", "code"), [("500", "20500"), ("slow", "timeout")], ids=["500", "timeout"])
def test_a_failed_call_request_is_recorded_and_retried_by_policy(
    session, create_department, twilio, dispatcher, mode, code
):
    dispatch, clock = dispatcher
    [survey] = _due_surveys(session, create_department, 1)
    twilio.mode = mode
    counts = dispatch.run()
    assert counts["failed_retry"] == 1 and "placed" not in counts
    [failed] = _attempts(session, survey)
    assert (failed.number, failed.status, failed.error_code, failed.provider_id) == (1, "failed", code, None)
    assert failed.ended_at is not None
    session.refresh(survey)
    # The policy's first voice interval, from the failed attempt, inside the same calling window.
    assert (survey.state, survey.disposition) == ("scheduled", "failed")
    assert survey.next_attempt_at == failed.created_at + RETRY_AFTER
    assert survey.lease_owner is None and survey.first_attempt_at == failed.created_at

    twilio.mode = "ok"
    clock.advance(minutes=29)
    assert dispatch.run() == {}  # not before the retry is due
    clock.advance(minutes=1)
    assert dispatch.run()["placed"] == 1
    first, retry = _attempts(session, survey)
    assert (retry.number, retry.status, retry.provider_id) == (2, "queued", f"CA{2:032d}")
    session.refresh(survey)
    assert survey.state == "in_progress"
    assert len(twilio.calls) == 2  # one request per attempt: the failed one was not repeated


def test_a_run_of_server_errors_stops_the_batch_and_gives_the_rest_back(
    session, create_department, twilio, dispatcher
):
    dispatch, clock = dispatcher
    surveys = _due_surveys(session, create_department, MAX_CONSECUTIVE_ERRORS + 2)
    twilio.mode = "500"
    counts = dispatch.run()
    assert counts["failed_retry"] == MAX_CONSECUTIVE_ERRORS
    assert counts["abandoned"] == 2 and len(twilio.calls) == MAX_CONSECUTIVE_ERRORS
    tried = [s for s in surveys if _attempts(session, s)]
    untried = [s for s in surveys if not _attempts(session, s)]
    assert len(tried) == MAX_CONSECUTIVE_ERRORS and len(untried) == 2
    for survey in untried:  # never dialled: no attempt counted, due again at once
        session.refresh(survey)
        assert (survey.state, survey.next_attempt_at, survey.lease_owner) == ("scheduled", T0, None)

    twilio.mode = "ok"
    clock.advance(seconds=30)
    assert dispatch.run()["placed"] == 2  # the next tick places the ones given back
    clock.advance(minutes=30)
    assert dispatch.run()["placed"] == MAX_CONSECUTIVE_ERRORS  # and the policy retries the failed ones
    for survey in surveys:
        attempts = _attempts(session, survey)
        assert [a.status for a in attempts] == (["failed", "queued"] if survey in tried else ["queued"])
