"""What operators watch: the scheduler's heartbeat, and the record of each retention purge."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, String, Text
from sqlalchemy.orm import Mapped, mapped_column

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
