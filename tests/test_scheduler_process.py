"""The scheduler process: job list and APScheduler wiring, one tick, the SQLite lock, the CLI, and
several processes (PostgreSQL) or a killed one (both backends) dispatching each attempt exactly once."""

import json
import multiprocessing
from collections import Counter
from datetime import timedelta

import click
import pytest
from apscheduler.triggers.interval import IntervalTrigger
from click.testing import CliRunner
from scheduler_fixtures import (
    T0,
    FakeClock,
    FakeGateway,
    add_campaign,
    add_item,
    scheduler_env,
    scheduler_process,
    seed_due_surveys,
)
from sqlalchemy import func, select

from console.cli import Context
from console.cli_scheduler import scheduler
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.surveys import Attempt, Survey
from scheduler.jobs import JOBS, build_scheduler, release_scheduler_lock, run_job, run_once


def test_jobs_are_one_list_with_stable_ids_run_by_a_blocking_scheduler(session_factory, now):
    assert [job.id for job in JOBS] == [
        "recover-leases",
        "expire",
        "pick",
        "dispatch",
        "escalate",
        "retention",
    ]
    env = scheduler_env(session_factory, FakeClock(now), scheduler={"tick_seconds": 15})
    runner = build_scheduler(env)
    assert type(runner).__name__ == "BlockingScheduler"
    added = {job.id: job for job in runner.get_jobs()}
    assert list(added) == [job.id for job in JOBS]
    for job in added.values():
        assert isinstance(job.trigger, IntervalTrigger) and job.trigger.interval == timedelta(seconds=15)
        assert (job.max_instances, job.coalesce) == (1, True)


def test_one_tick_picks_and_dispatches(session, session_factory, now, create_department):
    dept = create_department()
    add_campaign(session, now)
    items = [add_item(session, dept, now - timedelta(days=1)) for _ in range(3)]
    clock = FakeClock(now)
    env = scheduler_env(session_factory, clock)
    counts = run_once(env)
    assert list(counts) == ["recover-leases", "expire", "pick", "dispatch", "escalate", "retention"]
    assert counts["pick"] == {"picked": 3, "skipped": 0}
    assert counts["dispatch"] == {"claimed": 3, "attempts": 3, "placed": 3}
    assert sorted(r.to for r in env.gateway.requests) == sorted(i.phone_e164 for i in items)
    assert run_once(env)["dispatch"] == {}


def test_sqlite_allows_one_scheduler_at_a_time(tmp_path, now):
    engine = make_engine(f"sqlite:///{tmp_path}/lock.db")
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    clock = FakeClock(now)
    first = scheduler_env(sessions, clock, owner="first")
    second = scheduler_env(sessions, clock, owner="second")
    assert run_once(first)["pick"] == {"picked": 0, "skipped": 0}
    assert run_once(second) == {job.id: {"not_lock_holder": 1} for job in JOBS}
    clock.advance(seconds=301)  # the first scheduler died: its lock runs out
    assert run_once(second)["pick"] == {"picked": 0, "skipped": 0}
    assert run_job(JOBS[0], first) == {"not_lock_holder": 1}
    release_scheduler_lock(second)
    assert run_job(JOBS[0], first) == {}
    engine.dispose()


@pytest.fixture
def cli_db(fresh_db_url, now):
    """A migrated database with one active campaign and two items, and a CLI invoker."""
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        dept = Department(code="SWJ", name="税务局")
        session.add(dept)
        session.flush()
        add_campaign(session, now, name="回访")
        add_item(session, dept, now - timedelta(days=1))
        add_item(session, dept, now - timedelta(days=1), phone_kind="invalid", phone_e164=None)
        session.commit()

    @click.group()
    @click.pass_context
    def root(ctx):
        ctx.obj = Context(None)
        ctx.call_on_close(ctx.obj.close)

    root.add_command(scheduler)

    def invoke(*args):
        result = CliRunner().invoke(root, list(args), env={"RETURNVISIT_DATABASE_URL": fresh_db_url})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    yield invoke, engine
    engine.dispose()


