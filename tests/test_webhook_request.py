"""The public app's request class parses Twilio's url-encoded forms itself (ivr.webhooks.WebhookRequest):
whatever the body, the form is the one werkzeug's own parser gives, and other bodies go to werkzeug."""

from __future__ import annotations

import io
from urllib.parse import urlencode

from flask import Request
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.webhooks import FORM_URLENCODED, WebhookRequest


def environ(body: bytes, content_type: str | None = FORM_URLENCODED, length: str | None = None) -> dict:
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/twilio/voice/gather",
        "QUERY_STRING": "survey=abc&seq=0",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
    }
    if content_type is not None:
        env["CONTENT_TYPE"] = content_type
    return env


def forms(body: bytes, content_type: str | None = FORM_URLENCODED, length: str | None = None):
    """The form as the webhook request class parses it, and as werkzeug's request does."""
    ours = WebhookRequest(environ(body, content_type, length))
    theirs = Request(environ(body, content_type, length))
    return list(ours.form.items(multi=True)), list(theirs.form.items(multi=True))


def test_a_twilio_form_is_read_into_the_form():
    body = urlencode({"CallSid": "CA" + "0" * 32, "Digits": "13#", "SpeechResult": "很好", "Empty": ""})
    request = WebhookRequest(environ(body.encode()))
    assert request.form["Digits"] == "13#"
    assert request.form["SpeechResult"] == "很好"
    assert request.form["Empty"] == ""  # blank values are kept: the signature covers them
    assert request.files == {} and request.get_data() == b""  # the body was consumed, as werkzeug does


def test_repeated_keys_keep_every_value_in_order():
    ours, theirs = forms(b"a=1&a=2&b=%20x+y&a=3")
    assert ours == theirs
    request = WebhookRequest(environ(b"a=1&a=2&b=%20x+y&a=3"))
    assert request.form.getlist("a") == ["1", "2", "3"] and request.form["b"] == " x y"


def test_a_body_that_is_not_utf8_gives_an_empty_form_as_werkzeug_does():
    ours, theirs = forms(b"Body=\xff\xfe&Digits=1")
    assert ours == theirs == []


def test_undecodable_escapes_are_kept_percent_encoded():
    ours, theirs = forms(b"Body=%FF%FEok&Digits=1")
    assert ours == theirs and ("Body", "%FF%FEok") in ours


def test_a_charset_parameter_changes_nothing(monkeypatch):
    # werkzeug decodes UTF-8 whatever the charset parameter says; so does the direct parse, which
    # takes such bodies too (werkzeug's parser is not called).
    for content_type in (FORM_URLENCODED + "; charset=UTF-8", FORM_URLENCODED + ";charset=latin-1"):
        ours, theirs = forms(b"Body=%E5%BE%88%E5%A5%BD&Digits=1", content_type)
        assert ours == theirs and ("Body", "很好") in ours
    monkeypatch.setattr(Request, "make_form_data_parser", lambda _self: 1 / 0)
    request = WebhookRequest(environ(b"Digits=1", FORM_URLENCODED + "; charset=UTF-8"))
    assert request.form["Digits"] == "1"


def test_other_bodies_go_to_werkzeug():
    # Not Twilio's content type, or no usable length: werkzeug decides.
    assert forms(b"Digits=1", "text/plain") == ([], [])
    assert forms(b"Digits=1", FORM_URLENCODED + "x") == ([], [])
    assert forms(b"Digits=1", length="") == ([], [])
    assert forms(b"Digits=1", length="-1") == ([], [])


def test_a_body_beyond_the_apps_limit_is_refused_as_werkzeug_refuses_it():
    class Limited(WebhookRequest):
        max_content_length = 4

    request = Limited(environ(b"Digits=1234"))
    try:
        request.form
    except Exception as exc:  # noqa: BLE001 - the same error werkzeug raises
        assert getattr(exc, "code", None) == 413
    else:
        raise AssertionError("an oversized body was parsed")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_body_parses_as_werkzeug_parses_it(body):
    ours, theirs = forms(body)
    assert ours == theirs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=20)), max_size=8))
def test_any_encoded_form_parses_as_werkzeug_parses_it(pairs):
    ours, theirs = forms(urlencode(pairs).encode())
    assert ours == theirs


def test_the_public_app_uses_it(session_factory):
    from ivr.app import create_app
    from models.settings import load_settings

    app = create_app(load_settings(env={}), session_factory=session_factory)
    assert app.request_class is WebhookRequest


def test_a_webhook_reads_the_request_itself_not_flasks_proxy(session_factory):
    # ivr.web.current_request: attributes read through flask.request cost a failed look-up each.
    from flask import request

    from ivr import web
    from ivr.app import create_app
    from models.settings import load_settings

    app = create_app(load_settings(env={}), session_factory=session_factory)
    with app.test_request_context("/twilio/voice/gather?seq=1", method="POST", data={"Digits": "1"}):
        current = web.current_request()
        assert type(current) is WebhookRequest
        assert current is request._get_current_object()
        assert current.form["Digits"] == "1"
