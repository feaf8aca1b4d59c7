"""Retention: the purge removes personal data of old items and nothing else, and every figure stays."""

import csv
import json
from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner
from scheduler_fixtures import FakeClock, add_campaign, add_item, add_survey, scheduler_env
from sqlalchemy import select, update

from console.cli import Context
from console.cli_ops import purge as purge_command
from console.import_files import run_import
from models import migrate
from models.cases import Case, CaseEvent, CaseState
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.items import ServiceItem
from models.messages import Message
from models.metrics import quarter_figures
from models.operations import RetentionRun
from models.optouts import OptOut, is_opted_out
from models.redaction import PURGED_RECORDING, mask_number, redact_text
from models.retention import purge, purge_due, retention_cutoff
from models.schema import metadata
from models.settings import load_settings
from models.surveys import Answer, Attempt, AttemptStatus, SurveyState
from scheduler.jobs import JOBS, run_job

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
OLD = datetime(2023, 11, 10, 2, 0, tzinfo=UTC)  # 2023Q4: past the two-year period
RECENT = datetime(2026, 10, 10, 2, 0, tzinfo=UTC)  # 2026Q4
CUTOFF = retention_cutoff(NOW, 730)
REC_URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE0123"
OURS = "+12025550101"


def test_redact_text_masks_phone_numbers_names_and_recording_urls():
    text = f"我是张三，电话13812345678，或 023-6388 1234。录音 {REC_URL}"
    assert redact_text(text, region="CN", names=["张三"], urls=[REC_URL]) == (
        f"我是***，电话138****5678，或 023****1234。录音 {PURGED_RECORDING}"
    )
    assert (
        redact_text("4 拖 太慢了", region="CN", names=["王"]) == "4 拖 太慢了"
    )  # a 1-char name is not sought
    assert mask_number("+8613812345678") == "138****5678"
    assert mask_number("138****5678") == "138****5678"
    assert mask_number(None) is None


def test_the_scheduled_purge_is_due_once_a_day():
    assert purge_due(None, NOW)
    assert not purge_due(NOW - timedelta(hours=23), NOW)
    assert purge_due(NOW - timedelta(hours=24), NOW)
    assert CUTOFF == datetime(2024, 11, 16, 2, 0, tzinfo=UTC)


def _visit(
    session,
    campaign,
    dept,
    completed,
    *,
    name,
    phone,
    quarter,
    bad=False,
    state=SurveyState.DONE,
    case_state=CaseState.CLOSED,
):
    """An item with a finished voice survey (rating, and for a bad one categories, comment, a case)."""
    item = add_item(session, dept, completed, citizen_name=name, phone_raw=phone[3:], phone_e164=phone)
    survey = add_survey(
        session,
        campaign,
        item,
        quarter=quarter,
        state=state,
        disposition="complete" if state == SurveyState.DONE else None,
        first_attempt_at=completed + timedelta(days=1),
        finished_at=completed + timedelta(days=1),
        script_state={"call_sid": "CA1", "last_twiml": f"<Response><Say>{name}</Say></Response>"},
    )
    session.add(
        Attempt(
            survey_id=survey.id,
            channel="voice",
            number=1,
            status=AttemptStatus.COMPLETED,
            from_number="+12025550100",
            created_at=completed + timedelta(days=1),
        )
    )
    session.add(
        Answer(
            survey_id=survey.id,
            question="rating",
            channel="voice",
            value="dissatisfied" if bad else "satisfied",
            received_at=completed + timedelta(days=1),
        )
    )
    if bad:
        session.add_all(
            [
                Answer(
                    survey_id=survey.id,
                    question="categories",
                    value="stuck,delay",
                    channel="voice",
                    received_at=completed + timedelta(days=1),
                ),
                Answer(
                    survey_id=survey.id,
                    question="comment",
                    value=REC_URL,
                    channel="voice",
                    recording_url=REC_URL,
                    recording_duration=12,
                    received_at=completed + timedelta(days=1),
                ),
            ]
        )
        session.flush()
        case = Case(
            survey_id=survey.id,
            department_id=dept.id,
            quarter=quarter,
            grade="dissatisfied",
            categories=["stuck", "delay"],
            comment=REC_URL,
            state=case_state,
            opened_at=completed,
            due_at=completed + timedelta(days=21),
            feedback=f"已联系{name}（{phone[3:]}）并致歉",
            answered_at=completed + timedelta(days=5),
            escalation="interview",
            escalation_reason=f"{name}（{phone[3:]}）三次来电投诉，约谈科长",
        )
        session.add(case)
        session.flush()
        session.add(
            CaseEvent(
                case_id=case.id,
                at=completed,
                actor="officer",
                to_state="answered",
                note=f"电话联系 {phone[3:]}",
            )
        )
    session.flush()
    return item, survey


