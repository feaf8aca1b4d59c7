"""The scheduler's heartbeat, and `returnvisit status`: last tick, queue depths, today's counts, errors."""

import json
import os
import socket
from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner
from scheduler_fixtures import FakeClock, add_campaign, add_item, add_survey, scheduler_env
from sqlalchemy import select

from console.cli import Context
from console.cli_ops import status
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.operations import SchedulerHeartbeat
from models.status import is_stale, local_day_start, stale_after, status_report
from models.surveys import Answer, Attempt, AttemptStatus, SurveyState
from scheduler.jobs import JOBS, Job, run_job, run_once

# 10:00 in Asia/Shanghai on a Monday; the local day began at 2026-11-15 16:00 UTC.
NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
TZ_DAY_START = datetime(2026, 11, 15, 16, 0, tzinfo=UTC)


def test_every_job_of_a_tick_writes_the_process_heartbeat(session, session_factory):
    clock = FakeClock(NOW)
    env = scheduler_env(session_factory, clock, owner="box:42:abcd")
    run_once(env)
    beat = session.get(SchedulerHeartbeat, "box:42:abcd")
    assert beat is not None
    assert (beat.host, beat.pid) == (socket.gethostname(), os.getpid())
    assert beat.started_at == NOW and beat.last_tick_at == NOW
    assert beat.last_tick_ok is True and beat.last_error is None
    assert list(beat.last_tick_jobs) == [job.id for job in JOBS]
    assert beat.last_tick_jobs["pick"]["counts"] == {"picked": 0, "skipped": 0}
    assert beat.last_tick_jobs["pick"]["at"] == NOW.isoformat()

    clock.advance(seconds=30)
    run_once(env)
    session.expire_all()
    beat = session.get(SchedulerHeartbeat, "box:42:abcd")
    assert beat.started_at == NOW and beat.last_tick_at == NOW + timedelta(seconds=30)
    assert session.scalars(select(SchedulerHeartbeat)).all() == [beat]


def test_a_failing_job_is_recorded_in_the_heartbeat_and_still_raised(session, session_factory):
    env = scheduler_env(session_factory, FakeClock(NOW), owner="box:7:x")

    def broken(_env):
        raise RuntimeError("gateway account suspended")

    with pytest.raises(RuntimeError):
        run_job(Job("dispatch", broken, "broken"), env)
    beat = session.get(SchedulerHeartbeat, "box:7:x")
    assert beat.last_tick_ok is False
    assert beat.last_error == "RuntimeError: gateway account suspended"
    assert beat.last_tick_jobs["dispatch"]["error"] == "RuntimeError: gateway account suspended"
    run_job(Job("dispatch", lambda _env: {"placed": 1}, "fixed"), env)
    session.expire_all()
    beat = session.get(SchedulerHeartbeat, "box:7:x")
    assert beat.last_tick_ok is True and beat.last_error is None


def test_heartbeats_of_long_gone_schedulers_are_forgotten(session, session_factory):
    session.add(
        SchedulerHeartbeat(
            owner="old:1:a",
            host="old",
            pid=1,
            started_at=NOW - timedelta(days=30),
            last_tick_at=NOW - timedelta(days=8),
            last_tick_seconds=0.1,
            last_tick_ok=True,
            last_tick_jobs={},
        )
    )
    session.commit()
    run_job(JOBS[0], scheduler_env(session_factory, FakeClock(NOW), owner="new:2:b"))
    session.expire_all()
    assert [b.owner for b in session.scalars(select(SchedulerHeartbeat))] == ["new:2:b"]


def test_staleness_is_three_ticks_and_at_least_two_minutes():
    assert stale_after(30) == timedelta(seconds=120)
    assert stale_after(60) == timedelta(seconds=180)
    assert not is_stale(NOW - timedelta(seconds=120), NOW, timedelta(seconds=120))
    assert is_stale(NOW - timedelta(seconds=121), NOW, timedelta(seconds=120))
    assert is_stale(None, NOW, timedelta(seconds=120))


