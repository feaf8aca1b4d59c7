"""What every Twilio webhook does first and last: check the signature, log one line, never leak a trace."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request

from ivr import web
from ivr.twilio_adapter import is_valid_signature

log = logging.getLogger("returnvisit.webhooks")
TWIML = "application/xml"


def signed_url() -> str:
    """Return the URL Twilio signed: the public base URL plus this request's path and query."""
    base = web.settings().app.public_base_url
    query = request.query_string.decode("latin-1")
    return f"{base}{request.path}" + (f"?{query}" if query else "")


def signature_ok() -> bool:
    """Return whether X-Twilio-Signature is valid (or the check is off in development)."""
    settings = web.settings()
    if not settings.twilio.validate_signatures:
        return True  # refused in production by load_settings
    return is_valid_signature(
        settings.twilio.auth_token,
        signed_url(),
        request.form,
        request.headers.get("X-Twilio-Signature"),
    )


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
            sid = request.form.get("CallSid") or request.form.get("MessageSid") or "-"
            if not signature_ok():
                log.warning(
                    "forged or unsigned request refused: %s %s sid=%s from %s",
                    request.method,
                    request.path,
                    sid,
                    request.remote_addr,
                )
                return Response("invalid signature", status=403, mimetype="text/plain")
            try:
                response = view(*args, **kwargs)
            except Exception:
                # The caller hears an apology and the call ends; Twilio never sees a trace.
                log.exception("webhook %s failed sid=%s", request.path, sid)
                response = on_error()
            if current_app.debug or log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s sid=%s survey=%s status=%s %.1fms",
                    request.method,
                    request.path,
                    sid,
                    request.args.get("survey", "-")[:8],
                    response.status_code,
                    (time.perf_counter() - started) * 1000,
                )
            return response

        return wrapper

    return decorate