@pytest.fixture
def store(session):
    """Old and recent items with surveys, answers, texts, cases and opt-outs (ids by role)."""
    dept = Department(code="SWJ", name="税务局")
    session.add(dept)
    session.flush()
    campaign = add_campaign(session, OLD)
    rows = {}
    rows["old_good"] = _visit(
        session, campaign, dept, OLD, name="张三", phone="+8613800000001", quarter="2023Q4"
    )
    rows["old_bad"] = _visit(
        session, campaign, dept, OLD, name="李四", phone="+8613800000002", quarter="2023Q4", bad=True
    )
    rows["old_open_case"] = _visit(
        session,
        campaign,
        dept,
        OLD,
        name="王五",
        phone="+8613800000003",
        quarter="2023Q4",
        bad=True,
        case_state=CaseState.ESCALATED,
    )
    rows["recent_bad"] = _visit(
        session, campaign, dept, RECENT, name="赵六", phone="+8613800000004", quarter="2026Q4", bad=True
    )
    sms_item, sms_survey = _visit(
        session,
        campaign,
        dept,
        OLD + timedelta(days=1),
        name="孙七",
        phone="+8613800000005",
        quarter="2023Q4",
    )
    rows["old_sms"] = (sms_item, sms_survey)
    at = OLD + timedelta(days=1)
    session.add_all(
        [
            Message(
                direction="outbound",
                survey_id=sms_survey.id,
                from_e164=OURS,
                to_e164="+8613800000005",
                body="您好，请回复1-5评价",
                status="delivered",
                created_at=at,
            ),
            Message(
                direction="inbound",
                survey_id=sms_survey.id,
                from_e164="+8613800000005",
                to_e164=OURS,
                body="2 我是孙七 有事打13912345678",
                status="received",
                created_at=at,
            ),
            # Unrouted texts: one old, one recent.
            Message(
                direction="inbound",
                survey_id=None,
                from_e164="+8613700000009",
                to_e164=OURS,
                body="TD",
                status="received",
                created_at=at,
            ),
            Message(
                direction="inbound",
                survey_id=None,
                from_e164="+8613700000010",
                to_e164=OURS,
                body="hello 13912345678",
                status="received",
                created_at=RECENT,
            ),
            OptOut(phone_e164="+8613800000001", channel="all", source="keypad", created_at=OLD),
            OptOut(
                phone_e164="+8613800000002",
                channel="all",
                source="staff",
                reason="本人13800000002要求",
                created_at=OLD,
                revoked_at=OLD + timedelta(days=30),
            ),
            OptOut(
                phone_e164="+8613800000004",
                channel="all",
                source="sms_keyword",
                created_at=RECENT,
                revoked_at=RECENT + timedelta(days=1),
            ),
        ]
    )
    session.flush()
    return rows


def _snapshot(session):
    """Every row of every table, by (table, primary key)."""
    rows = {}
    for table in metadata.sorted_tables:
        pk = [c.name for c in table.primary_key.columns]
        for row in session.execute(select(table)).mappings():
            rows[(table.name, tuple(row[c] for c in pk))] = dict(row)
    return rows


