"""What operators watch: the scheduler's heartbeat, and the record of each retention purge."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, String, Text, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base


class SchedulerHeartbeat(Base):
    """One row per scheduler process, rewritten at the end of every tick."""

    __tablename__ = "scheduler_heartbeats"

    # The process's owner id (host:pid:suffix), the same one that holds leases and locks.
    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime]
    last_tick_at: Mapped[datetime]
    last_tick_seconds: Mapped[float] = mapped_column(Float)
    # False when a job of the tick raised; last_error then holds its message.
    last_tick_ok: Mapped[bool]
    # Each job's counts by job id, as the tick returned them.
    last_tick_jobs: Mapped[dict[str, Any]]
    last_error: Mapped[str | None] = mapped_column(Text)


class RetentionRun(Base):
    """One purge of personal data older than the retention period (dry runs are not recorded)."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(index=True)
    # Rows older than this lost their personal data.
    cutoff: Mapped[datetime]
    # "scheduler <owner>" or "cli".
    actor: Mapped[str] = mapped_column(String(120))
    # Rows changed, by table and field.
    counts: Mapped[dict[str, Any]]


# A heartbeat this old belongs to a process that is gone: the next beat of any scheduler drops it.
FORGET_HEARTBEATS_AFTER = timedelta(days=7)


def record_beat(
    session: Session,
    *,
    owner: str,
    started_at: datetime,
    job_id: str,
    job_result: dict[str, Any],
    now: datetime,
) -> SchedulerHeartbeat:
    """Write one job's run into this scheduler's heartbeat row (the caller commits)."""
    beat = session.get(SchedulerHeartbeat, owner)
    if beat is None:
        beat = SchedulerHeartbeat(owner=owner, started_at=started_at, last_tick_jobs={})
        session.add(beat)
    beat.host = socket.gethostname()[:255]
    beat.pid = os.getpid()
    beat.last_tick_at = now
    jobs = {**(beat.last_tick_jobs or {}), job_id: job_result}
    beat.last_tick_jobs = jobs
    beat.last_tick_seconds = float(sum(float(run.get("seconds", 0.0)) for run in jobs.values()))
    errors = [run["error"] for run in jobs.values() if run.get("error")]
    beat.last_tick_ok = not errors
    beat.last_error = job_result.get("error") or (errors[0] if errors else None)
    session.execute(
        delete(SchedulerHeartbeat).where(
            SchedulerHeartbeat.owner != owner,
            SchedulerHeartbeat.last_tick_at < now - FORGET_HEARTBEATS_AFTER,
        )
    )
    return beat