def test_the_day_starts_at_local_midnight():
    from zoneinfo import ZoneInfo

    assert local_day_start(NOW, ZoneInfo("Asia/Shanghai")) == TZ_DAY_START
    assert local_day_start(NOW, ZoneInfo("UTC")) == datetime(2026, 11, 16, tzinfo=UTC)


def _attempt(session, survey, channel, number, status, at, error=None):
    attempt = Attempt(
        survey_id=survey.id,
        channel=channel,
        number=number,
        status=status,
        error_code=error,
        created_at=at,
        ended_at=at if status != AttemptStatus.QUEUED else None,
    )
    session.add(attempt)
    session.flush()
    return attempt


def _populate(session, dept):
    """Surveys in every queue state, and attempts, answers and completes today and yesterday."""
    campaign = add_campaign(session, NOW)
    today, yesterday = NOW - timedelta(hours=1), TZ_DAY_START - timedelta(minutes=1)

    def survey(**fields):
        return add_survey(session, campaign, add_item(session, dept, NOW - timedelta(days=2)), **fields)

    survey(next_attempt_at=NOW - timedelta(minutes=5))  # due, first contact
    survey(next_attempt_at=NOW, first_attempt_at=yesterday)  # due, a retry
    survey(next_attempt_at=NOW + timedelta(hours=2), first_attempt_at=yesterday)  # retry later
    survey(next_attempt_at=NOW + timedelta(days=1))  # first contact later
    live = survey(state=SurveyState.IN_PROGRESS, first_attempt_at=today)
    survey(state=SurveyState.DIALLING, first_attempt_at=today)
    done_voice = survey(
        state=SurveyState.DONE, disposition="complete", finished_at=today, first_attempt_at=today
    )
    done_sms = survey(
        state=SurveyState.DONE,
        disposition="complete",
        channel="sms",
        finished_at=today,
        first_attempt_at=today,
    )
    survey(state=SurveyState.DONE, disposition="complete", finished_at=yesterday, first_attempt_at=yesterday)
    survey(state=SurveyState.DONE, disposition="refused", finished_at=today, first_attempt_at=today)

    _attempt(session, live, "voice", 1, AttemptStatus.IN_PROGRESS, today)
    _attempt(session, done_voice, "voice", 1, AttemptStatus.COMPLETED, today)
    _attempt(session, done_sms, "sms", 1, AttemptStatus.DELIVERED, today)
    _attempt(session, done_sms, "voice", 1, AttemptStatus.FAILED, today, error="13224")
    _attempt(session, live, "voice", 2, AttemptStatus.FAILED, today, error="13224")
    _attempt(session, done_voice, "sms", 1, AttemptStatus.UNDELIVERED, today, error="30003")
    _attempt(session, done_voice, "voice", 2, AttemptStatus.FAILED, yesterday, error="13227")
    session.add_all(
        [
            Answer(
                survey_id=done_voice.id,
                question="rating",
                value="satisfied",
                channel="voice",
                received_at=today,
            ),
            Answer(
                survey_id=done_sms.id, question="rating", value="satisfied", channel="sms", received_at=today
            ),
            Answer(survey_id=done_sms.id, question="comment", value="好", channel="sms", received_at=today),
            Answer(
                survey_id=live.id,
                question="rating",
                value="satisfied",
                channel="voice",
                received_at=yesterday,
            ),
        ]
    )
    session.flush()


def test_status_counts_queues_today_and_gateway_errors(session, create_department):
    from zoneinfo import ZoneInfo

    _populate(session, create_department())
    report = status_report(session, NOW, tz=ZoneInfo("Asia/Shanghai"), tick_seconds=30)
    assert report.queue == {
        "due": 2,
        "due_retries": 1,
        "in_flight": 2,
        "retrying": 2,
        "waiting_first_contact": 1,
    }
    assert report.today == {
        "attempts": {"voice": 4, "sms": 2, "total": 6},
        "answers": {"voice": 1, "sms": 2, "total": 3},
        "completed_surveys": {"voice": 1, "sms": 1, "total": 2},
    }
    assert report.gateway_errors == [
        {"channel": "voice", "status": "failed", "error_code": "13224", "count": 2},
        {"channel": "sms", "status": "undelivered", "error_code": "30003", "count": 1},
    ]
    assert report.schedulers == [] and report.stale is True


