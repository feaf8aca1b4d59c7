"""Call rate limits per gateway account: calls per second and calls in flight (DESIGN §5).

Calls per second are kept by spacing: each call takes the next free slot of every bucket it belongs
to (the account, and its campaign when the campaign sets a lower rate), and moves those buckets on by
1 / rate. The slots live in the `rate_slots` table, read and moved under a row lock in the same
transaction that writes the attempts, so several scheduler processes share one account's limit; a
process places each call at its slot, never before. Calls in flight are counted from the attempts
table in that same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from models.domain import Channel
from models.scheduling import RateSlot
from models.surveys import Attempt, AttemptStatus

ACCOUNT_BUCKET = "account"
# Attempt statuses of a call that may still occupy a line.
IN_FLIGHT = (
    AttemptStatus.PENDING,
    AttemptStatus.QUEUED,
    AttemptStatus.RINGING,
    AttemptStatus.IN_PROGRESS,
)
# A call whose status callback never came stops counting as in flight after this long.
STALE_CALL_AFTER = timedelta(hours=2)


def campaign_bucket(campaign_id: int) -> str:
    """Return the rate bucket of a campaign with its own calls-per-second limit."""
    return f"campaign:{campaign_id}"


def next_slot(
    free_at: Mapping[str, datetime], rates: Mapping[str, float], now: datetime
) -> tuple[datetime, dict[str, datetime]]:
    """Return the first instant a call may start in every bucket, and the buckets moved past it."""
    at = max([now, *(free_at.get(bucket, now) for bucket in rates)])
    moved = dict(free_at)
    for bucket, rate in rates.items():
        moved[bucket] = at + timedelta(seconds=1.0 / rate)
    return at, moved


def lock_buckets(session: Session, buckets: list[str], now: datetime) -> dict[str, datetime]:
    """Lock the buckets (in name order, so lockers never deadlock), creating missing ones; read them."""

    def read() -> dict[str, datetime]:
        rows = session.execute(
            select(RateSlot.bucket, RateSlot.next_free_at)
            .where(RateSlot.bucket.in_(buckets))
            .order_by(RateSlot.bucket)
            .with_for_update()
        )
        return dict(rows.all())

    free = read()
    if len(free) == len(buckets):
        return free
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(RateSlot)
        .values([{"bucket": bucket, "next_free_at": now} for bucket in buckets if bucket not in free])
        .on_conflict_do_nothing()
    )
    return read()


def store_buckets(session: Session, free_at: Mapping[str, datetime]) -> None:
    """Write the buckets' next free slots back (inside the locking transaction)."""
    for bucket, at in free_at.items():
        session.execute(update(RateSlot).where(RateSlot.bucket == bucket).values(next_free_at=at))


def calls_in_flight(session: Session, now: datetime, limit: int) -> int:
    """Return how many voice attempts may still occupy a line, counting no further than `limit`."""
    in_flight = (
        select(Attempt.id)
        .where(
            Attempt.channel == Channel.VOICE,
            Attempt.status.in_(IN_FLIGHT),
            Attempt.created_at > now - STALE_CALL_AFTER,
        )
        .limit(limit)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(in_flight)) or 0)
