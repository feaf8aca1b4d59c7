"""The webhook URLs (ivr/urls.py): their query is urlencode's own text, so a URL Twilio calls is the URL
whose signature the webhook checks."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr import urls


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=40),
    st.one_of(st.integers(), st.text(max_size=20)),
    st.one_of(st.none(), st.integers(min_value=0)),
)
def test_the_query_is_urlencodes_text(token, second, third):
    url = urls._url("https://rv.example.gov/", "/twilio/voice", survey=token, seq=second, attempt=third)
    params = {"survey": token, "seq": second, "attempt": third}
    query = urlencode({key: value for key, value in params.items() if value is not None})
    assert url == f"https://rv.example.gov/twilio/voice?{query}"


def test_each_url_names_its_survey_and_step():
    base = "https://rv.example.gov"
    assert urls.voice_gather_url(base, "tok en/1", 3) == f"{base}/twilio/voice/gather?survey=tok+en%2F1&seq=3"
    assert urls.voice_url(base, "t", 7) == f"{base}/twilio/voice?survey=t&attempt=7"
    assert urls.sms_inbound_url(base + "/") == f"{base}/twilio/sms"
