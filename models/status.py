"""What `returnvisit status` reports: the schedulers' heartbeats, queue depths, today's counts, errors."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from models.operations import SchedulerHeartbeat
from models.surveys import Answer, Attempt, AttemptStatus, Survey, SurveyState

FAILED_STATUSES = (AttemptStatus.FAILED, AttemptStatus.UNDELIVERED)


def is_stale(last_tick_at: datetime | None, now: datetime, stale_after: timedelta) -> bool:
    """Return whether a heartbeat (or its absence) means the scheduler is not running."""
    return last_tick_at is None or now - last_tick_at > stale_after


def stale_after(tick_seconds: int) -> timedelta:
    """Return how old a heartbeat may be before it is stale: three ticks, at least two minutes."""
    return max(timedelta(seconds=3 * tick_seconds), timedelta(minutes=2))


@dataclass
class SchedulerStatus:
    """One scheduler process as its heartbeat row shows it."""

    owner: str
    host: str
    pid: int
    started_at: datetime
    last_tick_at: datetime
    age_seconds: float
    stale: bool
    ok: bool
    last_error: str | None
    jobs: dict[str, Any]


@dataclass
class StatusReport:
    """Everything `returnvisit status` prints, as of `now`."""

    now: datetime
    day_start: datetime
    schedulers: list[SchedulerStatus]
    # True when no scheduler has a fresh heartbeat.
    stale: bool
    queue: dict[str, int]
    today: dict[str, dict[str, int]] = field(default_factory=dict)
    # Today's failed attempts by channel, status and error code.
    gateway_errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (times as ISO strings)."""
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def local_day_start(now: datetime, tz: ZoneInfo) -> datetime:
    """Return the start of `now`'s day in the service centre's time zone."""
    return datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)


def schedulers(session: Session, now: datetime, limit: timedelta) -> list[SchedulerStatus]:
    """Return every scheduler heartbeat, newest first."""
    rows = session.scalars(select(SchedulerHeartbeat).order_by(SchedulerHeartbeat.last_tick_at.desc()))
    return [
        SchedulerStatus(
            owner=beat.owner,
            host=beat.host,
            pid=beat.pid,
            started_at=beat.started_at,
            last_tick_at=beat.last_tick_at,
            age_seconds=round((now - beat.last_tick_at).total_seconds(), 1),
            stale=is_stale(beat.last_tick_at, now, limit),
            ok=beat.last_tick_ok,
            last_error=beat.last_error,
            jobs=dict(beat.last_tick_jobs or {}),
        )
        for beat in rows
    ]


def queue_depths(session: Session, now: datetime) -> dict[str, int]:
    """Return surveys due now, in flight, waiting for a retry and waiting for their first contact."""
    scheduled = Survey.state == SurveyState.SCHEDULED
    retry = Survey.first_attempt_at.is_not(None)

    def count(*conditions: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)

    row = session.execute(
        select(
            count(scheduled, Survey.next_attempt_at <= now),
            count(scheduled, Survey.next_attempt_at <= now, retry),
            count(Survey.state.in_([SurveyState.DIALLING, SurveyState.IN_PROGRESS])),
            count(scheduled, retry),
            count(scheduled, ~retry, or_(Survey.next_attempt_at > now, Survey.next_attempt_at.is_(None))),
        ).where(Survey.state != SurveyState.DONE)
    ).one()
    due, due_retries, in_flight, retrying, waiting = (int(value) for value in row)
    return {
        "due": due,
        "due_retries": due_retries,
        "in_flight": in_flight,
        "retrying": retrying,
        "waiting_first_contact": waiting,
    }


def _by_channel(rows: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for channel, count in rows:
        counts[str(channel)] = int(count)
    counts["total"] = sum(counts.values())
    return counts


def today_counts(session: Session, start: datetime, now: datetime) -> dict[str, dict[str, int]]:
    """Return attempts, answers and completed surveys since `start`, by channel."""
    attempts = session.execute(
        select(Attempt.channel, func.count())
        .where(Attempt.created_at >= start, Attempt.created_at <= now)
        .group_by(Attempt.channel)
    )
    answers = session.execute(
        select(Answer.channel, func.count())
        .where(Answer.received_at >= start, Answer.received_at <= now)
        .group_by(Answer.channel)
    )
    completed = session.execute(
        select(Survey.channel, func.count())
        .where(Survey.finished_at >= start, Survey.finished_at <= now, Survey.disposition == "complete")
        .group_by(Survey.channel)
    )
    return {
        "attempts": _by_channel(attempts),
        "answers": _by_channel(answers),
        "completed_surveys": _by_channel(completed),
    }


def gateway_errors(session: Session, start: datetime, now: datetime) -> list[dict[str, Any]]:
    """Return today's failed and undelivered attempts by channel and error code, most frequent first."""
    ended = func.coalesce(Attempt.ended_at, Attempt.created_at)
    rows = session.execute(
        select(Attempt.channel, Attempt.status, Attempt.error_code, func.count())
        .where(Attempt.status.in_(FAILED_STATUSES), ended >= start, ended <= now)
        .group_by(Attempt.channel, Attempt.status, Attempt.error_code)
    )
    merged: dict[tuple[str, str, str], int] = defaultdict(int)
    for channel, status, code, count in rows:
        merged[(str(channel), str(status), code or "none")] += int(count)
    ordered = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        {"channel": channel, "status": status, "error_code": code, "count": count}
        for (channel, status, code), count in ordered
    ]


def status_report(session: Session, now: datetime, *, tz: ZoneInfo, tick_seconds: int) -> StatusReport:
    """Return the operator's view of the system as of `now`."""
    start = local_day_start(now, tz)
    beats = schedulers(session, now, stale_after(tick_seconds))
    return StatusReport(
        now=now,
        day_start=start,
        schedulers=beats,
        stale=all(beat.stale for beat in beats),
        queue=queue_depths(session, now),
        today=today_counts(session, start, now),
        gateway_errors=gateway_errors(session, start, now),
    )
