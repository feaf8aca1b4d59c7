"""`returnvisit call`: a survey call played in the terminal through the real webhook app."""

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from console.cli import main
from models import migrate
from models.campaigns import Campaign
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.items import ServiceItem
from models.surveys import Answer, Attempt, AttemptStatus, Survey


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


def seed_survey(engine, item_id, state):
    """A campaign's survey of the item that already had one unanswered call (and another survey's)."""
    with make_sessionmaker(engine)() as session:
        item = session.get(ServiceItem, item_id)
        campaign = Campaign(name="2026Q4", status="active", seed="s", config={"script": "default"})
        session.add(campaign)
        session.flush()
        of_item = {
            "campaign_id": campaign.id,
            "item_id": item.id,
            "department_id": item.department_id,
            "quarter": "2026Q4",
            "language": "zh-CN",
            "channel": "voice",
        }
        next_at = datetime(2026, 11, 24, 2, 0, tzinfo=UTC) if state == "scheduled" else None
        survey = Survey(**of_item, token="tok-cli-survey", state=state, next_attempt_at=next_at)
        other = Survey(**of_item, kind="verification", token="tok-cli-other", state="done")
        session.add_all([survey, other])
        session.flush()
        for owner, number in ((survey, 1), (other, 1), (other, 2)):  # the other survey's do not count
            session.add(
                Attempt(
                    survey_id=owner.id,
                    channel="voice",
                    number=number,
                    provider_id=f"CA{owner.id:016d}{number:016d}",
                    from_number="+12025550100",
                    status=AttemptStatus.NO_ANSWER,
                )
            )
        session.commit()
        return survey.id


@pytest.mark.parametrize("state", ["scheduled", "in_progress"])
def test_call_plays_an_existing_survey_as_its_next_attempt(fresh_db_url, state):
    engine, item_id = seed_item(fresh_db_url)
    survey_id = seed_survey(engine, item_id, state)
    result = CliRunner().invoke(
        main,
        ["call", "--survey", str(survey_id)],
        input="5\n26#\n7\n",  # very dissatisfied, shirked and poor, a seven-second comment
        env={"RETURNVISIT_DATABASE_URL": fresh_db_url},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"calling 199****1234 for survey {survey_id} " in result.output
    assert "市场监督管理局" in result.output and "企业开办登记" in result.output
    assert "+8619900001234" not in result.output
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Survey)) == 2  # no try-out survey
        survey = session.get(Survey, survey_id)
        assert (survey.state, survey.disposition) == ("done", "complete")
        by_number = select(Attempt).where(Attempt.survey_id == survey_id).order_by(Attempt.number)
        first, second = session.scalars(by_number).all()
        assert (first.number, first.status) == (1, AttemptStatus.NO_ANSWER)
        assert (second.number, second.channel, second.status) == (2, "voice", AttemptStatus.COMPLETED)
        assert second.provider_id.startswith("CA") and second.provider_id != first.provider_id
        assert second.answered_by == "human" and second.duration_seconds > 7
        rows = session.scalars(select(Answer).where(Answer.survey_id == survey_id))
        answers = {answer.question: answer for answer in rows}
        assert {q: a.value for q, a in answers.items() if q != "comment"} == {
            "rating": "very_dissatisfied",
            "categories": "shirk,poor",
        }
        assert answers["comment"].recording_duration == 7
        assert answers["comment"].recording_url.startswith("https://api.twilio.com/")
    assert f"survey {survey_id}: done complete" in result.output
    engine.dispose()
