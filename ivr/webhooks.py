"""What every Twilio webhook does first and last: check the signature, never leak a trace, and log one
line (CallSid or MessageSid, survey token prefix, status, latency) and observe its latency."""

from __future__ import annotations

import functools
import io
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" decoding error handler
from flask import Request, Response
from werkzeug.datastructures import MultiDict

from ivr import web
from ivr.observability import observe_webhook
from ivr.twilio_adapter import is_valid_signature

log = logging.getLogger("returnvisit.webhooks")
TWIML = "application/xml"
# Twilio's ids: two capital letters and 32 hex digits (CA… calls, SM… and MM… messages).
_PROVIDER_ID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}", re.ASCII)


# Twilio posts its webhook parameters in this form (UTF-8, percent-encoded), maybe with a charset
# parameter, which werkzeug's parser does not read either (it always decodes UTF-8).
FORM_URLENCODED = "application/x-www-form-urlencoded"
_FORM_WITH_PARAMETERS = FORM_URLENCODED + ";"


class WebhookRequest(Request):
    """The public app's request: a Twilio form body is parsed at once, the rest as Flask does.

    Werkzeug reads a form through its general parser (content type and length parsed into options,
    a limited stream, a parser object per request); for a short url-encoded body of known length,
    as Twilio sends, that is several times the cost of parsing it, and every webhook reads its form
    (the signature covers every parameter). The parse is werkzeug's own for this content type:
    UTF-8 text, blank values kept, undecodable bytes percent-encoded again, a body that is not
    UTF-8 an empty form. Anything else (another content type, a chunked or oversized body) goes to
    werkzeug unchanged.
    """

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        environ = self.environ
        length = environ.get("CONTENT_LENGTH", "")
        content_type = environ.get("CONTENT_TYPE", "")
        url_encoded = content_type == FORM_URLENCODED or content_type.startswith(_FORM_WITH_PARAMETERS)
        limit = self.max_content_length
        size = int(length) if length.isdigit() else -1
        if not url_encoded or size < 0 or (limit is not None and size > limit):
            super()._load_form_data()  # werkzeug's parser, or its 413 for a body beyond the limit
            return
        body = environ["wsgi.input"].read(size) if size else b""
        try:
            items = parse_qsl(body.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
        except ValueError:  # not UTF-8: werkzeug's parser gives an empty form too
            items = []
        self.__dict__.update(stream=io.BytesIO(), form=MultiDict(items), files=MultiDict())


def signed_url(req: Request) -> str:
    """Return the URL Twilio signed: the public base URL plus the request's path and query."""
    base = web.settings().app.public_base_url
    query = req.query_string.decode("latin-1")
    return f"{base}{req.path}" + (f"?{query}" if query else "")


def signature_ok(req: Request) -> bool:
    """Return whether the request's X-Twilio-Signature is valid (or the check is off in development)."""
    settings = web.settings()
    if not settings.twilio.validate_signatures:
        return True  # refused in production by load_settings
    return is_valid_signature(
        settings.twilio.auth_token,
        signed_url(req),
        req.form,
        req.headers.get("X-Twilio-Signature"),
    )


def form_text(form: MultiDict[str, str], name: str, length: int) -> str | None:
    """A short text field Twilio sends (ErrorCode, AnsweredBy), cut to `length`; None when blank.

    What a webhook stores of a signed but garbled or forged form must fit its column: PostgreSQL
    refuses a longer value or a NUL (SQLite stores both), and the callback would fail for good.
    """
    text = form.get(name, "").replace("\x00", "")
    return text.strip()[:length] or None


def twiml_response(body: str, status: int = 200) -> Response:
    """Return a TwiML document response."""
    return Response(body, status=status, mimetype=TWIML)


def no_content() -> Response:
    """Answer a status callback that needs no TwiML."""
    return Response("", status=204)


def unavailable() -> Response:
    """Answer a status callback that could not be recorded (Twilio may retry it); never a trace."""
    return Response("", status=503)


def twilio_webhook(
    on_error: Callable[[], Response],
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Wrap a Twilio webhook: 403 on a bad signature, `on_error()` instead of any exception."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            started = time.perf_counter()
            req = web.current_request()
            if not signature_ok(req):
                response = Response("invalid signature", status=403, mimetype="text/plain")
                # Behind the proxy remote_addr is the proxy: the client it reports is logged beside
                # it (as reported, for whoever investigates; nothing is decided on it).
                log.warning(
                    "forged or unsigned request refused: %s %s from %s (forwarded for %s)",
                    req.method,
                    req.path,
                    req.remote_addr,
                    req.headers.get("X-Forwarded-For", "-")[:200],
                    extra=_ids(req),
                )
                _served(req, response, started, log_line=False)
                return response
            try:
                response = view(*args, **kwargs)
            except Exception:
                # The caller hears an apology and the call ends; Twilio never sees a trace.
                log.exception("webhook %s failed", req.path, extra=_ids(req))
                response = on_error()
            _served(req, response, started)
            return response

        return wrapper

    return decorate


def _ids(req: Request) -> dict[str, str]:
    """Return the provider ids and survey token prefix of a request, as log fields."""
    form = req.form
    fields = {"survey": req.args.get("survey", "-")[:8]}
    # Looked up with `in` first: werkzeug's get() raises and catches an HTTP error for a name that
    # is not there (a voice form has no MessageSid, a message's no CallSid).
    if "CallSid" in form and (call_sid := form["CallSid"]):
        fields["call_sid"] = _sid(call_sid)
    if "MessageSid" in form and (message_sid := form["MessageSid"]):
        fields["message_sid"] = _sid(message_sid)
    return fields


def _sid(value: str) -> str:
    # A forged request may put anything there (a phone number, a long text): only a real id is logged.
    return value if _PROVIDER_ID.fullmatch(value) else "malformed"


def _served(req: Request, response: Response, started: float, *, log_line: bool = True) -> None:
    """Observe the latency and status of an answered webhook; log its one line."""
    seconds = time.perf_counter() - started
    endpoint = req.endpoint or "unknown"
    observe_webhook(endpoint, response.status_code, seconds)
    if log_line and log.isEnabledFor(logging.INFO):
        fields: dict[str, Any] = _ids(req)
        fields.update(endpoint=endpoint, status=response.status_code, latency_ms=round(seconds * 1000, 2))
        log.info(
            "%s %s %s %.1fms",
            req.method,
            req.path,
            response.status_code,
            seconds * 1000,
            extra=fields,
        )
