"""The pure survey engine: scripts as data, and (state, input) -> (state, prompts, answers).

Imports no Flask, twilio or database code. `start` opens a call or survey text, `step`
applies one input; the state they return is a JSON-serialisable dict the caller stores.
"""

from ivr.script.definition import AskWhen, Flow, ItemContext, Keys, Script, Verdict
from ivr.script.engine import (
    AnswerEvent,
    Ask,
    Digits,
    Hangup,
    Input,
    Recording,
    RecordingSkipped,
    SmsReply,
    StepResult,
    awaiting,
    question,
    start,
    step,
)
from ivr.script.loader import ScriptError, default_script, load_script, parse_script

__all__ = [
    "AnswerEvent",
    "Ask",
    "AskWhen",
    "Digits",
    "Flow",
    "Hangup",
    "Input",
    "ItemContext",
    "Keys",
    "Recording",
    "RecordingSkipped",
    "Script",
    "ScriptError",
    "SmsReply",
    "StepResult",
    "Verdict",
    "awaiting",
    "default_script",
    "load_script",
    "parse_script",
    "question",
    "start",
    "step",
]
