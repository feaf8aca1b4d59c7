"""Random signed forms on every voice endpoint: never a 5xx, never a trace."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELDS = [
    "CallSid",
    "Digits",
    "CallStatus",
    "AnsweredBy",
    "RecordingUrl",
    "RecordingDuration",
    "RecordingStatus",
    "CallDuration",
    "ErrorCode",
    "From",
    "To",
    "SpeechResult",
]
values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "1",
            "4",
            "13#",
            "#",
            "0",
            "8",
            "9",
            "hangup",
            "completed",
            "busy",
            "no-answer",
            "machine_start",
            "human",
            "-5",
            "1e9",
            "nan",
            "in-progress",
        ]
    ),
)
forms = st.dictionaries(st.sampled_from(FIELDS), values, max_size=8)
queries = st.fixed_dictionaries(
    {},
    optional={
        "survey": st.one_of(st.text(max_size=20), st.just("TOKEN")),
        "attempt": st.one_of(st.text(max_size=6), st.just("ATTEMPT"), st.integers(-5, 10**12).map(str)),
        "seq": st.one_of(st.text(max_size=4), st.integers(-1, 50).map(str)),
    },
)
paths = st.sampled_from(
    ["/twilio/voice", "/twilio/voice/gather", "/twilio/voice/status", "/twilio/voice/recording"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, query=queries, form=forms)
def test_random_signed_voice_forms_never_get_a_server_error(
    twilio_post, create_survey, caplog, path, query, form
):
    from urllib.parse import urlencode

    caplog.clear()

    survey, attempt = create_survey()
    query = {
        k: (survey.token if v == "TOKEN" else str(attempt.id) if v == "ATTEMPT" else v)
        for k, v in query.items()
    }
    # Twilio never sends NUL characters; werkzeug would refuse them before our code runs.
    form = {k: v.replace("\x00", "") for k, v in form.items()}
    url = path + ("?" + urlencode(query) if query else "")
    response = twilio_post(url, form)
    assert response.status_code < 500
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    if response.status_code == 200:
        assert body.startswith("<?xml")
    # The apology path hides exceptions from Twilio; it must not be hiding a bug here.
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
