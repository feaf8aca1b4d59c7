"""DriverStatement (models/driver_sql.py): the same rows, types and errors as SQLAlchemy's execution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pg_fixtures import terminate_backend
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from models.db import make_engine
from models.driver_sql import DriverStatement
from models.survey_ops import ANSWERS, RECORD_COLUMNS, RECORD_FROM, SURVEYS, insert_once
from models.surveys import SurveyState

_RECORD = select(*RECORD_COLUMNS).select_from(RECORD_FROM).where(SURVEYS.c.token == bindparam("token"))


def test_a_joined_read_gives_what_sqlalchemy_gives_value_for_value_and_type(session, create_survey):
    survey, _ = create_survey(script_state={"engine": {"seq": 3, "grade": "good"}, "channel": "voice"})
    session.flush()
    connection = session.connection()

    expected = connection.execute(_RECORD, {"token": survey.token}).mappings().one()
    got = DriverStatement(_RECORD).first(connection, {"token": survey.token})

    assert got == dict(expected)
    assert list(got) == list(expected.keys())  # labels included, in order
    for name, value in got.items():
        assert type(value) is type(expected[name]), name
    assert got["script_state"] == {"engine": {"seq": 3, "grade": "good"}, "channel": "voice"}
    assert got["item_completed_at"].tzinfo is not None  # UTC times come back aware, as from the ORM


def test_no_row_is_none_and_an_empty_list(session):
    statement = DriverStatement(_RECORD)
    assert statement.first(session.connection(), {"token": "no-such-token"}) is None
    assert statement.mappings(session.connection(), {"token": "no-such-token"}) == []


def test_values_the_statement_binds_itself_are_sent(session, create_survey):
    survey, _ = create_survey()
    session.flush()
    open_ones = DriverStatement(
        select(SURVEYS.c.id).where(
            SURVEYS.c.token == bindparam("token"), SURVEYS.c.state != SurveyState.DONE.value
        )
    )
    assert open_ones.rows(session.connection(), {"token": survey.token}) == [(survey.id,)]
    survey.state = SurveyState.DONE
    session.flush()
    assert open_ones.rows(session.connection(), {"token": survey.token}) == []


def test_writes_go_through_each_column_types_conversion(session, create_survey):
    survey, _ = create_survey()
    session.flush()
    at = datetime(2026, 3, 31, 15, 30, 1, 250, tzinfo=UTC)
    change = DriverStatement(
        update(SURVEYS)
        .where(SURVEYS.c.id == bindparam("record_id"))
        .values(
            script_state=bindparam("script_state", type_=SURVEYS.c.script_state.type),
            finished_at=bindparam("finished_at", type_=SURVEYS.c.finished_at.type),
        )
    )
    assert (
        change.rows(
            session.connection(),
            {"record_id": survey.id, "script_state": {"a": [1, "二"]}, "finished_at": at},
        )
        == []
    )

    row = (
        session.connection()
        .execute(select(SURVEYS.c.script_state, SURVEYS.c.finished_at).where(SURVEYS.c.id == survey.id))
        .one()
    )
    assert row.script_state == {"a": [1, "二"]}
    assert row.finished_at == at


def test_insert_once_returns_the_new_id_then_nothing(session, create_survey, now):
    survey, _ = create_survey()
    session.flush()
    dialect = session.connection().dialect.name
    once = insert_once(
        ANSWERS,
        ["survey_id", "question"],
        ["survey_id", "question", "value", "channel", "received_at", "late"],
    )["postgresql" if dialect == "postgresql" else "sqlite"]
    values = {
        "survey_id": survey.id,
        "question": "rating",
        "value": "good",
        "channel": "voice",
        "received_at": now,
        "late": False,
    }

    first = once.rows(session.connection(), values)
    again = once.rows(session.connection(), {**values, "value": "bad"})

    assert len(first) == 1 and isinstance(first[0][0], int)
    assert again == []
    stored = (
        session.connection().execute(select(ANSWERS.c.value).where(ANSWERS.c.survey_id == survey.id)).all()
    )
    assert stored == [("good",)]


def test_a_missing_parameter_is_named(session):
    with pytest.raises(ArgumentError, match="token"):
        DriverStatement(_RECORD).rows(session.connection(), {})


def test_expanding_parameters_are_refused(session):
    statement = DriverStatement(
        select(SURVEYS.c.id).where(SURVEYS.c.id.in_(bindparam("ids", expanding=True)))
    )
    with pytest.raises(ValueError, match="ids"):
        statement.rows(session.connection(), {"ids": [1]})


def test_a_driver_error_is_sqlalchemys_error(session, create_survey):
    survey, _ = create_survey()
    session.flush()
    duplicate_token = DriverStatement(
        update(SURVEYS)
        .where(SURVEYS.c.id == bindparam("record_id"))
        .values(token=bindparam("token", type_=SURVEYS.c.token.type))
    )
    other, _ = create_survey()
    session.flush()
    with pytest.raises(IntegrityError) as raised:
        duplicate_token.rows(session.connection(), {"record_id": other.id, "token": survey.token})
    assert "UPDATE surveys" in str(raised.value)
    assert not raised.value.connection_invalidated


def test_a_lost_connection_is_invalidated_and_the_next_one_works(backend, fresh_db_url):
    if backend != "postgresql":
        pytest.skip("a server-side disconnect needs a PostgreSQL server")
    from models import migrate

    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    statement = DriverStatement(select(SURVEYS.c.id).where(SURVEYS.c.token == bindparam("token")))
    try:
        with engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            terminate_backend(fresh_db_url, pid)
            with pytest.raises(DBAPIError) as raised:
                statement.rows(connection, {"token": "x"})
            assert raised.value.connection_invalidated
            assert connection.invalidated
        with engine.connect() as connection:  # a fresh connection from the pool
            assert statement.rows(connection, {"token": "x"}) == []
    finally:
        engine.dispose()


def test_a_sessions_connection_is_remembered_for_its_transaction_only(engine):
    from models.db import make_sessionmaker
    from models.driver_sql import connection_of

    with make_sessionmaker(engine)() as session:
        first = connection_of(session)
        assert connection_of(session) is first is session.connection()
        session.commit()
        second = connection_of(session)  # a new transaction: asked of the session again
        assert second is session.connection()
        assert (
            DriverStatement(select(SURVEYS.c.id).where(SURVEYS.c.token == bindparam("token"))).rows(
                session, {"token": "none"}
            )
            == []
        )
        session.rollback()
        assert connection_of(session) is session.connection()


def test_json_columns_round_trip_through_orjson_and_keep_text_readable(session, backend, create_survey):
    from sqlalchemy import text

    state = {"engine": {"seq": 2}, "last_twiml": "<Say>感谢您的评价</Say>", "big": 2**70, "ids": {1: "a"}}
    survey, _ = create_survey(script_state=state)
    session.flush()
    session.expire_all()
    assert session.get(type(survey), survey.id).script_state == {**state, "ids": {"1": "a"}}
    column = "script_state::text" if backend == "postgresql" else "script_state"
    stored = session.execute(text(f"SELECT {column} FROM surveys WHERE id = :id"), {"id": survey.id}).scalar()
    assert "感谢您的评价" in stored  # UTF-8 text, not \\u escapes
    row = DriverStatement(_RECORD).first(session.connection(), {"token": survey.token})
    assert row["script_state"]["last_twiml"] == "<Say>感谢您的评价</Say>"


def test_json_loads_takes_what_orjson_refuses():
    from models.db import json_dumps, json_loads

    assert json_loads('{"x": NaN}')["x"] != json_loads('{"x": NaN}')["x"]  # NaN, from the standard library
    assert json_loads(json_dumps({"n": 2**70})) == {"n": 2**70}
    with pytest.raises(TypeError):
        json_dumps({"x": object()})


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5))])
    )
)
def test_a_utc_time_is_bound_for_sqlite_as_sqlalchemy_binds_it(value):
    # DriverStatement formats UTC times for SQLite directly (models.base.sqlite_utc_text): the text
    # must be SQLAlchemy's own for every time, and any other zone still goes through SQLAlchemy.
    dialect = sqlite_dialect.dialect()
    column = SURVEYS.c.updated_at
    statement = DriverStatement(update(SURVEYS).values(updated_at=bindparam("at", type_=column.type)))
    ((name, process),) = statement._compile(dialect).binds
    expected = column.type.dialect_impl(dialect).bind_processor(dialect)(value)
    assert name == "at" and process(value) == expected
    assert process.__qualname__.startswith("sqlite_utc_text.")  # the shortcut, not the chain
