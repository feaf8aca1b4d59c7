"""Who may write what, on each backend.

PostgreSQL: several scheduler processes run at once. Dispatch claims surveys with
`FOR UPDATE SKIP LOCKED` (scheduler.dispatch); picking takes a transaction-scoped advisory lock, so one
process picks at a time and the others skip that tick.

SQLite: one scheduler process at a time, enforced by a lock row (`scheduler_locks`, name "scheduler")
with an owner and an expiry that its holder renews before every job; another process finds the lock
held and does nothing until it expires (a crashed holder is replaced after `lock_ttl`). SQLite also
serialises writers, and a transaction that reads first and writes later fails at once when another
connection (the webhook app) wrote in between; `begin_write` therefore takes the write lock first.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.scheduling import SchedulerLock
from models.settings import Settings
from models.surveys import Survey

SCHEDULER_LOCK = "scheduler"
# pg_try_advisory_xact_lock key of the pick sweep (any constant shared by every scheduler).
PICK_LOCK_KEY = 0x52565049434B  # "RVPICK"


# What Survey.lease_owner holds (the lock and heartbeat owners hold more): PostgreSQL refuses more.
OWNER_LENGTH = Survey.__table__.c.lease_owner.type.length


def default_owner() -> str:
    """Return an owner id unique to this process: host, pid and a random suffix."""
    tail = f":{os.getpid()}:{uuid.uuid4().hex[:8]}"
    # A host name may be 63 characters or more (pods, cloud hosts): its end gives way.
    return socket.gethostname()[: OWNER_LENGTH - len(tail)] + tail


def is_sqlite(session: Session) -> bool:
    """Return whether the session talks to SQLite."""
    return session.get_bind().dialect.name == "sqlite"


def begin_write(session: Session) -> None:
    """On SQLite, take the write lock now so the transaction's reads stay current (no-op elsewhere)."""
    if is_sqlite(session):
        # A write statement that matches no row still takes SQLite's write lock.
        session.execute(
            update(SchedulerLock).where(SchedulerLock.name == "").values(owner=SchedulerLock.owner)
        )


def try_pick_lock(session: Session) -> bool:
    """Return whether this transaction may pick (PostgreSQL: one picker at a time)."""
    if is_sqlite(session):
        return True
    locked = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PICK_LOCK_KEY})
    return bool(locked.scalar())


def lock_ttl(settings: Settings) -> timedelta:
    """Return how long the scheduler lock lasts without renewal (longer than any one job)."""
    return timedelta(seconds=max(settings.scheduler.lease_seconds, 3 * settings.scheduler.tick_seconds))


def acquire_lock(session: Session, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew a named lock; return whether `owner` holds it now. Commits."""
    expires = now + ttl
    renewed = session.execute(
        update(SchedulerLock)
        .where(SchedulerLock.name == name, SchedulerLock.owner == owner)
        .values(expires_at=expires)
    )
    if renewed.rowcount == 0:  # type: ignore[attr-defined]
        taken = session.execute(
            update(SchedulerLock)
            .where(SchedulerLock.name == name, SchedulerLock.expires_at < now)
            .values(owner=owner, acquired_at=now, expires_at=expires)
        )
        if taken.rowcount == 0:  # type: ignore[attr-defined]
            try:
                with session.begin_nested():
                    session.add(SchedulerLock(name=name, owner=owner, acquired_at=now, expires_at=expires))
            except IntegrityError:
                pass
    holder = session.scalars(select(SchedulerLock.owner).where(SchedulerLock.name == name)).first()
    session.commit()
    return holder == owner


def release_lock(session: Session, name: str, owner: str) -> None:
    """Give a lock up if `owner` holds it. Commits."""
    session.execute(delete(SchedulerLock).where(SchedulerLock.name == name, SchedulerLock.owner == owner))
    session.commit()


def lock_holder(session: Session, name: str) -> tuple[str, datetime] | None:
    """Return who holds a lock and until when, or None."""
    row = session.execute(
        select(SchedulerLock.owner, SchedulerLock.expires_at).where(SchedulerLock.name == name)
    ).first()
    return None if row is None else (row[0], row[1])
