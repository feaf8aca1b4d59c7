"""Logging for every entry point: JSON lines off a terminal, readable lines on one, phone numbers masked.

`setup_logging` is the one place the root logger is configured: the CLI (and so the scheduler and
`make demo`) and both gunicorn entry points call it. Pure standard library plus python-json-logger
(with orjson); no Flask here.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import IO, Any

from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.orjson import OrjsonFormatter

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Phone numbers as they show up in text: + and 7 to 15 digits, maybe grouped by spaces or dashes; a CN
# mobile written 3-4-4; an area-coded landline with a dash; any bare run of 8 to 15 digits (mobiles,
# landlines with area code, 86 / 0086 prefixes). A letter, digit or underscore next to a run, or a
# decimal point, means it is part of something else (a CallSid, a token, a decimal) — except a URL's
# percent-escape ("q=%2B86138…", "next=…q%3D138…"); a "+" may stand for a URL's space ("138+0013+8000").
# Local numbers of 7 digits stay readable, and so do counts up to 9,999,999.
_PHONE = re.compile(
    r"(?:(?<![\w+])|(?<=%[0-9A-Fa-f]{2}))(?<!\d\.)(?:"
    r"\+\d[\d -]{5,18}\d"
    r"|1[3-9]\d[ +-]\d{4}[ +-]\d{4}"
    r"|0\d{2,3}-\d{7,8}"
    r"|\d{8,15}"
    r")(?!\w|\.\d)",
    re.ASCII,
)
# Every _PHONE match holds a run of 7 or more digits, spaces, pluses and dashes that starts and ends with a
# digit (ASCII, as _PHONE): a text without one has no phone number (the webhooks' own log lines).
_DIGIT_RUN = re.compile(r"[0-9][0-9 +-]{5,}[0-9]")
# Country prefixes kept in clear in front of a masked number.
_PREFIXES = ("+86", "0086", "+")

_OURS = "_returnvisit_handler"  # marks the handler setup_logging installed, so a second call replaces it


def mask_phones(text: str) -> str:
    """Replace every full phone number in `text` by a masked one (138****1234)."""
    if _DIGIT_RUN.search(text) is None:  # most texts: one scan in C
        return text
    return _PHONE.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    number = match.group(0)
    prefix = next((p for p in _PREFIXES if number.startswith(p)), "")
    digits = re.sub(r"\D", "", number[len(prefix) :])
    size = len(digits)
    if not 7 <= size <= 15:
        return number
    keep_head = 3 if size >= 10 else 0
    return prefix + digits[:keep_head] + "*" * (size - keep_head - 4) + digits[size - 4 :]


class PhoneMaskFilter(logging.Filter):
    """Mask phone numbers in a record's message, arguments, extra fields and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call must still be logged, masked
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = mask_phones(message), None
        fields = record.__dict__
        for key in fields.keys() - _RECORD_ATTRS:  # the extra fields
            value = fields[key]
            if isinstance(value, str):
                fields[key] = mask_phones(value)
        if record.exc_info:
            # SQL errors quote their parameters: format the traceback now and keep only the masked text.
            record.exc_text = mask_phones(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask_phones(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phones(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    """One readable line: time, level, logger, message, then any extra fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(
            f"{key}={value}" for key, value in record.__dict__.items() if key not in _RECORD_ATTRS
        )
        if not extra:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} [{extra}]{newline}{rest}"


class _JsonLines(OrjsonFormatter):
    # orjson encodes a line in a fraction of the standard library's time (each webhook logs one).
    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {"time": log_data.pop("time", None), **log_data}  # the time first, as in the text lines

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        try:
            return str(super().jsonify_log_record(log_data))
        except TypeError:  # what orjson refuses (an integer beyond 64 bits) still makes a line
            return json.dumps(log_data, cls=JsonEncoder, ensure_ascii=False)


def json_formatter() -> logging.Formatter:
    """Return the formatter of JSON lines: time, level, logger, message and every extra field."""
    return _JsonLines(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601 in UTC with microseconds; text stays UTF-8, never \u escapes
    )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write to whatever sys.stderr is at the time (a test runner may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_logging(
    level: int | str = logging.INFO,
    *,
    fmt: str = "auto",
    stream: IO[str] | None = None,
) -> logging.Handler | None:
    """Send the root logger's records to stderr (or `stream`) as JSON or text lines, phones masked.

    fmt is "json", "text" or "auto" (text on a terminal, JSON otherwise). Calling it again replaces
    the handler it installed. When the host process already put its own handlers on the root logger
    (pytest, a logging config file given to gunicorn) and no stream is given, those handlers are kept
    and only get the phone mask; nothing is added and None is returned.
    """
    if fmt not in ("json", "text", "auto"):
        raise ValueError(f"unknown log format {fmt!r} (json, text or auto)")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()
    # Newer Alembic releases (1.20 here) log each of their plugins being set up, at INFO, once a
    # process: seven lines before `init` or `demo` says anything. The migrations' own lines stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # gunicorn's own loggers do not propagate to the root logger: their handlers get the mask too.
    foreign = list(root.handlers) + [
        h for name in ("gunicorn.error", "gunicorn.access") for h in logging.getLogger(name).handlers
    ]
    for handler in foreign:
        if not any(isinstance(f, PhoneMaskFilter) for f in handler.filters):
            handler.addFilter(PhoneMaskFilter())
    # SQLAlchemy's echo writes SQL parameters through a handler of its own: mask at its logger.
    engine_logger = logging.getLogger("sqlalchemy.engine.Engine")
    if not any(isinstance(f, PhoneMaskFilter) for f in engine_logger.filters):
        engine_logger.addFilter(PhoneMaskFilter())
    if stream is None and root.handlers:
        return None
    ours: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    if fmt == "auto":
        fmt = "text" if _is_terminal(stream if stream is not None else sys.stderr) else "json"
    ours.setFormatter(json_formatter() if fmt == "json" else TextFormatter())
    ours.addFilter(PhoneMaskFilter())
    setattr(ours, _OURS, True)
    root.addHandler(ours)
    root.setLevel(level)
    return ours


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
