"""bench/soak_checks.py: the soak's checks see a lost answer, a second dial and growing memory.

The replay of the citizens' inputs is checked against what the real webhooks store for the same
simulated call or text, so it cannot drift from ivr/voice.py and ivr/sms.py unnoticed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from ivr.script import default_script
from ivr.simulator import CallRecord, FlaskTransport, PhoneNetwork, ScriptedPersona, WebhookRequest
from ivr.sms_outbound import compose_sms
from ivr.urls import sms_inbound_url, sms_status_url, voice_gather_url, voice_status_url, voice_url
from models.surveys import Answer

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


checks = _load("soak_checks")


@pytest.fixture
def network(app, settings):
    return PhoneNetwork(FlaskTransport(app), settings.twilio.auth_token)


def _call(network, settings, survey, attempt, persona) -> CallRecord:
    base = settings.app.public_base_url
    return network.run_call(
        survey.item.phone_e164,
        attempt.from_number,
        voice_url(base, survey.token, attempt.id),
        persona=persona,
        status_callback=voice_status_url(base, survey.token, attempt.id),
        machine_detection=True,
        call_sid=attempt.provider_id,
    )


def test_the_replay_of_a_call_expects_what_the_voice_webhooks_stored(
    session, network, settings, create_survey
):
    survey, attempt = create_survey()
    record = _call(
        network, settings, survey, attempt, ScriptedPersona(["7", "4", "13#"], record_seconds=[12])
    )
    ledger = checks.Ledger()

    expected = checks.expected_answers([record], default_script(), checks.Ledger())
    ledger.check_answers(session, [record], default_script())

    assert expected == {
        survey.token: {
            "rating": "dissatisfied",
            "categories": "stuck,delay",
            "comment": record.recordings[0].url,
        }
    }
    assert (ledger.expected_answers, ledger.lost_answers, ledger.changed_answers) == (3, 0, 0)
    assert (ledger.unexpected_answers, ledger.webhook_failures, ledger.replay_mismatches) == (0, 0, 0)
    assert ledger.webhook_requests == len(record.requests)


def test_an_answer_missing_or_changed_in_the_store_is_counted(session, network, settings, create_survey):
    survey, attempt = create_survey()
    record = _call(network, settings, survey, attempt, ScriptedPersona(["4", "13#"], record_seconds=[5]))
    session.execute(delete(Answer).where(Answer.survey_id == survey.id, Answer.question == "categories"))
    session.execute(
        update(Answer)
        .where(Answer.survey_id == survey.id, Answer.question == "rating")
        .values(value="satisfied")
    )
    ledger = checks.Ledger()

    ledger.check_answers(session, [record], default_script())

    assert (ledger.lost_answers, ledger.changed_answers) == (1, 1)
    assert any("categories='stuck,delay' acknowledged but not stored" in text for text in ledger.examples)


def test_an_answer_stored_that_no_citizen_gave_is_counted(session, network, settings, create_survey):
    survey, attempt = create_survey()
    record = _call(network, settings, survey, attempt, ScriptedPersona(["2"]))
    session.add(Answer(survey_id=survey.id, question="comment", value="forged", channel="voice"))
    session.flush()
    ledger = checks.Ledger()

    ledger.check_answers(session, [record], default_script())

    assert (ledger.expected_answers, ledger.lost_answers, ledger.unexpected_answers) == (1, 0, 1)


def test_the_replay_of_a_text_uses_the_webhook_s_reading_of_the_reply(
    session, network, settings, create_survey
):
    survey, attempt = create_survey("sms")
    body = compose_sms(session, survey, settings)
    session.flush()
    base = settings.app.public_base_url
    record = network.run_outbound_sms(
        survey.item.phone_e164,
        attempt.from_number,
        body,
        persona=ScriptedPersona(sms_replies=["4 拖 太慢了"]),
        status_callback=sms_status_url(base, survey.token, attempt.id),
        inbound_url=sms_inbound_url(base),
        message_sid=attempt.provider_id,
    )
    ledger = checks.Ledger()

    expected = checks.expected_answers([record], default_script(), checks.Ledger())
    ledger.check_answers(session, [record], default_script())

    assert expected == {survey.token: {"rating": "dissatisfied", "categories": "delay", "comment": "太慢了"}}
    assert (
        ledger.expected_answers,
        ledger.lost_answers,
        ledger.changed_answers,
        ledger.unexpected_answers,
    ) == (
        3,
        0,
        0,
        0,
    )


def test_digits_the_webhook_did_not_acknowledge_are_not_expected_and_the_failure_is_counted():
    base = "https://example.test"
    token = "tok1"
    gather = '<Response><Gather action="x" numDigits="1"><Say>press</Say></Gather></Response>'
    record = CallRecord("CA1", "+8613800138000", "+12025550100", voice_url(base, token, 1))
    record.requests = [
        WebhookRequest("twiml", voice_url(base, token, 1), {}, 200, gather),
        WebhookRequest("twiml", voice_gather_url(base, token, 0), {"Digits": "2"}, 500, ""),
    ]
    ledger = checks.Ledger()

    assert checks.expected_answers([record], default_script(), ledger) == {token: {}}
    assert (ledger.webhook_requests, ledger.webhook_failures) == (2, 1)


def test_an_attempt_dialled_twice_or_again_in_a_later_tick_is_a_duplicate_dial():
    ledger = checks.Ledger()
    ledger.check_dials(Counter({5: 2, 6: 1}), attempts_created=2)
    assert (ledger.dials, ledger.duplicate_dials) == (3, 1)

    ledger.check_dials(Counter({6: 1, 7: 1}), attempts_created=1)
    assert (ledger.dials, ledger.duplicate_dials) == (5, 2)

    ledger.check_dials(Counter({8: 1}), attempts_created=3)
    assert (ledger.duplicate_dials, ledger.undialled_attempts) == (2, 2)


def test_clean_ticks_count_no_duplicate_dial():
    ledger = checks.Ledger()
    for tick in range(3):
        ledger.check_dials(Counter({10 * tick + 1: 1, 10 * tick + 2: 1}), attempts_created=2)
    assert (ledger.dials, ledger.duplicate_dials, ledger.undialled_attempts) == (6, 0, 0)


@pytest.mark.parametrize(
    ("samples", "flat"),
    [
        ([100.0] * 10, True),
        ([100.0, 110, 120, 130, 140, 145, 150, 155, 158, 159], True),  # +19 MB over the last half
        ([100.0, 110, 120, 130, 140, 150, 160, 170, 180, 190], False),  # +40 MB, 27 %
        ([500.0] * 5 + [520, 530, 540, 545, 549], True),  # +49 MB, but < 10 % of 500
    ],
)
def test_memory_is_flat_when_the_last_half_grows_less_than_20_mb_or_10_percent(samples, flat):
    verdict = checks.memory_verdict(samples)
    assert verdict.flat is flat
    assert verdict.at_50 == samples[4] and verdict.at_100 == samples[-1] and verdict.at_10 == samples[0]


def test_memory_without_samples_is_an_error():
    with pytest.raises(ValueError, match="no RSS samples"):
        checks.memory_verdict([])
