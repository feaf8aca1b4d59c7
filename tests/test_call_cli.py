"""`returnvisit call`: a survey call played in the terminal through the real webhook app."""

from datetime import UTC, datetime

from click.testing import CliRunner
from sqlalchemy import select

from console.cli import main
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.items import ServiceItem
from models.surveys import Answer, Survey


def seed_item(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        dept = Department(code="SCJ", name="市场监督管理局")
        session.add(dept)
        session.flush()
        item = ServiceItem(
            source="t",
            external_id="X1",
            department_id=dept.id,
            matter="企业开办登记",
            phone_e164="+8619900001234",
            phone_kind="mobile",
            completed_at=datetime(2026, 11, 20, 3, 0, tzinfo=UTC),
        )
        session.add(item)
        session.commit()
        item_id = item.id
    return engine, item_id


def test_call_plays_the_script_in_the_terminal_and_stores_the_answers(tmp_path):
    db_url = f"sqlite:///{tmp_path}/call.db"
    engine, item_id = seed_item(db_url)
    result = CliRunner().invoke(
        main,
        ["call", "--item", str(item_id)],
        input="4\n3#\n\n",
        env={"RETURNVISIT_DATABASE_URL": db_url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "市场监督管理局" in result.output and "企业开办登记" in result.output
    assert "199****1234" in result.output and "+8619900001234" not in result.output
    with make_sessionmaker(engine)() as session:
        survey = session.scalars(select(Survey)).one()
        answers = {a.question: a.value for a in session.scalars(select(Answer))}
        assert survey.disposition == "complete"
        assert answers == {"rating": "dissatisfied", "categories": "delay"}
    engine.dispose()


def test_call_refuses_a_finished_survey_and_unknown_ids(tmp_path):
    db_url = f"sqlite:///{tmp_path}/call.db"
    engine, item_id = seed_item(db_url)
    env = {"RETURNVISIT_DATABASE_URL": db_url}
    assert CliRunner().invoke(main, ["call", "--item", str(item_id)], input="1\n", env=env).exit_code == 0
    with make_sessionmaker(engine)() as session:
        survey_id = session.scalars(select(Survey.id)).one()
    again = CliRunner().invoke(main, ["call", "--survey", str(survey_id)], env=env)
    assert again.exit_code == 1 and "is finished (complete)" in again.output
    unknown = CliRunner().invoke(main, ["call", "--item", "999"], env=env)
    assert unknown.exit_code == 1 and "no service item with id 999" in unknown.output
    both = CliRunner().invoke(main, ["call"], env=env)
    assert both.exit_code == 2 and "exactly one" in both.output
    engine.dispose()
