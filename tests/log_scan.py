"""A pytest plugin: no log line of the code under test may carry a full phone number.

Registered by tests/conftest.py, so it runs over the whole suite. A handler on the root logger sees
every record before any handler's filters (the phone mask of models/logs.py among them) touch it;
the loggers of our packages log at DEBUG for the run, so every line they can write is seen. A record
whose text holds a full number, in the shapes the suite's fixtures use, fails the test phase that
logged it, with the offending lines.

Records written by test code itself (a test of the phone mask logs numbers on purpose) are not
scanned; a test that makes the code under test log a number on purpose says so with
@pytest.mark.allow_phone_numbers_in_logs.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

MARKER = "allow_phone_numbers_in_logs"
# The loggers whose every level is scanned (their level is set to DEBUG for the run); third-party
# loggers are scanned at the level they would log in production.
OUR_LOGGERS = ("ivr", "models", "scheduler", "console", "returnvisit", "bench")
THIRD_PARTY_INFO = ("twilio", "werkzeug", "apscheduler", "alembic")
# Full numbers as the suite's fixtures write them: Chinese mobiles (13800138000, +8613800130001,
# 86 138 0013 8000, 138-0013-8000) and landlines with an area code (0571-87654321). A masked number
# (138****8000) has too few digits; a longer run of digits (a CallSid, a token) is not a number.
PHONE = re.compile(
    r"(?<![\w+.*])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?![\w*])"
    r"|(?<![\w.])0\d{2,3}-\d{7,8}(?![\w*])",
    re.ASCII,
)
# Our own sending numbers may be logged: they are not a citizen's.
OUR_NUMBERS = frozenset({"+12025550100", "+12025550101"})
TESTS = Path(__file__).resolve().parent


def full_numbers(text: str) -> list[str]:
    """Return the full phone numbers in a text (the ones a log line must never carry)."""
    return [m for m in PHONE.findall(text) if m not in OUR_NUMBERS]


def record_text(record: logging.LogRecord) -> str:
    """Return everything a formatter could write for a record: message, extra fields, traceback."""
    try:
        parts = [record.getMessage()]
    except Exception:  # a malformed call is still written somehow
        parts = [str(record.msg), repr(record.args)]
    parts += [str(value) for key, value in vars(record).items() if key not in _STANDARD and value is not None]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class PhoneScanHandler(logging.Handler):
    """Keeps the records of the running test phase that carry a full phone number."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.leaks: list[tuple[logging.LogRecord, list[str]]] = []
        self.allowed = False

    def handle(self, record: logging.LogRecord) -> bool:
        # Before any filter: another handler's phone mask must not hide a leak from this scan.
        if not self.allowed and not _from_test_code(record):
            found = full_numbers(record_text(record))
            if found:
                self.leaks.append((record, found))
        return True

    def addFilter(self, filter) -> None:  # noqa: N802, A002 - logging's own names
        """Refuse filters: setup_logging() gives every root handler the phone mask, not this one."""

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does the work
        pass


def _from_test_code(record: logging.LogRecord) -> bool:
    try:
        path = Path(record.pathname).resolve()
    except (OSError, ValueError):
        return False
    return TESTS in path.parents and path.name != "log_scan.py"


_handler = PhoneScanHandler()
_saved_levels: dict[str, int] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: the test makes the code under test log full numbers")
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)
    for name in OUR_LOGGERS:
        _saved_levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.DEBUG)
    for name in THIRD_PARTY_INFO:
        logger = logging.getLogger(name)
        _saved_levels[name] = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger().removeHandler(_handler)
    for name, level in _saved_levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    _handler.leaks.clear()
    _handler.allowed = item.get_closest_marker(MARKER) is not None
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    leaks, _handler.leaks[:] = list(_handler.leaks), []
    if leaks and report.passed:
        lines = [
            f"  {record.levelname} {record.name} ({Path(record.pathname).name}:{record.lineno}): "
            f"{', '.join(found)} in {record_text(record)[:300]!r}"
            for record, found in leaks[:20]
        ]
        report.outcome = "failed"
        report.longrepr = (
            f"full phone numbers in {len(leaks)} log record(s) during {report.when} (mask them with "
            "models.phones.mask_phone):\n" + "\n".join(lines)
        )
    return report
