"""Every Twilio route of the public app refuses an unsigned or badly signed request, and stores nothing.

The routes are read from the app's url_map, so a new webhook cannot slip through: a route is either
under /twilio/ (and then must check the signature) or named below with what guards it instead.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from ivr.twilio_adapter import sign_request
from models.base import Base

# Routes of the public app that are not Twilio webhooks, and what guards each instead.
NOT_TWILIO = {
    "static": "Flask's static route (the public app serves no files)",
    "health.healthz": "liveness only: no data, no database",
    "health.readyz": "readiness only: no data",
    "metrics.metrics": "answers only clients in metrics.allow_networks",
    "intake_api.post_service_items": "its own bearer token (intake.api_token)",
    "intake_api.openapi": "the intake API's public description",
}
TWILIO_PREFIX = "/twilio/"
METHODS_IGNORED = {"HEAD", "OPTIONS"}


def twilio_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(TWILIO_PREFIX)]


def row_counts(session) -> dict[str, int]:
    """Rows in every table of the store (a forged request must leave every one unchanged)."""
    session.expire_all()
    return {t.name: session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def test_every_route_is_a_signed_twilio_webhook_or_allow_listed(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    unexplained = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith(TWILIO_PREFIX) and rule.endpoint not in NOT_TWILIO
    }
    assert not unexplained, f"routes neither under {TWILIO_PREFIX} nor allow-listed: {unexplained}"
    assert set(NOT_TWILIO) <= endpoints, "allow-list names a route that no longer exists"
    assert {r.endpoint for r in twilio_rules(app)} >= {
        "voice.answered",
        "voice.gathered",
        "voice.call_status",
        "voice.recording_status",
        "sms.inbound",
        "sms.message_status",
    }


@pytest.fixture
def signed_target(session, settings, create_survey):
    """A live voice survey whose token, attempt and step make every Twilio route do real work."""
    from ivr.sms_outbound import compose_sms

    survey, attempt = create_survey()
    sms_survey, sms_attempt = create_survey("sms")
    compose_sms(session, sms_survey, settings)
    session.flush()
    query = {"survey": survey.token, "attempt": str(attempt.id), "seq": "0"}
    form = {
        "CallSid": attempt.provider_id,
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": "AC" + "0" * 32,
        "CallStatus": "completed",
        "MessageStatus": "undelivered",
        "ErrorCode": "21610",
        "Digits": "1",
        "RecordingUrl": "https://api.twilio.com/rec/RE1",
        "RecordingDuration": "7",
        "RecordingStatus": "completed",
        "From": sms_survey.item.phone_e164,
        "To": "+12025550100",
        "Body": "TD",
        "AnsweredBy": "human",
    }
    return query, form


def _forgeries(settings, path: str, query: dict[str, str], form: dict[str, str]) -> dict[str, str | None]:
    url = f"{settings.app.public_base_url}{path}?{urlencode(query)}"
    token = settings.twilio.auth_token
    return {
        "unsigned": None,
        "empty": "",
        "garbage": "not-a-signature",
        "wrong-token": sign_request("not-the-token", url, form),
        "wrong-host": sign_request(token, f"http://internal:8000{path}?{urlencode(query)}", form),
        "other-query": sign_request(token, f"{settings.app.public_base_url}{path}?survey=other", form),
        "other-form": sign_request(token, url, {**form, "Digits": "5"}),
    }


def test_every_twilio_route_refuses_unsigned_and_badly_signed_requests(
    app, client, session, settings, signed_target, caplog
):
    query, form = signed_target
    before = row_counts(session)
    rules = twilio_rules(app)
    for rule in rules:
        for method in sorted(rule.methods - METHODS_IGNORED):
            for name, signature in _forgeries(settings, rule.rule, query, form).items():
                headers = {} if signature is None else {"X-Twilio-Signature": signature}
                response = client.open(
                    rule.rule, method=method, query_string=query, data=form, headers=headers
                )
                assert response.status_code == 403, (rule.rule, method, name, response.status_code)
                assert response.get_data(as_text=True) == "invalid signature"
    assert row_counts(session) == before
    refused = [r for r in caplog.records if "forged or unsigned request refused" in r.getMessage()]
    assert len(refused) == 7 * sum(len(r.methods - METHODS_IGNORED) for r in rules)


def test_the_same_requests_signed_do_real_work(app, client, session, settings, signed_target):
    """The control: the requests above were refused for their signature, not for their content."""
    query, form = signed_target
    before = row_counts(session)
    for rule in twilio_rules(app):
        url = f"{settings.app.public_base_url}{rule.rule}?{urlencode(query)}"
        headers = {"X-Twilio-Signature": sign_request(settings.twilio.auth_token, url, form)}
        response = client.post(rule.rule, query_string=query, data=form, headers=headers)
        assert response.status_code in (200, 204), (rule.rule, response.status_code)
    assert row_counts(session) != before


def test_allow_listed_routes_guard_themselves(client, settings):
    assert client.post("/api/v1/service-items", json=[]).status_code == 401
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    assert client.get("/healthz").get_json() == {"status": "ok"}


# --- never an answer stored for a forged request (every webhook form, random) ---------------------

FIELDS = [
    "CallSid",
    "MessageSid",
    "Digits",
    "CallStatus",
    "MessageStatus",
    "AnsweredBy",
    "RecordingUrl",
    "RecordingDuration",
    "RecordingStatus",
    "ErrorCode",
    "From",
    "To",
    "Body",
    "CallDuration",
]
values = st.one_of(
    st.text(max_size=30).map(lambda s: s.replace("\x00", "")),
    st.sampled_from(
        [
            "1",
            "4",
            "13#",
            "0",
            "completed",
            "in-progress",
            "delivered",
            "undelivered",
            "TD",
            "4 拖 太慢了",
            "21610",
            "machine_start",
            "CITIZEN",
            "SID",
        ]
    ),
)
forged_signatures = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),  # a header value
    st.sampled_from(["wrong-token", "wrong-host", "other-form"]),
)


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(
        [
            "/twilio/voice",
            "/twilio/voice/gather",
            "/twilio/voice/status",
            "/twilio/voice/recording",
            "/twilio/sms",
            "/twilio/sms/status",
        ]
    ),
    form=st.dictionaries(st.sampled_from(FIELDS), values, max_size=8),
    signature=forged_signatures,
)
def test_a_forged_request_on_any_webhook_stores_nothing(
    app, client, session, settings, signed_target, route, form, signature
):
    query, real = signed_target
    # The citizen's number in any field: a forged request must not get it into a row or a log line.
    form = {
        k: real["From"] if v == "CITIZEN" else real["CallSid"] if v == "SID" else v for k, v in form.items()
    }
    url = f"{settings.app.public_base_url}{route}?{urlencode(query)}"
    token = settings.twilio.auth_token
    forged = {
        "wrong-token": sign_request("not-the-token", url, form),
        "wrong-host": sign_request(
            token, url.replace(settings.app.public_base_url, "http://internal:8000"), form
        ),
        "other-form": sign_request(token, url, {**form, "Digits": "forged"}),
    }.get(signature or "", signature)
    if forged == sign_request(token, url, form):
        return  # a random string cannot be the right signature, but be sure
    before = row_counts(session)
    headers = {} if forged is None else {"X-Twilio-Signature": forged}
    response = client.post(route, query_string=query, data=form, headers=headers)
    assert response.status_code == 403
    assert row_counts(session) == before


def test_a_forged_request_cannot_write_a_phone_number_into_the_log(client, caplog):
    from log_scan import full_numbers, record_text

    forged = {"CallSid": "+8613800138000", "MessageSid": "13800138000"}
    assert client.post("/twilio/voice/status?survey=x", data=forged).status_code == 403
    assert [full_numbers(record_text(r)) for r in caplog.records if full_numbers(record_text(r))] == []


@given(
    st.lists(st.tuples(st.sampled_from(["Digits", "CallSid", "From", "X"]), st.text(max_size=8)), max_size=8),
    st.sampled_from(["", "?survey=abc&seq=1"]),
)
def test_a_form_with_repeated_names_is_checked_as_twilio_signs_it(pairs, query):
    # is_valid_signature hands werkzeug's form to the validator through getall(); the signature
    # covers every value of a repeated name, as the library computes it from the form itself.
    from werkzeug.datastructures import MultiDict

    from ivr.twilio_adapter import is_valid_signature

    url = "https://rv.example.gov.cn/twilio/voice/gather" + query
    form = MultiDict(pairs)
    signature = sign_request("token", url, form)
    assert is_valid_signature("token", url, form, signature)
    assert not is_valid_signature("token", url, MultiDict([*pairs, ("Extra", "1")]), signature)


def test_a_refused_request_logs_the_client_the_proxy_reports(client, caplog):
    # Behind nginx remote_addr is the proxy itself; the client it forwards for is what helps.
    response = client.post("/twilio/voice/gather?survey=x&seq=0", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 403
    refused = [r.getMessage() for r in caplog.records if "forged or unsigned" in r.getMessage()]
    assert refused and "(forwarded for 203.0.113.9)" in refused[0]