def _changes(before, after):
    assert before.keys() == after.keys(), "a purge adds or deletes no row (but its own run record)"
    return {
        (table, key[0] if len(key) == 1 else key, column)
        for (table, key), row in before.items()
        for column, value in row.items()
        if after[(table, key)][column] != value
    }


def _figures(session):
    return {
        quarter: [f.as_dict() for f in quarter_figures(session, quarter, now=NOW, min_ratings_to_rank=0)]
        for quarter in ("2023Q4", "2026Q4")
    }


def _without_runs(rows):
    return {key: row for key, row in rows.items() if key[0] != "retention_runs"}


def test_purge_removes_personal_data_of_old_items_and_nothing_else(session, session_factory, store):
    before = _snapshot(session)
    report = purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN")
    session.expire_all()
    after = _without_runs(_snapshot(session))
    old_good, old_good_survey = store["old_good"]
    old_bad, old_bad_survey = store["old_bad"]
    sms_item, sms_survey = store["old_sms"]
    case = session.scalars(select(Case).where(Case.survey_id == old_bad_survey.id)).one()
    event = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    comment = session.scalars(
        select(Answer).where(Answer.survey_id == old_bad_survey.id, Answer.question == "comment")
    ).one()
    messages = {m.body[:2]: m for m in session.scalars(select(Message))}
    optouts = {o.created_at: o for o in session.scalars(select(OptOut).order_by(OptOut.id))}
    item_fields = {"citizen_name", "phone_raw", "phone_e164", "purged_at"}
    expected = {
        *{("service_items", item.id, f) for item in (old_good, old_bad, sms_item) for f in item_fields},
        *{("surveys", s.id, "script_state") for s in (old_good_survey, old_bad_survey, sms_survey)},
        ("answers", comment.id, "value"),
        ("answers", comment.id, "recording_url"),
        ("cases", case.id, "comment"),
        ("cases", case.id, "feedback"),
        ("cases", case.id, "escalation_reason"),
        ("case_events", event.id, "note"),
        ("messages", messages["您好"].id, "to_e164"),
        ("messages", messages["2 "].id, "from_e164"),
        ("messages", messages["2 "].id, "body"),
        ("messages", messages["TD"].id, "from_e164"),
        ("opt_outs", _revoked_old(optouts).id, "phone_e164"),
        ("opt_outs", _revoked_old(optouts).id, "reason"),
    }
    assert _changes(before, after) == expected

    purged = session.get(type(old_bad), old_bad.id)
    assert (purged.citizen_name, purged.phone_raw, purged.phone_e164, purged.purged_at) == (
        None,
        None,
        None,
        NOW,
    )
    assert purged.phone_kind == "mobile"
    assert (comment.value, comment.recording_url, comment.recording_duration) == (PURGED_RECORDING, None, 12)
    assert case.comment == PURGED_RECORDING
    assert case.feedback == "已联系***（138****0002）并致歉"
    assert case.escalation_reason == "***（138****0002）三次来电投诉，约谈科长"
    assert case.escalation == "interview"
    assert case.categories == ["stuck", "delay"] and case.grade == "dissatisfied"
    assert event.note == "电话联系 138****0002"
    assert messages["您好"].to_e164 == "138****0005" and messages["您好"].from_e164 == OURS
    assert messages["2 "].from_e164 == "138****0005" and messages["2 "].body == "2 我是*** 有事打139****5678"
    assert messages["TD"].from_e164 == "137****0009"
    assert messages["he"].from_e164 == "+8613700000010"  # recent: kept
    assert session.scalars(select(Message.survey_id)).all().count(None) == 2
    assert report.held_items == 1  # the old item whose case is still escalated
    assert report.as_dict()["counts"] == {
        "answers": {"comments": 1, "recordings": 1},
        "case_events": {"notes": 1},
        "cases": {"texts": 1},
        "messages": {"bodies": 1, "citizen_numbers": 3},
        "opt_outs": {"revoked_numbers": 1},
        "service_items": {"names": 3, "phone_numbers": 3, "rows": 3},
        "surveys": {"conversation_state": 3},
    }
    run = session.scalars(select(RetentionRun)).one()
    assert (run.started_at, run.cutoff, run.actor) == (NOW, CUTOFF, "cli")
    assert run.counts["counts"]["service_items"]["rows"] == 3


