"""TwiML built once and filled in (ivr/twilio_adapter.py) is what twilio's builder writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from ivr.twilio_adapter import render_message


def _built_by_twilio(texts: list[str]) -> str:
    response = MessagingResponse()
    if texts:
        response.message("\n".join(texts))
    return str(response)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",))), max_size=3))
def test_an_sms_reply_is_the_document_twilios_builder_writes(texts):
    assert render_message(texts) == _built_by_twilio(texts)


def test_markup_in_a_reply_is_escaped():
    body = render_message(['回复 <1> & "2"', "__returnvisit_message__"])
    assert "&lt;1&gt; &amp;" in body and "<1>" not in body
    assert body == _built_by_twilio(['回复 <1> & "2"', "__returnvisit_message__"])
