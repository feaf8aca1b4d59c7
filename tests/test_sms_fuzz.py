"""Random signed forms on both SMS endpoints: never a 5xx, never a trace, never an ERROR log."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ivr.sms_outbound import compose_sms

OURS = "+12025550100"
bodies = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["1", "４", "4 拖 太慢了", "1 2", "TD", "退订", "ＳＴＯＰ", "START", "订阅", "帮助",
                     "HELP", "8", "五分", "😀", "\u200b\u202e", "\r\n\t", "拖" * 1600, "", "是的", "no"]),
)
phones = st.one_of(
    st.sampled_from(["CITIZEN", "CITIZEN_NATIONAL", "+8613900009999", "+12025550100", "", "abc", "10086",
                     "+86 138 0013 ０００1", "sip:bob@example.com", "+" + "9" * 30]),
    st.text(max_size=25),
)
sids = st.one_of(st.sampled_from(["SAME", "SM" + "0" * 32, ""]), st.text(max_size=70))
inbound_forms = st.fixed_dictionaries(
    {"Body": bodies, "From": phones},
    optional={"To": st.one_of(st.just(OURS), phones), "MessageSid": sids, "NumMedia": st.text(max_size=3)},
)
status_forms = st.fixed_dictionaries(
    {},
    optional={
        "MessageSid": sids,
        "MessageStatus": st.one_of(
            st.sampled_from(["queued", "sent", "delivered", "undelivered", "failed", "read", "canceled",
                             "accepted", "sending", ""]),
            st.text(max_size=12),
        ),
        "ErrorCode": st.one_of(st.sampled_from(["21610", "21211", "21614", "30003", "30008", ""]),
                               st.text(max_size=30)),
        "SmsStatus": st.text(max_size=12),
        "From": phones,
        "To": phones,
    },
)
queries = st.fixed_dictionaries(
    {},
    optional={
        "survey": st.one_of(st.text(max_size=20), st.just("TOKEN"), st.just("TOKEN\x00")),
        "attempt": st.one_of(st.text(max_size=6), st.just("ATTEMPT"), st.integers(-5, 10**12).map(str),
                             st.just(str(2**31))),
    },
)


FUZZ = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _fill(form: dict[str, str], survey, attempt) -> dict[str, str]:
    phone = survey.item.phone_e164
    names = {"CITIZEN": phone, "CITIZEN_NATIONAL": phone.removeprefix("+86"), "SAME": attempt.provider_id}
    # Twilio never sends NUL characters; werkzeug would refuse them before our code runs.
    return {k: names.get(v, v).replace("\x00", "") for k, v in form.items()}


def _check(response, caplog) -> None:
    assert response.status_code < 500
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    if response.status_code == 200:
        assert body.startswith("<?xml") and "<Response" in body
    # The webhooks hide exceptions from Twilio; they must not be hiding a bug here.
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


@FUZZ
@given(form=inbound_forms, second=st.one_of(st.none(), bodies))
def test_random_signed_inbound_texts_never_get_a_server_error(
    session, settings, twilio_post, create_survey, caplog, form, second
):
    caplog.clear()
    survey, attempt = create_survey("sms")
    compose_sms(session, survey, settings)
    session.flush()
    form = _fill(form, survey, attempt)
    _check(twilio_post("/twilio/sms", form), caplog)
    if second is not None:  # a follow-up in the same conversation (or the same sid again)
        _check(twilio_post("/twilio/sms", {**form, "Body": second.replace("\x00", "")}), caplog)


@FUZZ
@given(query=queries, forms=st.lists(status_forms, min_size=1, max_size=3))
def test_random_signed_status_callbacks_never_get_a_server_error(
    session, settings, twilio_post, create_survey, create_campaign, caplog, query, forms
):
    caplog.clear()
    campaign = create_campaign(config={"name": "fuzz", "channels": ["voice", "sms"]})
    survey, attempt = create_survey("sms", campaign=campaign)
    compose_sms(session, survey, settings)
    session.flush()
    names = {"TOKEN": survey.token, "TOKEN\x00": survey.token + "\x00", "ATTEMPT": str(attempt.id)}
    query = {k: names.get(v, v) for k, v in query.items()}
    url = "/twilio/sms/status" + ("?" + urlencode(query) if query else "")
    for form in forms:
        _check(twilio_post(url, _fill(form, survey, attempt)), caplog)