def _revoked_old(optouts):
    return next(o for o in optouts.values() if o.revoked_at and o.revoked_at < CUTOFF)


def test_quarter_figures_are_identical_after_the_purge(session, session_factory, store):
    before = _figures(session)
    assert before["2023Q4"][0]["surveys"] == 4 and before["2023Q4"][0]["grades"]["dissatisfied"] == 2
    assert before["2023Q4"][0]["categories"]["stuck"] == 2
    purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN")
    session.expire_all()
    assert _figures(session) == before


def test_a_dry_run_changes_nothing_and_counts_what_the_purge_then_does(session, session_factory, store):
    before = _snapshot(session)
    dry = purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN", dry_run=True)
    session.expire_all()
    assert _snapshot(session) == before
    real = purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN")
    assert dry.as_dict()["counts"] == real.as_dict()["counts"] != {}
    assert dry.held_items == real.held_items == 1


def test_a_second_purge_finds_nothing_left(session, session_factory, store):
    purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN")
    again = purge(session_factory, cutoff=CUTOFF, now=NOW + timedelta(days=1), region="CN")
    assert again.as_dict()["counts"] == {}


def test_live_opt_outs_keep_working_after_the_purge(session, session_factory, store):
    purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN")
    assert is_opted_out(session, "+8613800000001", "voice")  # its item was purged; the opt-out stays
    assert not is_opted_out(session, "+8613800000002", "voice")  # revoked, masked
    assert session.scalars(select(OptOut.phone_e164).order_by(OptOut.id)).all() == [
        "+8613800000001",
        "138****0002",
        "+8613800000004",
    ]


def test_a_purge_limited_to_some_items_is_carried_on_by_the_next_run(session, session_factory, store):
    first = purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN", batch_size=1, max_items=2)
    assert not first.complete and first.counts["service_items"]["rows"] == 2
    assert session.scalars(select(RetentionRun)).all() == []  # not a finished run
    rest = purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN", batch_size=1)
    assert rest.complete and rest.counts["service_items"]["rows"] == 1


def test_the_scheduler_purges_once_a_day(session, session_factory, store):
    retention = next(job for job in JOBS if job.id == "retention")
    clock = FakeClock(NOW)
    env = scheduler_env(session_factory, clock)
    counts = run_job(retention, env)
    assert counts["service_items.rows"] == 3 and counts["finished"] == 1 and counts["held_items"] == 1
    clock.advance(hours=23)
    assert run_job(retention, env) == {}
    clock.advance(hours=1)
    assert run_job(retention, env)["finished"] == 1
    assert [r.actor for r in session.scalars(select(RetentionRun))] == ["scheduler tester"] * 2
    off = scheduler_env(
        session_factory, FakeClock(NOW + timedelta(days=5)), retention={"scheduled_purge": False}
    )
    assert run_job(retention, off) == {}


INTAKE_ROW = {
    "external_id": "OLD1",
    "department": "SWJ",
    "department_name": "税务局",
    "matter": "契税申报",
    "channel": "窗口",
    "citizen_name": "张三",
    "phone": "13812345678",
    "completed_at": "2023-09-15 10:23:00",
}


@pytest.fixture
def import_row(client, session_factory, intake_options, tmp_path):
    """Import one row through the intake API or a file, as the source "api"; return its status."""

    def send(how, row):
        if how == "api":
            response = client.post(
                "/api/v1/service-items", json=[row], headers={"Authorization": "Bearer dev-intake-token"}
            )
            return response.get_json()["results"][0]["status"]
        path = tmp_path / "items.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)
        results = []
        run_import(
            session_factory,
            path,
            options=intake_options,
            columns=load_settings(env={}).intake.columns,
            source="api",
            on_result=lambda *result: results.append(result),
            worker=False,
        )
        return results[0][2].value

    return send


