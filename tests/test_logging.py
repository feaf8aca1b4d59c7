"""Structured logs: JSON lines off a terminal, text on one, one line per webhook, phone numbers masked."""

from __future__ import annotations

import io
import json
import logging
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scheduler_fixtures import loop_persona
from sqlalchemy import select

from console.cli_scheduler import make_compose_sms
from console.demo import DEMO_CAMPAIGN
from console.demo_data import HEADERS, generate_items
from ivr.app import create_app
from ivr.simulator import FlaskTransport, PhoneNetwork, SimulatedGateway
from ivr.urls import voice_gather_url, voice_url
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.intake import Importer, IntakeOptions, map_headers
from models.items import ServiceItem
from models.logs import _PHONE, PhoneMaskFilter, _mask_match, mask_phones, setup_logging
from models.settings import load_settings
from models.surveys import Attempt
from scheduler.campaigns import apply_campaign, department_names, parse_definition
from scheduler.jobs import SchedulerEnv, run_once

BASE = "http://127.0.0.1:5000"


@pytest.fixture
def captured():
    """Install the logging setup on a buffer at DEBUG; restore the root logger afterwards."""
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()

    def install(fmt: str = "json", level: int = logging.DEBUG) -> io.StringIO:
        setup_logging(level, fmt=fmt, stream=buffer)
        return buffer

    yield install
    for handler in list(root.handlers):
        if getattr(handler, "_returnvisit_handler", False):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("to +8613800138000 now", "to +86138****8000 now"),
        ("called 13800138000.", "called 138****8000."),
        ("电话13912345678。", "电话139****5678。"),
        ("mobile 138 0013 8000", "mobile 138****8000"),
        ("mobile 138-0013-8000", "mobile 138****8000"),
        ("landline 023-61234567", "landline 023****4567"),
        ("landline 02361234567", "landline 023****4567"),
        ("prefixed 008613800138000", "prefixed 0086138****8000"),
        ("us +1 202 555 0100", "us +120****0100"),
        ("local 61234567", "local ****4567"),
        ("sql ('+8613800138000', '13800138000')", "sql ('+86138****8000', '138****8000')"),
        # URLs in a request log: a percent-escape before the number, "+" for a space.
        ("GET /items?q=%2B8613800138000", "GET /items?q=%2B861******8000"),
        ("GET /items?q=138+0013+8000", "GET /items?q=138****8000"),
        ("GET /login?next=/items?q%3D13800138000", "GET /login?next=/items?q%3D138****8000"),
    ],
)
def test_phone_numbers_are_masked_in_text(text, masked):
    assert mask_phones(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "CallSid CA0123456789abcdef0123456789abcdef",
        "survey tok0001a1b2c3d4e5f6 seq=3",
        "took 3.14159265358 s",
        "at 2026-11-16T02:00:00+00:00 in 2026Q4",
        "read 1000000 rows, error 21610",
        "tz +08:00, 127.0.0.1:5000",
        "already masked 138****8000",
    ],
)
def test_text_without_phone_numbers_is_left_alone(text):
    assert mask_phones(text) == text


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789 -+.a_%2BD中", max_size=40))
def test_the_quick_look_for_digits_never_skips_a_phone_number(text):
    # mask_phones skips the phone pattern when the text has no run of 7 digits, spaces or dashes
    # between two digits: that look must never pass over a number the pattern masks.
    assert mask_phones(text) == _PHONE.sub(_mask_match, text)


def _record(msg, args=(), **extra):
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_filter_masks_message_arguments_extra_fields_and_exception_text():
    try:
        raise ValueError("duplicate key phone_e164=+8613800138000")
    except ValueError:
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "from %s to %d", ("13800138000", 13912345678), True
        )
        import sys

        record.exc_info = sys.exc_info()
    record.to = "+8613912345678"
    assert PhoneMaskFilter().filter(record) is True
    assert record.getMessage() == "from 138****8000 to 139****5678"
    assert record.to == "+86139****5678"
    assert "+86138****8000" in record.exc_text and "13800138000" not in record.exc_text
    assert record.exc_info is None  # no formatter can render the unmasked exception again


