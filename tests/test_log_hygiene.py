"""The suite-wide log scan (tests/log_scan.py): what it counts as a full number, and that it fails a test."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from log_scan import PhoneScanHandler, full_numbers

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    "text",
    [
        "to 13800138000",
        "to +8613800130001 now",
        "phone=+86138000000001"[:-1],  # scheduler fixtures: +86138 and eight digits
        "电话13912345678。",
        "86 138 0013 8000",
        "138-0013-8000",
        "landline 0571-87654321",
        "{'To': '+8613900139000'}",
    ],
)
def test_every_fixture_shape_of_a_full_number_is_found(text):
    assert full_numbers(text)


@pytest.mark.parametrize(
    "text",
    [
        "to 138****8000",
        "to +86138****0001",
        "sid=CA00000000000000000000000013800138000",  # a run of digits inside an id
        "token tok0001a13800138000b",
        "took 13800.1380 ms",
        "from our number +12025550100",
        "20260915 1731715200 count=1380013800",  # dates, epochs, counts: not 11-digit mobiles
        "0571-8765",
    ],
)
def test_masked_numbers_ids_and_counts_are_not_numbers(text):
    assert full_numbers(text) == []


def _record(msg, *args, **fields):
    # As the code under test would make it (records made by test code itself are not scanned).
    return logging.makeLogRecord(
        {"name": "ivr.probe", "msg": msg, "args": args, "pathname": "/srv/returnvisit/ivr/probe.py", **fields}
    )


def test_the_scan_reads_arguments_extra_fields_and_tracebacks():
    handler = PhoneScanHandler()
    try:
        raise ValueError("no route for 13800138002")
    except ValueError:
        exc_info = sys.exc_info()
    for record in [
        _record("texted %s", "+8613800138000"),
        _record("texted", phone="13800138001"),
        _record("failed", exc_info=exc_info),
        _record("texted %s", "138****8000"),
        logging.makeLogRecord({"msg": "a test logs %s", "args": ("13800138003",), "pathname": __file__}),
    ]:
        handler.handle(record)
    assert [set(found) for _record, found in handler.leaks] == [
        {"+8613800138000"},
        {"13800138001"},
        {"13800138002"},
    ]


def test_a_records_filters_cannot_hide_it_from_the_scan():
    from models.logs import PhoneMaskFilter

    handler = PhoneScanHandler()
    handler.addFilter(PhoneMaskFilter())  # what setup_logging() does to every root handler
    handler.handle(_record("to %s", "13800138000"))
    assert len(handler.leaks) == 1


INNER = """
import logging
import pytest

log = logging.getLogger("ivr.inner")

def test_logs_a_full_number():
    log.debug("dialled %s", "+8613800138000")

def test_logs_a_masked_number():
    log.info("dialled %s", "+86138****8000")

@pytest.mark.allow_phone_numbers_in_logs
def test_says_it_logs_a_number_on_purpose():
    log.warning("dialled 13800138000")
"""


def test_a_test_whose_code_logs_a_full_number_fails(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent))
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "log_scan", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*full phone numbers in 1 log record(s) during call*",
            "*DEBUG ivr.inner (test_inner.py:*): +8613800138000*",
        ]
    )
