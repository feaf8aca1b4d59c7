"""The baseline of the webhook benchmarks: a bare Flask endpoint returning a fixed TwiML string."""

from flask import Flask, Response

TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/twilio/voice/gather?seq=1" '
    'numDigits="1" timeout="8"><Say voice="Polly.Zhiyu" language="cmn-CN">请按1</Say></Gather>'
    '<Redirect method="POST">/twilio/voice/gather?seq=1</Redirect></Response>'
)
app = Flask(__name__)


@app.post("/twilio/voice/gather")
def gather() -> Response:
    return Response(TWIML, mimetype="application/xml")