def test_json_lines_carry_time_level_logger_message_and_extra_fields(captured):
    buffer = captured("json")
    logging.getLogger("returnvisit.test").info("hello %s", "世界", extra={"survey": "tok00012", "n": 3})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("returnvisit.test").exception("failed")
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert list(first)[0] == "time" and datetime.fromisoformat(first["time"]).tzinfo is not None
    assert first["level"] == "INFO" and first["logger"] == "returnvisit.test"
    assert first["message"] == "hello 世界" and first["survey"] == "tok00012" and first["n"] == 3
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc_info"]


def test_json_lines_keep_text_unescaped_and_survive_what_orjson_refuses(captured):
    buffer = captured("json")
    log = logging.getLogger("returnvisit.test")
    log.info("满意", extra={"huge": 2**70, "keys": {1: "one"}, "when": datetime(2026, 11, 30)})
    line = buffer.getvalue().strip()
    assert "满意" in line  # UTF-8, not \\u escapes
    parsed = json.loads(line)
    assert parsed["huge"] == 2**70 and parsed["keys"] == {"1": "one"} and parsed["message"] == "满意"
    assert parsed["when"].startswith("2026-11-30T00:00:00")


def test_text_lines_are_readable_with_the_extra_fields_after_the_message(captured):
    buffer = captured("text")
    logging.getLogger("returnvisit.test").info("hello %s", "13800138000", extra={"survey": "tok00012"})
    line = buffer.getvalue().strip()
    assert line.endswith("INFO returnvisit.test: hello 138****8000 [survey=tok00012]")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_text_on_a_terminal_and_json_otherwise():
    root = logging.getLogger()
    try:
        terminal, pipe = _Terminal(), io.StringIO()
        setup_logging(fmt="auto", stream=terminal)
        logging.getLogger("t").warning("on a terminal")
        setup_logging(fmt="auto", stream=pipe)
        logging.getLogger("t").warning("in a pipe")
    finally:
        setup_logging(stream=io.StringIO())
        for handler in list(root.handlers):
            if getattr(handler, "_returnvisit_handler", False):
                root.removeHandler(handler)
    assert "WARNING t: on a terminal" in terminal.getvalue()
    assert json.loads(pipe.getvalue())["message"] == "in a pipe"
    # The second call replaced the first handler: nothing more reached the terminal.
    assert "in a pipe" not in terminal.getvalue()


def test_setup_keeps_a_host_handler_but_masks_it():
    root = logging.getLogger()
    host = logging.StreamHandler(io.StringIO())
    root.addHandler(host)
    try:
        assert setup_logging() is None
        assert not [h for h in root.handlers if getattr(h, "_returnvisit_handler", False)]
        logging.getLogger("t").warning("call %s", "+8613800138000")
    finally:
        root.removeHandler(host)
    assert host.stream.getvalue().strip() == "call +86138****8000"


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        setup_logging(fmt="xml", stream=io.StringIO())


def test_each_webhook_logs_one_json_line_with_sid_survey_status_and_latency(
    captured, twilio_post, create_survey
):
    survey, attempt = create_survey()
    buffer = captured("json", logging.INFO)
    form = {"CallSid": attempt.provider_id, "From": "+12025550100", "To": "+8613800130001"}
    assert twilio_post(voice_url(BASE, survey.token, attempt.id)[len(BASE) :], form).status_code == 200
    twilio_post(voice_gather_url(BASE, survey.token, 0)[len(BASE) :], {**form, "Digits": "1"})
    twilio_post("/twilio/sms", {"MessageSid": "SM" + "1" * 32, "From": "+8613912345678", "Body": "1"})
    twilio_post("/twilio/voice/status", form, sign="wrong-token")
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    webhooks = [line for line in lines if line["logger"] == "returnvisit.webhooks"]
    served = [line for line in webhooks if line["level"] == "INFO"]
    assert [line["endpoint"] for line in served] == ["voice.answered", "voice.gathered", "sms.inbound"]
    for line in served[:2]:
        assert line["call_sid"] == attempt.provider_id and line["survey"] == survey.token[:8]
        assert line["status"] == 200 and isinstance(line["latency_ms"], float)
    assert served[2]["message_sid"] == "SM" + "1" * 32 and served[2]["survey"] == "-"
    refused = [line for line in webhooks if line["level"] == "WARNING"]
    assert len(refused) == 1 and refused[0]["call_sid"] == attempt.provider_id
    assert "forged or unsigned" in refused[0]["message"]
    assert "+8613912345678" not in buffer.getvalue() and "+8613800130001" not in buffer.getvalue()


