"""The gateway interface the dispatcher calls: place a call, send a text.

Implementations live at the phone-facing edge (`ivr/gateway.py` for Twilio's REST API,
`ivr/simulator/` for the local phone network); the scheduler only knows this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CallRequest:
    """One outbound call of one attempt."""

    survey_token: str
    attempt_id: int
    to: str  # E.164
    from_: str  # E.164 caller id on the account
    language: str = "zh-CN"
    machine_detection: bool = True
    timeout_seconds: int = 30  # ring this long before no-answer


@dataclass(frozen=True)
class SmsRequest:
    """One outbound text of one attempt."""

    survey_token: str
    attempt_id: int
    to: str  # E.164
    from_: str  # E.164 sender on the account
    body: str


@dataclass(frozen=True)
class GatewayResult:
    """What the provider answered: its id for the call or message and its first status."""

    provider_id: str
    status: str  # "queued" as Twilio answers


class GatewayError(Exception):
    """The provider refused or failed the request.

    `code` is the provider's error code (Twilio's 21211 invalid number, 21610 opted out, ...);
    `retryable` is False when trying again cannot help (an invalid number), True for timeouts
    and server errors.
    """

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class Gateway(Protocol):
    """A phone network the dispatcher places calls and texts through."""

    name: str

    def place_call(self, request: CallRequest) -> GatewayResult:
        """Ask the network to dial; return at once with the provider's call id."""
        ...

    def send_sms(self, request: SmsRequest) -> GatewayResult:
        """Ask the network to send a text; return at once with the provider's message id."""
        ...
