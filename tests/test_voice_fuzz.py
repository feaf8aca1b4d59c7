"""Random signed forms on every voice endpoint: never a 5xx, never a trace."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
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


# The stronger test: a real call first (the answer webhook, then a few valid keys), so the random form
# reaches the engine at the step the call is at: the rating, the categories, the recorded comment, or a
# call that already ended.
BASE = "http://127.0.0.1:5000"  # the test settings' public base URL
RATING_KEYS = ["1", "3", "4", "5", "9", "7", ""]  # 7 or silence once is invalid: the call goes on
CATEGORY_KEYS = ["13#", "2#", "6", "123456#", "9"]
call_prefixes = st.one_of(
    st.just(()),
    st.tuples(st.sampled_from(RATING_KEYS)),
    st.tuples(st.sampled_from(["4", "5"]), st.sampled_from(CATEGORY_KEYS)),  # now at the comment
    st.tuples(st.sampled_from(["9", "7", ""]), st.sampled_from(RATING_KEYS)),
)
keys = st.one_of(
    st.sampled_from(
        ["", " ", "#", "*", "##", "*#", "1*", "#1", "13#", "7#", "0", "8", "9", "hangup", "١", "４", "1\n"]
    ),
    st.text(alphabet="0123456789*#", max_size=12),
    st.text(max_size=12),
    st.text(min_size=200, max_size=400),
)
numbers = st.one_of(
    st.sampled_from(["", "0", "12", "-5", "1e9", "1e400", "nan", "inf", "-inf", "Infinity", "٣", "3.5"]),
    st.integers(-(10**20), 10**20).map(str),
    st.text(max_size=10),
)
EXTRA_FIELDS = ["AnsweredBy", "ErrorCode", "SpeechResult", "RecordingSid", "Direction", "From", "To"]
absent = st.none()
RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1"
random_call_forms = st.fixed_dictionaries(
    {
        "Digits": st.one_of(absent, keys),
        "RecordingUrl": st.one_of(
            absent, st.just(RECORDING_URL), st.just(RECORDING_URL + "x" * 500), st.text(max_size=40)
        ),
        "RecordingDuration": st.one_of(absent, numbers),
        "RecordingStatus": st.one_of(absent, st.sampled_from(["completed", "in-progress", "absent", ""])),
        "CallStatus": st.one_of(
            st.sampled_from(["in-progress", "completed", "busy", "no-answer", "failed", "canceled"]), values
        ),
        "CallDuration": st.one_of(absent, numbers),
        "extra": st.dictionaries(st.sampled_from(EXTRA_FIELDS), values, max_size=3),
    }
)


def _call_form(attempt, **fields: str) -> dict[str, str]:
    form = {
        "CallSid": attempt.provider_id,
        "AccountSid": "AC" + "0" * 32,
        "From": "+12025550100",
        "To": "+8613800130001",
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
    }
    form.update(fields)
    return form


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=call_prefixes, random_form=random_call_forms)
@example(  # a recorded comment whose duration overflows an int: the recording and status callbacks too
    prefix=("4", "13#"),
    random_form={
        "Digits": "#",
        "RecordingUrl": RECORDING_URL,
        "RecordingDuration": "inf",
        "RecordingStatus": None,
        "CallStatus": "completed",
        "CallDuration": "1e400",
        "extra": {},
    },
)
@example(  # durations beyond the database's integer columns (PostgreSQL's integer ends at 2**31 - 1)
    prefix=("5", "2#"),
    random_form={
        "Digits": "#",
        "RecordingUrl": RECORDING_URL,
        "RecordingDuration": "1e20",
        "RecordingStatus": "completed",
        "CallStatus": "completed",
        "CallDuration": "3000000000",
        "extra": {},
    },
)
@example(  # text fields longer than their columns (PostgreSQL refuses them) and an overlong recording URL
    prefix=("4", "13#"),
    random_form={
        "Digits": "#",
        "RecordingUrl": RECORDING_URL + "x" * 500,
        "RecordingDuration": "12",
        "RecordingStatus": "completed",
        "CallStatus": "failed",
        "CallDuration": "3",
        "extra": {"ErrorCode": "0" * 21, "AnsweredBy": "m" * 31},
    },
)
def test_random_signed_forms_at_a_real_call_step_never_get_a_server_error(
    twilio_post, create_survey, caplog, prefix, random_form
):
    import re

    from ivr.urls import recording_status_url, voice_gather_url, voice_status_url, voice_url

    def post(url: str, form: dict[str, str]):
        return twilio_post(url[len(BASE) :], form)

    caplog.clear()
    survey, attempt = create_survey()
    twiml = post(voice_url(BASE, survey.token, attempt.id), _call_form(attempt)).get_data(as_text=True)
    for seq, digits in enumerate(prefix):
        response = post(voice_gather_url(BASE, survey.token, seq), _call_form(attempt, Digits=digits))
        assert response.status_code == 200
        twiml = response.get_data(as_text=True)
    assert not _errors(caplog), caplog.text
    # The current step's action URL, where Twilio posts next (a call that ended has none: the next seq).
    actions = re.findall(r"/twilio/voice/gather\?survey=[^&\"]+&amp;seq=(\d+)", twiml)
    seq = int(actions[-1]) if actions else len(prefix)

    fields = {k: v for k, v in random_form.items() if k != "extra" and v is not None}
    form = _call_form(attempt, **random_form["extra"], **fields)
    # Twilio never sends NUL characters; werkzeug would refuse them before our code runs.
    form = {k: v.replace("\x00", "") for k, v in form.items()}
    targets = [
        (voice_gather_url(BASE, survey.token, seq), True),
        (recording_status_url(BASE, survey.token), False),
        (voice_status_url(BASE, survey.token, attempt.id), False),
    ]
    for url, twiml_expected in targets:
        response = post(url, form)
        body = response.get_data(as_text=True)
        assert response.status_code < 500, (url, form, response.status_code)
        assert "Traceback" not in body
        if twiml_expected:
            assert response.status_code == 200 and response.mimetype == "application/xml", body
            assert body.startswith("<?xml") and "<Response>" in body, body
        # The apology (or a bare 503) hides an exception from Twilio; it must not be hiding a bug here.
        assert not _errors(caplog), (url, form, caplog.text)