@pytest.mark.parametrize("sid", ["+8613800138000", "13800138000", "CA123", "CA" + "x" * 32, "CA" + "0" * 33])
def test_a_forged_id_is_logged_as_malformed_not_as_sent(captured, twilio_post, sid):
    buffer = captured("json", logging.INFO)
    twilio_post("/twilio/voice/status?survey=x", {"CallSid": sid, "MessageSid": sid}, sign=None)
    (refused,) = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert refused["call_sid"] == refused["message_sid"] == "malformed"
    assert sid not in buffer.getvalue()


def _phone_spellings(item: ServiceItem) -> set[str]:
    """Every way a citizen's full number could appear: E.164, national digits, as imported."""
    spellings = {item.phone_raw.strip()}
    if item.phone_e164:
        spellings |= {item.phone_e164, item.phone_e164.removeprefix("+86"), item.phone_e164[1:]}
    return {s for s in spellings if sum(ch.isdigit() for ch in s) >= 7}


def test_sql_echo_through_sqlalchemys_own_handler_is_masked(captured, tmp_path, capsys):
    captured("json")
    engine = make_engine(f"sqlite:///{tmp_path}/echo.db", echo=True)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT ?", ("+8613800138000",))
    engine.dispose()
    out = capsys.readouterr().out
    assert "SELECT ?" in out and "+86138****8000" in out and "+8613800138000" not in out


def test_a_whole_loop_logged_at_debug_shows_no_full_phone_number(captured, fresh_db_url, caplog):
    buffer = captured("json", logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # SQL and its parameters too
    now = datetime.now(UTC).replace(microsecond=0)
    settings = load_settings(
        env={},
        overrides={
            "database": {"url": fresh_db_url},
            "gateway": {"calls_per_second": 1000.0, "max_concurrent_calls": 1000},
        },
    )
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        mapping = map_headers(HEADERS, settings.intake.columns)
        rows = [
            (line, {mapping[i]: value for i, value in enumerate(row.values()) if i in mapping})
            for line, row in enumerate(generate_items(240, now=now), start=2)
        ]
        Importer(session, IntakeOptions(tz=settings.app.tz, area_code="023"), "loop", now=now).import_batch(
            rows
        )
        definition = parse_definition(
            {**DEMO_CAMPAIGN, "sampling_rate": 1.0}, departments=department_names(session)
        )
        apply_campaign(session, definition, now)
        session.commit()
    app = create_app(settings, session_factory=sessions)
    rng = random.Random(7)
    gateway = SimulatedGateway(
        PhoneNetwork(FlaskTransport(app), settings.twilio.auth_token, rng=random.Random(8)),
        settings.app.public_base_url,
        lambda number: loop_persona(rng, number),
    )
    clock = {"now": now}
    env = SchedulerEnv(
        sessions=sessions,
        settings=settings,
        gateway=gateway,
        compose_sms=make_compose_sms(settings),
        clock=lambda: clock["now"],
        sleep=lambda _s: None,
    )
    for _tick in range(6):  # first calls, then retries and SMS fallbacks with replies
        run_once(env)
        gateway.run_pending()
        clock["now"] += timedelta(minutes=5)
    with sessions() as session:
        items = session.scalars(select(ServiceItem)).all()
        channels = set(session.scalars(select(Attempt.channel)))
    engine.dispose()

    text = buffer.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert channels == {"voice", "sms"} and len(items) > 50
    assert {line["level"] for line in lines} >= {"DEBUG", "INFO"}
    webhooks = [line for line in lines if line["logger"] == "returnvisit.webhooks"]
    assert any("call_sid" in line for line in webhooks) and any("message_sid" in line for line in webhooks)
    # SQL statements and their parameters were logged too: the mask had numbers to hide.
    assert any(line["logger"].startswith("sqlalchemy.engine") for line in lines)
    leaked = sorted({s for item in items for s in _phone_spellings(item) if s in text})
    assert leaked == []
