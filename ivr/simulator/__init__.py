"""The local phone network of DESIGN §7: a simulated Twilio account, its citizens and its gateway."""

from ivr.simulator.gateway import SimulatedGateway
from ivr.simulator.network import (
    CALL_EVENTS,
    CallRecord,
    PhoneNetwork,
    Recording,
    SmsRecord,
    WebhookRequest,
    parse_message_replies,
    parse_twiml,
)
from ivr.simulator.personas import (
    HANGUP,
    GatherSpec,
    HangUpAfter,
    Persona,
    RandomPersona,
    RecordSpec,
    ScriptedPersona,
    Speech,
    TerminalPersona,
)
from ivr.simulator.transport import FlaskTransport, HttpTransport, Transport, TransportError

__all__ = [
    "CALL_EVENTS",
    "HANGUP",
    "CallRecord",
    "FlaskTransport",
    "GatherSpec",
    "HangUpAfter",
    "HttpTransport",
    "Persona",
    "PhoneNetwork",
    "RandomPersona",
    "RecordSpec",
    "Recording",
    "ScriptedPersona",
    "SimulatedGateway",
    "SmsRecord",
    "Speech",
    "TerminalPersona",
    "Transport",
    "TransportError",
    "WebhookRequest",
    "parse_message_replies",
    "parse_twiml",
]