@pytest.mark.parametrize("how", ["api", "file"])
def test_a_purged_item_imported_again_gets_no_personal_data_back(session, session_factory, import_row, how):
    assert import_row(how, INTAKE_ROW) == "new"
    purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN")
    # The service-centre system sends its whole history again, one matter corrected.
    assert import_row(how, INTAKE_ROW) == "unchanged"
    assert import_row(how, {**INTAKE_ROW, "matter": "二手房契税申报"}) == "updated"
    session.expire_all()
    item = session.scalars(select(ServiceItem)).one()
    assert (item.citizen_name, item.phone_raw, item.phone_e164, item.phone_extension) == (None,) * 4
    assert (item.matter, item.phone_kind, item.purged_at) == ("二手房契税申报", "mobile", NOW)
    again = purge(session_factory, cutoff=CUTOFF, now=NOW + timedelta(days=1), region="CN")
    assert again.as_dict()["counts"] == {}


def test_a_purged_item_whose_personal_data_came_back_is_purged_again(session, session_factory, store):
    purge(session_factory, cutoff=CUTOFF, now=NOW, region="CN")
    old_good, _ = store["old_good"]
    # As a re-import did before imports left purged items alone.
    session.execute(
        update(ServiceItem)
        .where(ServiceItem.id == old_good.id)
        .values(citizen_name="张三", phone_raw="13800000001", phone_e164="+8613800000001")
    )
    session.commit()
    again = purge(session_factory, cutoff=CUTOFF, now=NOW + timedelta(days=1), region="CN")
    assert again.as_dict()["counts"] == {"service_items": {"names": 1, "phone_numbers": 1, "rows": 1}}
    session.expire_all()
    item = session.get(ServiceItem, old_good.id)
    assert (item.citizen_name, item.phone_raw, item.phone_e164) == (None, None, None)


@pytest.fixture
def purge_cli(fresh_db_url):
    """A migrated database with one old and one recent item, and an invoker of `returnvisit purge`."""
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    with sessions() as session:
        dept = Department(code="SWJ", name="税务局")
        session.add(dept)
        session.flush()
        add_item(session, dept, now - timedelta(days=800), citizen_name="张三")
        add_item(session, dept, now - timedelta(days=400), citizen_name="李四")
        session.commit()

    @click.group()
    @click.pass_context
    def root(ctx):
        ctx.obj = Context(None)
        ctx.call_on_close(ctx.obj.close)

    root.add_command(purge_command)

    def invoke(*args):
        return CliRunner().invoke(root, ["purge", *args], env={"RETURNVISIT_DATABASE_URL": fresh_db_url})

    def names():
        with sessions() as session:
            from models.items import ServiceItem

            return session.scalars(select(ServiceItem.citizen_name).order_by(ServiceItem.id)).all()

    yield invoke, names, now
    engine.dispose()


def test_purge_command_dry_run_prints_counts_per_table_and_changes_nothing(purge_cli):
    invoke, names, _ = purge_cli
    result = invoke("--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("dry run: personal data of items completed before ")
    assert "  service_items: would purge names 1, phone numbers 1, rows 1" in result.output
    assert names() == ["张三", "李四"]
    result = invoke()
    assert "  service_items: purged names 1, phone numbers 1, rows 1" in result.output
    assert names() == [None, "李四"]
    assert "nothing to purge" in invoke().output


def test_purge_command_before_a_date_inside_the_period_needs_yes(purge_cli):
    invoke, names, now = purge_cli
    day = (now - timedelta(days=300)).date().isoformat()
    refused = invoke("--before", day)
    assert refused.exit_code != 0 and "inside the retention period (730 days): add --yes" in refused.output
    assert names() == ["张三", "李四"]
    data = json.loads(invoke("--before", day, "--yes", "--json").output)
    assert data["counts"]["service_items"]["rows"] == 2 and data["dry_run"] is False
    assert names() == [None, None]
    future = invoke("--before", (now + timedelta(days=2)).date().isoformat(), "--dry-run")
    assert future.exit_code != 0 and "is in the future" in future.output