@pytest.fixture
def status_cli(fresh_db_url):
    """A migrated database and an invoker of `returnvisit status`."""
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)

    @click.group()
    @click.pass_context
    def root(ctx):
        ctx.obj = Context(None)
        ctx.call_on_close(ctx.obj.close)

    root.add_command(status)

    def invoke(*args):
        result = CliRunner().invoke(
            root, ["status", *args], env={"RETURNVISIT_DATABASE_URL": fresh_db_url}, catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return result.output

    yield invoke, make_sessionmaker(engine)
    engine.dispose()


def test_status_command_warns_without_a_scheduler_and_when_its_heartbeat_is_stale(status_cli):
    invoke, sessions = status_cli
    assert "WARNING: no scheduler has ever ticked" in invoke("--at", "2026-11-16T10:00")
    run_once(scheduler_env(sessions, FakeClock(NOW), owner="box:42:abcd"))
    fresh = invoke("--at", "2026-11-16T10:01")
    assert "scheduler box:42:abcd" in fresh and "(60 s ago) ok" in fresh
    assert "WARNING: the scheduler" not in fresh and "WARNING: no scheduler" not in fresh
    assert "    pick            10:00:00" in fresh
    stale = invoke("--at", "2026-11-16T10:10")
    assert "(10 min ago) stale" in stale
    assert "WARNING: the scheduler's last tick was 10 min ago (it ticks every 30 s)" in stale


def test_status_command_prints_queues_counts_and_errors_as_text_and_json(status_cli):
    invoke, sessions = status_cli
    with sessions() as session:
        dept = Department(code="SWJ", name="税务局")
        session.add(dept)
        session.flush()
        _populate(session, dept)
        session.commit()
    text = invoke("--at", "2026-11-16T10:00")
    assert "queue: due 2 (retries 1), in flight 2, retrying 2, waiting for first contact 1" in text
    assert "today (since 2026-11-16 00:00 Asia/Shanghai):" in text
    assert "  attempts: sms 2, voice 4 (total 6)" in text
    assert "  completed: sms 1, voice 1 (total 2)" in text
    assert "  voice failed error 13224: 2" in text
    data = json.loads(invoke("--json", "--at", "2026-11-16T10:00"))
    assert data["queue"]["due"] == 2
    assert data["today"]["answers"] == {"voice": 1, "sms": 2, "total": 3}
    assert data["gateway_errors"][0] == {
        "channel": "voice",
        "status": "failed",
        "error_code": "13224",
        "count": 2,
    }
    assert data["stale"] is True and data["now"] == "2026-11-16T02:00:00+00:00"


def test_status_warns_before_the_calendar_runs_out_of_statutory_holidays(status_cli):
    invoke, _ = status_cli
    # chinesecalendar knows the years up to its release; a far year stands for the next unknown one.
    text = invoke("--at", "2099-12-01T10:00")
    assert "WARNING: the working-day calendar has no statutory holidays for 2099" in text
    assert "for 2100: add them to calendar.extra_closed" in text
    assert json.loads(invoke("--json", "--at", "2099-12-01T10:00"))["calendar_years_without_holidays"] == [
        2099,
        2100,
    ]
    assert "working-day calendar" not in invoke("--at", "2024-03-01T10:00")


def test_a_year_the_site_configured_is_not_reported_missing():
    from datetime import date

    from scheduler.calendar import WorkCalendar

    assert WorkCalendar("CN").years_without_holidays(date(2099, 11, 1)) == [2099]
    configured = WorkCalendar("CN", extra_closed=frozenset({date(2099, 12, 25)}))
    assert configured.years_without_holidays(date(2099, 11, 1)) == []
    assert WorkCalendar("none").years_without_holidays(date(2099, 11, 1)) == []

