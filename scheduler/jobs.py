"""The scheduler's periodic jobs: one declarative list, thin job functions, APScheduler wiring.

Each job opens its own session, takes `now` from the clock, does one sweep and returns a dict of
counts that is logged. `run_once` runs one tick of every job in list order; `build_scheduler` runs
them every `scheduler.tick_seconds` in APScheduler's BlockingScheduler, on one worker thread so the
jobs of one process never overlap (max_instances 1, late runs coalesced into one). After every job the
process writes its heartbeat row (models.operations.SchedulerHeartbeat): when each job last ran, its
counts or its error; `returnvisit status` reads them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.operations import record_beat
from models.settings import Settings
from scheduler.dispatch import ComposeSms, Dispatcher, recover_leases
from scheduler.gateway import Gateway
from scheduler.locks import (
    SCHEDULER_LOCK,
    acquire_lock,
    default_owner,
    is_sqlite,
    lock_holder,
    lock_ttl,
    release_lock,
)
from scheduler.outcomes import expire_sweep
from scheduler.picking import pick

logger = logging.getLogger(__name__)


@dataclass
class SchedulerEnv:
    """What the jobs share: sessions, settings, the gateway, the clock."""

    sessions: sessionmaker[Session]
    settings: Settings
    gateway: Gateway
    compose_sms: ComposeSms
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    owner: str = field(default_factory=default_owner)
    # When this process's first job ran (set by the first heartbeat).
    started_at: datetime | None = None


@dataclass(frozen=True)
class Job:
    """A periodic job: a stable id and a function of the environment returning counts."""

    id: str
    run: Callable[[SchedulerEnv], dict[str, int]]
    description: str


def recover_leases_job(env: SchedulerEnv) -> dict[str, int]:
    """Close attempts a crashed dispatcher committed but never placed."""
    counts: dict[str, int] = {}
    while True:
        with env.sessions() as session:
            batch = recover_leases(session, env.settings, env.clock())
            session.commit()
        for key, value in batch.items():
            counts[key] = counts.get(key, 0) + value
        if not batch:
            return counts


def expire_job(env: SchedulerEnv) -> dict[str, int]:
    """End surveys that can no longer be contacted before they expire."""
    with env.sessions() as session:
        counts = expire_sweep(session, env.settings, env.clock())
        session.commit()
    return counts


def pick_job(env: SchedulerEnv) -> dict[str, int]:
    """Turn newly eligible completed items into surveys, recording why others are skipped."""
    with env.sessions() as session:
        report = pick(session, env.settings, env.clock())
        session.commit()
    return report.counts()


def dispatch_job(env: SchedulerEnv) -> dict[str, int]:
    """Place the attempts of due surveys through the gateway."""
    dispatcher = Dispatcher(
        sessions=env.sessions,
        settings=env.settings,
        gateway=env.gateway,
        compose_sms=env.compose_sms,
        clock=env.clock,
        sleep=env.sleep,
        owner=env.owner,
    )
    return dispatcher.run()


def escalate_job(env: SchedulerEnv) -> dict[str, int]:
    """Hand overdue rectification cases to a supervisor."""
    from scheduler.escalation import escalate_job as sweep

    return sweep(env.sessions, env.settings, env.clock)


RETENTION_LOCK = "retention"
# Items one tick's purge handles at most (in `retention.batch_size` batches), so dispatch never waits
# long behind a first purge of years of data; the next ticks carry on until the run is finished.
RETENTION_ITEMS_PER_TICK = 5000


def retention_job(env: SchedulerEnv) -> dict[str, int]:
    """Once a day, purge personal data older than the retention period (one scheduler at a time)."""
    from models.retention import last_run_at, purge, purge_due, retention_cutoff

    settings = env.settings.retention
    now = env.clock()
    if not settings.scheduled_purge:
        return {}
    with env.sessions() as session:
        if not purge_due(last_run_at(session), now):
            return {}
        if not acquire_lock(session, RETENTION_LOCK, env.owner, now, timedelta(minutes=30)):
            return {"purging_elsewhere": 1}
    try:
        with env.sessions() as session:
            if not purge_due(last_run_at(session), now):  # another scheduler finished it meanwhile
                return {}
        report = purge(
            env.sessions,
            cutoff=retention_cutoff(now, settings.purge_after_days),
            now=now,
            region=env.settings.phones.default_region,
            batch_size=settings.batch_size,
            actor=f"scheduler {env.owner}",
            max_items=RETENTION_ITEMS_PER_TICK,
        )
    finally:
        with env.sessions() as session:
            release_lock(session, RETENTION_LOCK, env.owner)
    counts = {
        f"{table}.{what}": count for table, fields in report.counts.items() for what, count in fields.items()
    }
    return {**counts, "held_items": report.held_items, "finished": int(report.complete)}


# The jobs of one tick, in the order run_once runs them. Ids are stable: logs and APScheduler use them.
JOBS: tuple[Job, ...] = (
    Job("recover-leases", recover_leases_job, "close attempts left unplaced by a crash"),
    Job("expire", expire_job, "end surveys past their expiry"),
    Job("pick", pick_job, "pick completed items into surveys"),
    Job("dispatch", dispatch_job, "place due calls and texts"),
    Job("escalate", escalate_job, "escalate overdue rectification cases"),
    Job("retention", retention_job, "purge personal data past the retention period, daily"),
)


def holds_scheduler_lock(env: SchedulerEnv) -> bool:
    """On SQLite, take or renew the single-scheduler lock; elsewhere every process may run."""
    with env.sessions() as session:
        if not is_sqlite(session):
            return True
        if acquire_lock(session, SCHEDULER_LOCK, env.owner, env.clock(), lock_ttl(env.settings)):
            return True
        holder = lock_holder(session, SCHEDULER_LOCK)
    logger.warning("another scheduler holds the SQLite scheduler lock (%s); waiting", holder)
    return False


def release_scheduler_lock(env: SchedulerEnv) -> None:
    """Give the SQLite scheduler lock up (on shutdown)."""
    with env.sessions() as session:
        if is_sqlite(session):
            release_lock(session, SCHEDULER_LOCK, env.owner)


def beat(
    env: SchedulerEnv, job: Job, seconds: float, counts: dict[str, int] | None, error: str | None
) -> None:
    """Write this job's run into the process's heartbeat row; a failure here is logged, never raised."""
    now = env.clock()
    if env.started_at is None:
        env.started_at = now
    result: dict[str, Any] = {"at": now.isoformat(), "seconds": round(seconds, 3), "counts": counts or {}}
    if error is not None:
        result["error"] = error[:500]
    try:
        with env.sessions() as session:
            record_beat(
                session, owner=env.owner, started_at=env.started_at, job_id=job.id, job_result=result, now=now
            )
            session.commit()
    except Exception:  # the heartbeat must never stop the jobs it reports on
        logger.exception("could not write the scheduler heartbeat")


def run_job(job: Job, env: SchedulerEnv) -> dict[str, int]:
    """Run one job once (if this process may), log its counts, beat, and return them."""
    if not holds_scheduler_lock(env):
        counts = {"not_lock_holder": 1}
        beat(env, job, 0.0, counts, None)
        return counts
    started = time.perf_counter()
    try:
        counts = job.run(env)
    except Exception as exc:  # logged by APScheduler (or raised to run_once's caller) after the beat
        beat(env, job, time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}")
        raise
    seconds = time.perf_counter() - started
    logger.info("job %s (%.2f s): %s", job.id, seconds, counts)
    beat(env, job, seconds, counts, None)
    return counts


def run_once(env: SchedulerEnv, jobs: tuple[Job, ...] = JOBS) -> dict[str, dict[str, int]]:
    """Run one tick of every job in order; return each job's counts by id."""
    return {job.id: run_job(job, env) for job in jobs}


def build_scheduler(env: SchedulerEnv, jobs: tuple[Job, ...] = JOBS) -> BlockingScheduler:
    """Return a BlockingScheduler running every job each tick (call .start() to run it)."""
    tick = env.settings.scheduler.tick_seconds
    scheduler = BlockingScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": tick},
    )
    start = datetime.now(UTC)
    for job in jobs:
        scheduler.add_job(
            run_job,
            "interval",
            seconds=tick,
            args=(job, env),
            id=job.id,
            name=job.description,
            next_run_time=start,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )
    return scheduler
