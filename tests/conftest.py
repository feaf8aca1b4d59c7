"""Shared fixtures: settings, a migrated database per backend, a savepoint-isolated session, apps.

Every test that asks for `session` runs once on SQLite and, when RETURNVISIT_TEST_DATABASE_URL is set,
once more on PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from models import migrate
from models.db import make_engine
from models.settings import Settings, load_settings

# The suite-wide log scan: no log line of the code under test carries a full phone number.
pytest_plugins = ["log_scan"]

PG_URL = os.environ.get("RETURNVISIT_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Development settings with a throwaway SQLite path."""
    return load_settings(
        env={},
        overrides={"database": {"url": f"sqlite:///{tmp_path}/app.db"}},
    )


def _fresh_postgres_database(name: str) -> str:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(name: str) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    """The database backend under test."""
    return request.param


@pytest.fixture(scope="session")
def engine(backend, tmp_path_factory) -> Iterator[Engine]:
    """A database migrated to head, shared by the session's tests (isolated by savepoints)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db')}/test.db"
        name = None
    else:
        name = f"rv_test_{os.getpid()}"
        url = _fresh_postgres_database(name)
    eng = make_engine(url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()
    if name:
        _drop_postgres_database(name)


@pytest.fixture
def fresh_db_url(backend, tmp_path) -> Iterator[str]:
    """An empty, unmigrated database of the backend under test, for tests that commit for real."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/fresh.db"
        return
    name = f"rv_fresh_{uuid.uuid4().hex[:12]}"
    url = _fresh_postgres_database(name)
    yield url
    _drop_postgres_database(name)


@pytest.fixture
def connection(engine):
    """A connection inside an outer transaction that is rolled back after the test."""
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection) -> sessionmaker[Session]:
    """Sessions bound to the test connection: their commits release savepoints only."""
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(session_factory) -> Iterator[Session]:
    """A session for arranging and checking rows."""
    with session_factory() as s:
        yield s


@pytest.fixture
def now() -> datetime:
    """A fixed 'now' for decisions (a Monday in a working week)."""
    return datetime(2026, 11, 16, 2, 0, tzinfo=UTC)


@pytest.fixture
def create_department(session):
    """Factory: a department row."""
    from models.departments import Department

    counter = {"n": 0}

    def make(**overrides: Any) -> Department:
        counter["n"] += 1
        fields = {"code": f"D{counter['n']:03d}", "name": f"部门{counter['n']}"}
        fields.update(overrides)
        dept = Department(**fields)
        session.add(dept)
        session.flush()
        return dept

    return make


@pytest.fixture
def app(settings, session_factory):
    """The public webhook app bound to the test transaction."""
    from ivr.app import create_app

    flask_app = create_app(settings, session_factory=session_factory)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app):
    """A test client of the public app."""
    return app.test_client()


@pytest.fixture
def intake_options(settings):
    """Intake options as the CLI builds them from the settings."""
    from console.cli import intake_options as build

    return build(settings)


@pytest.fixture
def create_item(session, create_department):
    """Factory: a completed service item (a mobile number by default)."""
    from models.items import ServiceItem

    counter = {"n": 0}
    departments: dict[str, Any] = {}

    def make(**overrides: Any) -> ServiceItem:
        counter["n"] += 1
        code = overrides.pop("department_code", "SWJ")
        if "department_id" not in overrides:
            if code not in departments:
                departments[code] = create_department(code=code, name="税务局" if code == "SWJ" else code)
            overrides["department_id"] = departments[code].id
        fields = {
            "source": "test",
            "external_id": f"E{counter['n']:05d}",
            "matter": "契税申报",
            "phone_raw": f"1380013{counter['n']:04d}",
            "phone_e164": f"+861380013{counter['n']:04d}",
            "phone_kind": "mobile",
            "completed_at": datetime(2026, 11, 10, 2, 30, tzinfo=UTC),
        }
        fields.update(overrides)
        item = ServiceItem(**fields)
        session.add(item)
        session.flush()
        return item

    return make


@pytest.fixture
def create_campaign(session):
    """Factory: an active campaign with a default configuration."""
    from models.campaigns import Campaign

    counter = {"n": 0}

    def make(**overrides: Any) -> Campaign:
        counter["n"] += 1
        from scheduler.campaigns import CampaignDefinition

        name = overrides.get("name", f"campaign-{counter['n']}")
        # A configuration the scheduler accepts: the same defaults `campaign apply` would store.
        config = CampaignDefinition.model_validate({"name": name}).model_dump(mode="json", exclude={"status"})
        fields = {"name": name, "status": "active", "seed": f"seed-{counter['n']}", "config": config}
        fields.update(overrides)
        campaign = Campaign(**fields)
        session.add(campaign)
        session.flush()
        return campaign

    return make


@pytest.fixture
def create_survey(session, create_item, create_campaign):
    """Factory: a survey in progress on a channel, with one placed attempt."""
    from models.surveys import Attempt, AttemptStatus, Survey, SurveyState

    counter = {"n": 0}

    def make(channel: str = "voice", *, item=None, campaign=None, language="zh-CN", **overrides: Any):
        counter["n"] += 1
        item = item or create_item()
        campaign = campaign or create_campaign()
        fields = {
            "campaign_id": campaign.id,
            "item_id": item.id,
            "token": f"tok{counter['n']:04d}{uuid.uuid4().hex[:12]}",
            "department_id": item.department_id,
            "quarter": "2026Q4",
            "language": language,
            "channel": channel,
            "state": SurveyState.IN_PROGRESS,
        }
        fields.update(overrides)
        survey = Survey(**fields)
        session.add(survey)
        session.flush()
        attempt = Attempt(
            survey_id=survey.id,
            channel=channel,
            number=1,
            provider_id=f"CA{uuid.uuid4().hex}" if channel == "voice" else f"SM{uuid.uuid4().hex}",
            from_number="+12025550100",
            status=AttemptStatus.QUEUED,
        )
        session.add(attempt)
        session.flush()
        return survey, attempt

    return make


@pytest.fixture
def twilio_post(client, settings):
    """POST a form to the public app signed as Twilio signs it (or not, or wrongly)."""
    from ivr.twilio_adapter import sign_request

    def post(path: str, form: dict[str, str], *, sign: str | None = "valid"):
        url = settings.app.public_base_url + path
        headers = {}
        if sign == "valid":
            headers["X-Twilio-Signature"] = sign_request(settings.twilio.auth_token, url, form)
        elif sign == "wrong-url":
            headers["X-Twilio-Signature"] = sign_request(
                settings.twilio.auth_token, "http://internal:8000" + path, form
            )
        elif sign == "wrong-token":
            headers["X-Twilio-Signature"] = sign_request("not-the-token", url, form)
        elif sign == "non-ascii":  # a forger's header: never base64, must not raise
            headers["X-Twilio-Signature"] = "é" + sign_request(settings.twilio.auth_token, url, form)
        return client.post(path, data=form, headers=headers)

    return post
