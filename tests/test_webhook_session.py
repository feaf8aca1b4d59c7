"""The hot webhooks' session (models.db.ConnectionSession, ivr.web.webhook_session): one transaction on
a connection the request holds, shared by driver-level statements and ORM work, committed or rolled
back as a whole, and the connection always handed back. On a real engine, committing for real."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from sqlalchemy import bindparam, func, insert, select

from ivr.app import create_app
from ivr.script import ItemContext, default_script, start
from ivr.twilio_adapter import sign_request
from ivr.urls import voice_gather_url
from models import migrate
from models.campaigns import Campaign
from models.db import ConnectionSession, connection_session, make_engine, make_sessionmaker
from models.departments import Department
from models.driver_sql import DriverStatement
from models.items import ServiceItem
from models.settings import load_settings
from models.surveys import Answer, Survey

NOW = datetime(2026, 11, 30, 2, tzinfo=UTC)
_ADD_DEPARTMENT = DriverStatement(
    insert(Department).values(
        code=bindparam("code"), name=bindparam("name"), kind="service", created_at=bindparam("created_at")
    )
)


@pytest.fixture
def engine(fresh_db_url):
    eng = make_engine(fresh_db_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


def codes(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(Department.code)))


def add_by_driver(session, code: str) -> None:
    _ADD_DEPARTMENT.rows(session, {"code": code, "name": code, "created_at": NOW})


def test_driver_statements_and_orm_work_commit_together(engine):
    session, connection = connection_session(make_sessionmaker(engine))
    assert isinstance(session, ConnectionSession) and connection is not None
    add_by_driver(session, "DRV")  # begins the connection's transaction
    session.add(Department(code="ORM", name="ORM", created_at=NOW))  # joins it
    session.commit()
    assert codes(engine) == {"DRV", "ORM"}
    session.close()
    connection.close()
    assert engine.pool.checkedout() == 0


def test_orm_first_then_driver_statements_commit_together(engine):
    session, connection = connection_session(make_sessionmaker(engine))
    session.add(Department(code="ORM", name="ORM", created_at=NOW))
    session.flush()  # the session begins the transaction
    add_by_driver(session, "DRV")  # and the statement runs in it
    session.commit()
    assert codes(engine) == {"DRV", "ORM"}
    session.close()
    connection.close()


def test_rollback_undoes_both_and_the_connection_works_on(engine):
    session, connection = connection_session(make_sessionmaker(engine))
    add_by_driver(session, "DRV")
    session.add(Department(code="ORM", name="ORM", created_at=NOW))
    session.flush()
    session.rollback()
    assert codes(engine) == set()
    add_by_driver(session, "AFTER")  # a new transaction on the same connection
    session.commit()
    assert codes(engine) == {"AFTER"}
    session.close()
    connection.close()


def test_closing_without_commit_stores_nothing(engine):
    session, connection = connection_session(make_sessionmaker(engine))
    add_by_driver(session, "DRV")
    session.close()
    connection.close()
    assert codes(engine) == set()
    assert engine.pool.checkedout() == 0


def test_a_factory_bound_to_a_connection_gives_a_plain_session(session_factory):
    session, connection = connection_session(session_factory)
    assert connection is None and not isinstance(session, ConnectionSession)
    session.close()


def _store_with_a_survey(engine) -> tuple[str, str]:
    state = start(
        default_script(), ItemContext("org", "税务局", "契税申报", NOW.date()), "survey", "voice"
    ).state
    with engine.begin() as conn:
        dept = conn.execute(
            insert(Department).returning(Department.id), {"code": "SWJ", "name": "税务局", "created_at": NOW}
        ).scalar_one()
        campaign = conn.execute(
            insert(Campaign).returning(Campaign.id),
            {
                "name": "c",
                "status": "active",
                "seed": "s",
                "config": {},
                "created_at": NOW,
                "updated_at": NOW,
            },
        ).scalar_one()
        item = conn.execute(
            insert(ServiceItem).returning(ServiceItem.id),
            {
                "source": "t",
                "external_id": "1",
                "department_id": dept,
                "matter": "契税申报",
                "phone_e164": "+8613800138000",
                "phone_kind": "mobile",
                "completed_at": NOW,
                "imported_at": NOW,
                "updated_at": NOW,
            },
        ).scalar_one()
        conn.execute(
            insert(Survey),
            {
                "campaign_id": campaign,
                "item_id": item,
                "kind": "survey",
                "token": "hot-session-token",
                "department_id": dept,
                "quarter": "2026Q4",
                "language": "zh-CN",
                "state": "in_progress",
                "channel": "voice",
                "script_state": {"engine": state, "channel": "voice", "call_sid": "CA" + "1" * 32},
                "created_at": NOW,
                "updated_at": NOW,
            },
        )
    return "hot-session-token", "CA" + "1" * 32


def _gather(client, settings, token: str, call_sid: str, digits: str):
    url = voice_gather_url(settings.app.public_base_url, token, 0)
    form = {"CallSid": call_sid, "Digits": digits, "CallStatus": "in-progress"}
    return client.post(
        url[len(settings.app.public_base_url) :],
        data=urlencode(form),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": sign_request(settings.twilio.auth_token, url, form)},
    )


def _answers(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(Answer.question, Answer.value))]


def test_a_gather_commits_its_answer_and_hands_the_connection_back(engine, fresh_db_url):
    token, call_sid = _store_with_a_survey(engine)
    settings = load_settings(env={}, overrides={"database": {"url": fresh_db_url}})
    app = create_app(settings, session_factory=make_sessionmaker(engine))
    response = _gather(app.test_client(), settings, token, call_sid, "1")
    assert response.status_code == 200 and "<Say" in response.get_data(as_text=True)
    assert _answers(engine) == [("rating", "very_satisfied")]
    with engine.connect() as conn:
        state, script_state = conn.execute(
            select(Survey.state, Survey.script_state).where(Survey.token == token)
        ).one()
    assert state == "done" and "gather:0" in script_state["replies"]  # the survey row, same commit
    assert engine.pool.checkedout() == 0


def test_a_gather_that_fails_after_storing_keeps_nothing(engine, fresh_db_url, monkeypatch):
    token, call_sid = _store_with_a_survey(engine)
    settings = load_settings(env={}, overrides={"database": {"url": fresh_db_url}})
    app = create_app(settings, session_factory=make_sessionmaker(engine))

    def broken(*_args, **_kwargs):
        raise RuntimeError("rendering failed after the answer was written")

    monkeypatch.setattr("ivr.voice._render", broken)
    response = _gather(app.test_client(), settings, token, call_sid, "1")
    assert response.status_code == 200 and "<Hangup" in response.get_data(as_text=True)  # the apology
    assert _answers(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Answer)) == 0
        stored = conn.scalar(select(Survey.script_state).where(Survey.token == token))
    assert stored["engine"]["seq"] == 0  # the survey is where it was
    assert engine.pool.checkedout() == 0
