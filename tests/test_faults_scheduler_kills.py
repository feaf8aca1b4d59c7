"""The scheduler killed with SIGKILL again and again while it dispatches (both backends).

Each run is a spawned process (scheduler_fixtures.scheduler_process) whose file gateway logs every
call it places, then kills its own process after N calls, before the dispatcher could store the call
ids. Restarts come after the lease (and SQLite's scheduler lock) ran out, some of them at the time the
retries of the previous crash are due, so crashes hit first attempts and retries alike. After the last
clean run: no attempt was dialled twice, no two attempts of one survey were open at once, every
survey has its placed call, and every other attempt was closed by lease recovery and counted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from scheduler_fixtures import T0, seed_due_surveys
from sqlalchemy import func, select
from test_scheduler_process import dialled, run_processes

from models.db import make_sessionmaker
from models.surveys import Attempt, Survey

SURVEYS = 300
AFTER_LEASE = timedelta(seconds=301)  # the lease (300 s) and SQLite's scheduler lock have run out
# (clock time of the run, calls after which it is killed). Batches are 200 surveys; call ids are
# stored every 50 calls, so a kill after 60 leaves 50 stored, 10 dialled but lost, the rest undialled.
#   10:00    first attempts of 200 surveys: 7 dialled, killed
#   10:05:01 those 200 recovered (retry 10:30); first attempts of the other 100: killed after 60
#   10:31    those 50 recovered (retry 10:35); the 200 retries claimed: killed after 1
#   10:36:01 those 200 recovered (next retry 2 h later, past lunch: 14:00); the 50 retries: killed after 20
#   14:00    the 50 recovered meanwhile; 250 retries due, 200 claimed: killed after 51
KILLED_RUNS = [
    (T0, 7),
    (T0 + AFTER_LEASE, 60),
    (T0 + timedelta(minutes=31), 1),
    (T0 + timedelta(minutes=31) + AFTER_LEASE, 20),
    (T0 + timedelta(hours=4), 51),
]
# 14:05:01 the last crash recovered (retry a day later) and the other 50 placed; Tuesday 14:05:01
# the day-later retries placed.
CLEAN_RUN = [T0 + timedelta(hours=4) + AFTER_LEASE, T0 + timedelta(days=1, hours=4) + AFTER_LEASE]


@pytest.mark.slow
def test_repeated_kills_during_dispatch_never_dial_an_attempt_twice_nor_lose_a_survey(fresh_db_url, tmp_path):
    engine = seed_due_surveys(fresh_db_url, SURVEYS)
    logs = []
    for n, (at, kill_after) in enumerate(KILLED_RUNS):
        logs.append(tmp_path / f"killed-{n}.log")
        [code] = run_processes([(fresh_db_url, str(logs[-1]), [at.isoformat()], kill_after)])
        assert code == -9, f"run {n} was meant to die by SIGKILL mid-batch"
    logs.append(tmp_path / "clean.log")
    assert run_processes([(fresh_db_url, str(logs[-1]), [t.isoformat() for t in CLEAN_RUN])]) == [0]

    calls = dialled(logs)
    assert calls and set(calls.values()) == {1}  # no attempt dialled twice
    assert sum(calls.values()) == sum(n for _, n in KILLED_RUNS) + len(dialled(logs[-1:]))
    with make_sessionmaker(engine)() as session:
        rows = session.execute(
            select(
                Attempt.id,
                Attempt.survey_id,
                Attempt.channel,
                Attempt.number,
                Attempt.status,
                Attempt.error_code,
                Attempt.provider_id,
                Attempt.created_at,
                Attempt.ended_at,
            ).order_by(Attempt.survey_id, Attempt.id)
        ).all()
        states = dict(session.execute(select(Survey.state, func.count()).group_by(Survey.state)).all())
        leased = session.scalar(select(func.count()).where(Survey.lease_owner.is_not(None)))
    assert states == {"in_progress": SURVEYS}  # no survey lost, none left claimed or dialling
    assert leased == 0

    by_survey = defaultdict(list)
    for row in rows:
        by_survey[row.survey_id].append(row)
    assert len(by_survey) == SURVEYS
    closed = 0
    for survey_id, attempts in by_survey.items():
        *earlier, last = attempts
        # The survey's current attempt is its one placed call, dialled once and stored.
        assert (last.status, last.error_code) == ("queued", None), survey_id
        assert last.provider_id is not None and calls[last.id] == 1
        # Every earlier attempt was closed by lease recovery and counts: numbered in sequence, never
        # overlapping the next one (closed before the next was written).
        numbers = Counter(a.channel for a in attempts)
        assert [a.number for a in attempts] == list(range(1, len(attempts) + 1)), (survey_id, numbers)
        for attempt, following in zip(earlier, attempts[1:], strict=True):
            assert (attempt.status, attempt.error_code) == ("failed", "lease-expired"), survey_id
            assert attempt.provider_id is None
            assert attempt.ended_at is not None and attempt.ended_at <= following.created_at
            closed += 1
    # Crashes hit first attempts and retries alike: 50 surveys placed at once (10:05), 100 on the third
    # attempt (14:00 or 14:05), 150 on the fourth (Tuesday).
    assert Counter(len(attempts) for attempts in by_survey.values()) == {1: 50, 3: 100, 4: 150}
    assert closed == 100 * 2 + 150 * 3
    dialled_then_lost = [a.id for rows_ in by_survey.values() for a in rows_[:-1] if a.id in calls]
    never_dialled = [a.id for rows_ in by_survey.values() for a in rows_[:-1] if a.id not in calls]
    assert dialled_then_lost and never_dialled  # both crash windows were hit
    engine.dispose()