def test_plan_prints_what_would_be_picked_and_writes_nothing(cli_db):
    invoke, engine = cli_db
    result = invoke("scheduler", "plan", "--at", "2026-11-16T10:00")
    assert result.exit_code == 0, result.output
    assert "plan at 2026-11-16T10:00+08:00 (Asia/Shanghai)" in result.output
    assert "  SWJ: would pick 1, skip invalid_phone 1" in result.output
    assert "nothing" not in result.output
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Survey)) == 0


def test_scheduler_once_runs_one_tick_at_the_real_time(cli_db, monkeypatch):
    invoke, engine = cli_db
    monkeypatch.setattr("console.cli_scheduler.make_gateway", lambda settings: FakeGateway())
    result = invoke("scheduler", "--once")
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.output)) == sorted(job.id for job in JOBS)


# Several processes, each with its own engine (spawned: nothing is shared but the database).


def run_processes(targets):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=scheduler_process, args=args) for args in targets]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    return [process.exitcode for process in processes]


def dialled(logs):
    lines = [line.split() for log in logs if log.exists() for line in log.read_text().splitlines()]
    return Counter(int(attempt_id) for attempt_id, _token in lines)


def test_four_processes_dispatch_ten_thousand_surveys_exactly_once(backend, fresh_db_url, tmp_path):
    if backend != "postgresql":
        pytest.skip("several scheduler processes need PostgreSQL (SQLite runs one scheduler)")
    engine = seed_due_surveys(fresh_db_url, 10_000)
    logs = [tmp_path / f"gateway-{n}.log" for n in range(4)]
    assert run_processes([(fresh_db_url, str(log), [T0.isoformat()]) for log in logs]) == [0, 0, 0, 0]
    calls = dialled(logs)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Attempt)) == 10_000
        twice = session.scalars(
            select(Attempt.survey_id).group_by(Attempt.survey_id).having(func.count() > 1)
        ).all()
        assert twice == []
        states = dict(session.execute(select(Survey.state, func.count()).group_by(Survey.state)).all())
        assert states == {"in_progress": 10_000}
    assert len(calls) == 10_000 and set(calls.values()) == {1}
    assert sum(1 for log in logs if log.read_text()) >= 2  # the work was really shared
    engine.dispose()


def test_killed_scheduler_restarts_without_dialling_twice_or_losing_a_survey(fresh_db_url, tmp_path):
    engine = seed_due_surveys(fresh_db_url, 300)
    first_log, second_log = tmp_path / "killed.log", tmp_path / "restarted.log"
    [code] = run_processes([(fresh_db_url, str(first_log), [T0.isoformat()], 120)])
    assert code == -9  # SIGKILL in the middle of a batch
    with make_sessionmaker(engine)() as session:
        pending = session.scalar(select(func.count()).where(Attempt.status == "pending"))
        assert pending > 0  # committed attempts the killed process never finished
    restart = [T0 + timedelta(minutes=6), T0 + timedelta(minutes=40)]  # after the lease, after the retry
    assert run_processes([(fresh_db_url, str(second_log), [t.isoformat() for t in restart])]) == [0]

    calls = dialled([first_log, second_log])
    assert set(calls.values()) == {1}  # no attempt dialled twice
    with make_sessionmaker(engine)() as session:
        rows = session.execute(
            select(Attempt.id, Attempt.survey_id, Attempt.number, Attempt.status, Attempt.error_code)
        ).all()
        states = dict(session.execute(select(Survey.state, func.count()).group_by(Survey.state)).all())
    assert states == {"in_progress": 300}  # no survey lost, none left claimed
    by_survey = Counter(survey_id for _, survey_id, _, _, _ in rows)
    assert set(by_survey.values()) <= {1, 2} and len(by_survey) == 300
    for attempt_id, _survey, number, status, error in rows:
        if status == "failed":  # closed when its lease ran out: it counts, and was retried
            assert (number, error) == (1, "lease-expired")
        else:
            assert status == "queued" and calls[attempt_id] == 1
    retried = {survey for _, survey, number, _, _ in rows if number == 2}
    closed = {survey for _, survey, _, status, _ in rows if status == "failed"}
    assert retried == closed
    # Both crash cases happened: dialled but its call id never stored, and committed but never dialled.
    closed_attempts = {attempt_id for attempt_id, _, _, status, _ in rows if status == "failed"}
    assert closed_attempts & set(calls) and closed_attempts - set(calls)
    engine.dispose()
