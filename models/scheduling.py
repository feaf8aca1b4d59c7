"""The scheduler's own state: the single-scheduler lock (SQLite) and the call-rate slots."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.surveys import Attempt


class SchedulerLock(Base):
    """A named lock with an owner and an expiry, renewed by its holder (one scheduler on SQLite)."""

    __tablename__ = "scheduler_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class RateSlot(Base):
    """When the next outbound call of a rate bucket (the gateway account, a campaign) may start."""

    __tablename__ = "rate_slots"

    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_free_at: Mapped[datetime]


# An index the scheduler's sweeps need on a table defined in models/surveys.py: the calls in flight
# (concurrency limit, lease recovery). The per-citizen contact cap asks by phone (items' phone index,
# then surveys by item), so surveys need no index of their creation time.
Index("ix_attempts_channel_status", Attempt.__table__.c.channel, Attempt.__table__.c.status)
