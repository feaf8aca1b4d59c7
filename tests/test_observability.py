"""Prometheus metrics: the webhook processes' latency and responses, the store's figures, who may scrape."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ivr import store_figures
from ivr.store_figures import StoreReader
from ivr.urls import voice_gather_url, voice_status_url, voice_url
from models.base import utcnow
from models.settings import load_settings
from models.surveys import Answer, Attempt, SurveyState

BASE = "http://127.0.0.1:5000"
SID = "CA" + "5e" * 16
STORE_SERIES = [
    "returnvisit_store_up",
    "returnvisit_answers",
    "returnvisit_dispositions",
    "returnvisit_dispatches",
    "returnvisit_gateway_errors",
    "returnvisit_surveys_open",
    "returnvisit_surveys_due",
    "returnvisit_surveys_due_oldest_seconds",
    "returnvisit_store_read_seconds",
]


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Parse Prometheus text into {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def value(parsed, name: str, **labels: str) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


def scrape(client, **kwargs) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def path_of(url: str) -> str:
    return url[len(BASE) :]


def call_form(attempt: Attempt, **extra: str) -> dict[str, str]:
    return {"CallSid": attempt.provider_id, "From": "+12025550100", "To": "+8613800130001", **extra}


# --- the webhook app: latency histogram and responses, observed in the request ---------------------


def test_webhook_latency_and_responses_move_when_a_webhook_is_served(client, twilio_post, create_survey):
    survey, attempt = create_survey()
    before = scrape(client)
    answered = twilio_post(path_of(voice_url(BASE, survey.token, attempt.id)), call_form(attempt))
    status_url = path_of(voice_status_url(BASE, survey.token, attempt.id))
    twilio_post(status_url, call_form(attempt), sign="wrong-url")
    assert answered.status_code == 200
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("returnvisit_webhook_duration_seconds_count", endpoint="voice.answered") == 1
    assert moved("returnvisit_webhook_duration_seconds_bucket", endpoint="voice.answered", le="+Inf") == 1
    assert moved("returnvisit_webhook_duration_seconds_sum", endpoint="voice.answered") > 0
    assert moved("returnvisit_webhook_responses_total", endpoint="voice.answered", status="200") == 1
    assert moved("returnvisit_webhook_responses_total", endpoint="voice.call_status", status="403") == 1


def test_webhook_metrics_are_named_with_their_buckets(client, twilio_post, create_survey):
    survey, attempt = create_survey()
    twilio_post(path_of(voice_url(BASE, survey.token, attempt.id)), call_form(attempt))
    text = client.get("/metrics").get_data(as_text=True)
    assert {"returnvisit_webhook_duration_seconds", "returnvisit_webhook_responses"} <= families(text)
    assert 'returnvisit_webhook_duration_seconds_bucket{endpoint="voice.answered",le="0.025"}' in text


# --- who may scrape -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "headers", "status"),
    [
        ("127.0.0.1", {}, 200),
        ("::1", {}, 200),
        ("::ffff:127.0.0.1", {}, 200),
        ("203.0.113.9", {}, 403),
        ("10.1.2.3", {}, 403),  # not in the default allow-list
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, 403),  # came through the proxy
        ("127.0.0.1", {"X-Real-IP": "203.0.113.9"}, 403),
        ("127.0.0.1", {"Forwarded": "for=203.0.113.9"}, 403),
    ],
)
def test_metrics_are_served_to_allowed_direct_clients_only(client, address, headers, status):
    response = client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": address})
    assert response.status_code == status
    if status == 403:
        assert "returnvisit_" not in response.get_data(as_text=True)


def test_allow_list_is_a_setting(tmp_path, session_factory):
    from ivr.app import create_app

    settings = load_settings(
        env={},
        overrides={
            "database": {"url": f"sqlite:///{tmp_path}/app.db"},
            "metrics": {"allow_networks": ["10.0.0.0/8"]},
        },
    )
    client = create_app(settings, session_factory=session_factory).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403


def test_a_malformed_network_in_the_allow_list_is_refused_by_name():
    from models.settings import ConfigError

    with pytest.raises(ConfigError, match="metrics.allow_networks.*'10.0.0.0/33' is not an IP network"):
        load_settings(env={}, overrides={"metrics": {"allow_networks": ["10.0.0.0/33"]}})


# --- the console: figures from the store at scrape time -------------------------------------------


@pytest.fixture
def console(tmp_path, session_factory):
    """A test client of the staff console, its store figures read afresh on every scrape."""
    from console.web import create_console_app

    settings = load_settings(
        env={},
        overrides={
            "database": {"url": f"sqlite:///{tmp_path}/app.db"},
            "metrics": {"store_cache_seconds": 0},
        },
    )
    app = create_console_app(settings, session_factory=session_factory)
    app.config["TESTING"] = True
    return app.test_client()


def test_console_exposes_every_store_series_without_a_login(console):
    response = console.get("/metrics")
    assert response.status_code == 200  # no redirect to the login page
    text = response.get_data(as_text=True)
    assert set(STORE_SERIES) <= families(text)
    parsed = samples(text)
    assert value(parsed, "returnvisit_store_up") == 1
    for channel in ("voice", "sms"):
        assert ("returnvisit_answers_total", frozenset({("channel", channel)})) in parsed
        assert ("returnvisit_dispatches_total", frozenset({("channel", channel)})) in parsed
    labels = frozenset({("kind", "survey"), ("disposition", "complete")})
    assert ("returnvisit_dispositions_total", labels) in parsed


def test_store_series_move_when_webhooks_are_served(console, twilio_post, create_survey, session, now):
    before = scrape(console)
    survey, attempt = create_survey()  # dispatched: its attempt was handed to the gateway
    failing, failed_attempt = create_survey()
    create_survey(state=SurveyState.DIALLING)
    create_survey(state=SurveyState.SCHEDULED, next_attempt_at=utcnow() - timedelta(minutes=10))
    session.commit()

    twilio_post(path_of(voice_url(BASE, survey.token, attempt.id)), call_form(attempt))
    twilio_post(path_of(voice_gather_url(BASE, survey.token, 0)), call_form(attempt, Digits="1"))
    completed = call_form(attempt, CallStatus="completed", CallDuration="40")
    twilio_post(path_of(voice_status_url(BASE, survey.token, attempt.id)), completed)
    failed = call_form(failed_attempt, CallStatus="failed", ErrorCode="32009")
    twilio_post(path_of(voice_status_url(BASE, failing.token, failed_attempt.id)), failed)
    after = scrape(console)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("returnvisit_answers_total", channel="voice") == 1
    assert moved("returnvisit_answers_total", channel="sms") == 0
    assert moved("returnvisit_dispositions_total", kind="survey", disposition="complete") == 1
    assert moved("returnvisit_dispatches_total", channel="voice") == 4  # one attempt per survey
    assert moved("returnvisit_gateway_errors_total", channel="voice", code="32009") == 1
    assert moved("returnvisit_surveys_due") >= 1
    assert value(after, "returnvisit_surveys_due_oldest_seconds") >= 600
    assert moved("returnvisit_surveys_open", state="dialling") == 1


def test_store_figures_are_reused_within_the_cache_time(tmp_path, session_factory, monkeypatch):
    from console.web import create_console_app

    settings = load_settings(
        env={},
        overrides={
            "database": {"url": f"sqlite:///{tmp_path}/app.db"},
            "metrics": {"store_cache_seconds": 60},
        },
    )
    client = create_console_app(settings, session_factory=session_factory).test_client()
    reads = []
    real = StoreReader.read
    monkeypatch.setattr(StoreReader, "read", lambda *a: reads.append(1) or real(*a))
    client.get("/metrics")
    client.get("/metrics")
    assert reads == [1]


def test_inserted_rows_are_counted_once_then_only_the_new_ones_are_read(session, create_survey):
    now = utcnow()
    survey, _attempt = create_survey()
    other, _ = create_survey()
    session.add_all(
        [
            Answer(
                survey_id=survey.id,
                question="rating",
                value="satisfied",
                channel="voice",
                received_at=now - timedelta(hours=1),
            ),
            Answer(survey_id=other.id, question="rating", value="satisfied", channel="sms", received_at=now),
        ]
    )
    session.flush()
    reader = StoreReader()
    first = reader.read(session, now)
    assert first.answers == {"voice": 1, "sms": 1}
    settled_upto = reader.answers.upto_id
    assert settled_upto > 0 and reader.answers.settled == {"voice": 1}  # the fresh one is recounted
    assert reader.read(session, now).answers == first.answers  # nothing counted twice
    session.add(Answer(survey_id=other.id, question="comment", value="好", channel="sms", received_at=now))
    session.flush()
    assert reader.read(session, now).answers == {"voice": 1, "sms": 2}
    later = reader.read(session, now + store_figures.SETTLE * 2)
    assert later.answers == {"voice": 1, "sms": 2} and reader.answers.upto_id > settled_upto
    assert later.dispatches == {"voice": 2}


def test_dispositions_recount_the_newest_quarters_and_every_quarter_hourly(session, create_survey):
    old, _ = create_survey(quarter="2025Q1", state=SurveyState.DONE, disposition="complete")
    create_survey(quarter="2026Q3", state=SurveyState.DONE, disposition="complete")
    new, _ = create_survey(quarter="2026Q4", state=SurveyState.DONE, disposition="busy")
    create_survey(quarter="2026Q4", state=SurveyState.DONE, disposition="from-a-later-version")
    create_survey(quarter="2026Q4", kind="verification", state=SurveyState.DONE, disposition="complete")
    create_survey(quarter="2026Q4", state=SurveyState.SCHEDULED)
    reader = StoreReader()
    reader.read(session, utcnow())
    assert reader.dispositions.read(session, time.monotonic()) == {
        ("survey", "complete"): 2,
        ("survey", "busy"): 1,
        ("survey", "other"): 1,
        ("verification", "complete"): 1,
    }
    old.disposition = new.disposition = "refused"
    session.flush()
    # The newest two quarters are recounted at once, an older one at the next full recount.
    assert reader.dispositions.read(session, time.monotonic()) == {
        ("survey", "complete"): 2,
        ("survey", "refused"): 1,
        ("survey", "other"): 1,
        ("verification", "complete"): 1,
    }
    hour_later = time.monotonic() + store_figures.FULL_REFRESH
    assert reader.dispositions.read(session, hour_later) == {
        ("survey", "complete"): 1,
        ("survey", "refused"): 2,
        ("survey", "other"): 1,
        ("verification", "complete"): 1,
    }


def test_a_scrape_answers_with_store_up_0_when_the_database_fails(tmp_path, caplog):
    from console.web import create_console_app
    from models.db import make_engine, make_sessionmaker

    engine = make_engine(f"sqlite:///{tmp_path}")  # a directory: cannot be opened
    settings = load_settings(env={}, overrides={"database": {"url": f"sqlite:///{tmp_path}"}})
    client = create_console_app(settings, session_factory=make_sessionmaker(engine)).test_client()
    response = client.get("/metrics")
    engine.dispose()
    assert response.status_code == 200
    assert value(samples(response.get_data(as_text=True)), "returnvisit_store_up") == 0
    assert "store figures could not be read" in caplog.text


def test_console_metrics_refuse_a_client_outside_the_allow_list(console):
    assert console.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403


# --- gunicorn with several workers: prometheus_client's multiprocess mode -------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str) -> int:
    request = urllib.request.Request(url, data=f"CallSid={SID}&CallStatus=ringing".encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_gunicorn_workers_add_up_in_multiprocess_mode(tmp_path):
    """Requests spread over two workers that are recycled every few requests still add up."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "RETURNVISIT_DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
    }
    env.pop("RETURNVISIT_CONFIG", None)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    stderr = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(
        # --preload: workers fork from a loaded app, so a recycled one is back at once.
        [str(gunicorn), "--preload", "--workers", "2", "--max-requests", "3", "--bind", f"127.0.0.1:{port}"]
        + ["ivr.wsgi:app"],
        env=env,
        cwd=str(Path(__file__).resolve().parent.parent),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.5)
        statuses = [_post(f"{base}/twilio/voice/status?survey=x&attempt=1") for _ in range(10)]
        assert statuses == [403] * 10  # unsigned: refused, counted
        for _ in range(3):  # whichever worker answers, and after recycling, the totals are the same
            status, text = _get(f"{base}/metrics")
            assert status == 200
            parsed = samples(text)
            endpoint = "voice.call_status"
            assert value(parsed, "returnvisit_webhook_responses_total", endpoint=endpoint, status="403") == 10
            assert value(parsed, "returnvisit_webhook_duration_seconds_count", endpoint=endpoint) == 10
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stderr.close()
    assert len(list(multiproc.glob("counter_*.db"))) >= 2  # several worker processes wrote their values
    # The workers logged JSON lines (stderr is not a terminal), one warning per forged request.
    lines = [line for line in (tmp_path / "stderr.log").read_text().splitlines() if line.startswith("{")]
    refused = [json.loads(line) for line in lines if "forged or unsigned" in line]
    assert len(refused) == 10 and refused[0]["call_sid"] == SID and refused[0]["survey"] == "x"
