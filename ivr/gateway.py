"""The Twilio gateway: places calls and sends texts through Twilio's REST API (or a compatible one).

With `twilio.api_base_url` set, every REST request goes to that base URL instead of Twilio's hosts
(same paths), so a Twilio-compatible provider or a local stand-in can be used.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ivr.urls import sms_status_url, voice_status_url, voice_url
from models.settings import Settings
from scheduler.gateway import CallRequest, GatewayError, GatewayResult, SmsRequest

# Twilio errors that trying again cannot fix: the number is invalid, unreachable, not a mobile,
# not permitted, or the citizen unsubscribed.
NOT_RETRYABLE_CODES = frozenset({21211, 21214, 21217, 21401, 21407, 21408, 21610, 21612, 21614})
CALL_STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
REQUEST_TIMEOUT_SECONDS = 15.0


class RebasedHttpClient(TwilioHttpClient):
    """Twilio's HTTP client, sending every request to another base URL (same paths and query)."""

    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout)
        self.base = urlsplit(base_url.rstrip("/"))

    def rebase(self, url: str) -> str:
        """Return the URL with the configured scheme, host and path prefix."""
        parts = urlsplit(url)
        path = self.base.path + parts.path
        return urlunsplit((self.base.scheme, self.base.netloc, path, parts.query, parts.fragment))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, self.rebase(url), *args, **kwargs)


def gateway_error(exc: Exception) -> GatewayError:
    """Translate an SDK or transport failure into a GatewayError with a code and retryability."""
    if isinstance(exc, TwilioRestException):
        status = int(exc.status or 0)
        code = str(exc.code) if exc.code else f"http-{status}"
        if exc.code in NOT_RETRYABLE_CODES:
            retryable = False
        elif status == 429:  # too many requests: slow down, then try again
            retryable = True
        else:
            retryable = not 400 <= status < 500
        return GatewayError(f"Twilio {status} {code}: {exc.msg}", code=code, retryable=retryable)
    if isinstance(exc, requests.Timeout):
        return GatewayError(f"Twilio request timed out: {exc}", code="timeout", retryable=True)
    if isinstance(exc, requests.RequestException):
        return GatewayError(f"Twilio unreachable: {exc}", code="connection", retryable=True)
    return GatewayError(f"Twilio client error: {exc}", code="client", retryable=True)


class TwilioGateway:
    """Places calls and sends texts with the twilio SDK; webhooks point at the public base URL."""

    name = "twilio"

    def __init__(self, settings: Settings, *, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        twilio = settings.twilio
        http_client = (
            RebasedHttpClient(twilio.api_base_url, timeout)
            if twilio.api_base_url
            else TwilioHttpClient(timeout=timeout)
        )
        # environment={}: the settings, not TWILIO_EDGE / TWILIO_REGION variables, choose the host.
        self.client = Client(twilio.account_sid, twilio.auth_token, http_client=http_client, environment={})
        self.http_client = http_client
        self.public_base_url = settings.app.public_base_url

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        if self.http_client.session is not None:
            self.http_client.session.close()

    def place_call(self, request: CallRequest) -> GatewayResult:
        """Ask Twilio to dial; status callbacks for every event come to the webhook app."""
        base, token, attempt = self.public_base_url, request.survey_token, request.attempt_id
        options: dict[str, Any] = {}
        if request.machine_detection:
            options["machine_detection"] = "Enable"
        try:
            call = self.client.calls.create(
                to=request.to,
                from_=request.from_,
                url=voice_url(base, token, attempt, request.language),
                method="POST",
                status_callback=voice_status_url(base, token, attempt),
                status_callback_event=CALL_STATUS_EVENTS,
                status_callback_method="POST",
                timeout=request.timeout_seconds,
                **options,
            )
        except (TwilioException, requests.RequestException) as exc:
            raise gateway_error(exc) from exc
        return GatewayResult(provider_id=str(call.sid), status=str(call.status or "queued"))

    def send_sms(self, request: SmsRequest) -> GatewayResult:
        """Ask Twilio to send a text; delivery callbacks come to the webhook app."""
        try:
            message = self.client.messages.create(
                to=request.to,
                from_=request.from_,
                body=request.body,
                status_callback=sms_status_url(
                    self.public_base_url, request.survey_token, request.attempt_id
                ),
            )
        except (TwilioException, requests.RequestException) as exc:
            raise gateway_error(exc) from exc
        return GatewayResult(provider_id=str(message.sid), status=str(message.status or "queued"))
