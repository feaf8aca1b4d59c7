"""The whole loop: items imported → campaign applied → scheduler ticks → simulated citizens answer
through the real webhooks → answers and dispositions in the store."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from scheduler_fixtures import loop_persona
from sqlalchemy import func, select

from console.cli_scheduler import make_compose_sms
from console.demo import DEMO_CAMPAIGN
from console.demo_data import HEADERS, generate_items
from ivr.app import create_app
from ivr.simulator import FlaskTransport, PhoneNetwork, SimulatedGateway
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.intake import Importer, IntakeOptions, map_headers
from models.settings import load_settings
from models.surveys import Answer, Attempt, Survey
from scheduler.campaigns import apply_campaign, department_names, parse_definition
from scheduler.jobs import SchedulerEnv, run_once


def test_imported_items_are_picked_called_answered_and_stored(fresh_db_url):
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
    options = IntakeOptions(tz=settings.app.tz, area_code="023")
    with sessions() as session:
        mapping = map_headers(HEADERS, settings.intake.columns)
        rows = [
            (line, {mapping[i]: value for i, value in enumerate(row.values()) if i in mapping})
            for line, row in enumerate(generate_items(240, now=now), start=2)
        ]
        importer = Importer(session, options, "loop", now=now)
        importer.import_batch(rows)
        definition = parse_definition(
            {**DEMO_CAMPAIGN, "sampling_rate": 1.0}, departments=department_names(session)
        )
        apply_campaign(session, definition, now)
        session.commit()
    assert importer.summary.new > 200

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
    placed = 0
    for _tick in range(6):  # first attempts, then retries and SMS fallbacks as the clock moves on
        counts = run_once(env)
        placed += counts["dispatch"].get("placed", 0)
        gateway.run_pending()
        clock["now"] += timedelta(minutes=5)

    with sessions() as session:
        surveys = session.scalar(select(func.count()).select_from(Survey))
        attempts = session.scalar(select(func.count()).select_from(Attempt))
        by_disposition = dict(
            session.execute(
                select(Survey.disposition, func.count())
                .where(Survey.state == "done")
                .group_by(Survey.disposition)
            ).all()
        )
        answers = session.scalar(select(func.count()).select_from(Answer))
        duplicate_dials = session.execute(
            select(Attempt.provider_id)
            .where(Attempt.provider_id.is_not(None))
            .group_by(Attempt.provider_id)
            .having(func.count() > 1)
        ).all()
        sms_attempts = session.scalar(
            select(func.count()).select_from(Attempt).where(Attempt.channel == "sms")
        )
    assert surveys > 20 and attempts == placed and attempts >= surveys
    assert by_disposition.get("complete", 0) > surveys // 3
    assert answers >= by_disposition["complete"]
    assert duplicate_dials == []
    assert sms_attempts > 0  # unanswered mobiles fell back to SMS and citizens replied by text
    engine.dispose()
