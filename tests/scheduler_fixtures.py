"""Factories and fakes shared by the scheduler tests: items, campaigns, surveys, a clock, gateways."""

from __future__ import annotations

import itertools
import os
import secrets
from datetime import datetime, timedelta
from typing import Any

from models.items import ServiceItem
from models.settings import Settings, load_settings
from models.surveys import Survey, SurveyState
from scheduler.campaigns import apply_campaign, parse_definition
from scheduler.gateway import CallRequest, GatewayError, GatewayResult, SmsRequest

_serial = itertools.count(1)


def loop_persona(rng: Any, number: str) -> Any:
    """A random simulated citizen for the whole-loop tests; a fifth of them never pick up.

    So the SMS fallback is always part of the loop: with chance alone, how many calls went
    unanswered three times depended on the hour the tests ran (the items are generated up to now).
    """
    import random

    from ivr.simulator import RandomPersona

    never = {"answer_rate": 0.0, "machine_rate": 0.0, "busy_rate": 0.0, "failed_rate": 0.0}
    return RandomPersona(random.Random(rng.random()), **(never if number.endswith(("0", "5")) else {}))


def settings_with(**sections: dict[str, Any]) -> Settings:
    """Development settings with some sections overridden."""
    return load_settings(env={}, overrides=sections)


def add_item(session, department, completed_at: datetime, **overrides: Any) -> ServiceItem:
    """Add a completed service item with a unique mobile number."""
    n = next(_serial)
    fields: dict[str, Any] = {
        "source": "test",
        "external_id": f"E{n:06d}",
        "department_id": department.id,
        "matter": "契税申报",
        "phone_raw": f"138{n:08d}",
        "phone_e164": f"+86138{n:08d}",
        "phone_kind": "mobile",
        "completed_at": completed_at,
        "imported_at": completed_at,
        "updated_at": completed_at,
    }
    fields.update(overrides)
    item = ServiceItem(**fields)
    session.add(item)
    session.flush()
    return item


def add_campaign(session, now: datetime, **config: Any):
    """Apply an active campaign (name 'c<n>' unless given) with the given definition keys."""
    data = {"name": f"c{next(_serial)}", "status": "active", **config}
    campaign, _ = apply_campaign(session, parse_definition(data), now)
    return campaign


def add_survey(session, campaign, item, **overrides: Any) -> Survey:
    """Add a survey of an item, due at `next_attempt_at` (SCHEDULED on voice by default)."""
    fields: dict[str, Any] = {
        "campaign_id": campaign.id,
        "item_id": item.id,
        "token": secrets.token_urlsafe(24),
        "department_id": item.department_id,
        "quarter": "2026Q4",
        "language": "zh-CN",
        "state": SurveyState.SCHEDULED,
        "channel": "voice",
        "created_at": item.completed_at,
        "updated_at": item.completed_at,
    }
    fields.update(overrides)
    survey = Survey(**fields)
    session.add(survey)
    session.flush()
    return survey


class FakeClock:
    """A clock that only moves when told to, or when something sleeps on it."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakeGateway:
    """Records every request with the clock's time; fails numbers listed in `failures`."""

    name = "fake"

    def __init__(self, clock=None, failures: dict[str, GatewayError] | None = None, check=None) -> None:
        self.clock = clock
        self.failures = failures or {}
        self.check = check
        self.requests: list[CallRequest | SmsRequest] = []
        self.times: list[datetime] = []

    def _handle(self, request: CallRequest | SmsRequest, prefix: str) -> GatewayResult:
        if self.check is not None:
            self.check(request)
        self.requests.append(request)
        if self.clock is not None:
            self.times.append(self.clock())
        if request.to in self.failures:
            raise self.failures[request.to]
        return GatewayResult(provider_id=f"{prefix}{request.attempt_id:032d}", status="queued")

    def place_call(self, request: CallRequest) -> GatewayResult:
        return self._handle(request, "CA")

    def send_sms(self, request: SmsRequest) -> GatewayResult:
        return self._handle(request, "SM")


class FileGateway:
    """Appends "<attempt id> <survey token>" per placed call to a file (survives SIGKILL).

    With `kill_after`, the process kills itself with SIGKILL right after logging that many calls,
    as a crash in the middle of a dispatch batch.
    """

    name = "file"

    def __init__(self, path: str, kill_after: int | None = None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.kill_after = kill_after
        self.placed = 0

    def place_call(self, request: CallRequest) -> GatewayResult:
        os.write(self.fd, f"{request.attempt_id} {request.survey_token}\n".encode())
        self.placed += 1
        if self.kill_after is not None and self.placed >= self.kill_after:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return GatewayResult(provider_id=f"CA{request.attempt_id:032d}", status="queued")

    def send_sms(self, request: SmsRequest) -> GatewayResult:
        os.write(self.fd, f"{request.attempt_id} {request.survey_token}\n".encode())
        return GatewayResult(provider_id=f"SM{request.attempt_id:032d}", status="queued")


# Scheduler processes for the multi-process tests (spawned: they import this light module only).

T0 = datetime.fromisoformat("2026-11-16T10:00:00+08:00")  # a Monday, inside a calling window
FAST = {"calls_per_second": 1_000_000.0, "max_concurrent_calls": 1_000_000}


def scheduler_env(sessions, clock, gateway=None, owner="tester", **sections):
    """A scheduler environment on a fake clock, with the given settings sections."""
    from scheduler.jobs import SchedulerEnv

    sections.setdefault("gateway", FAST)
    return SchedulerEnv(
        sessions=sessions,
        settings=settings_with(**sections),
        gateway=gateway or FakeGateway(clock),
        compose_sms=lambda session, survey: "请回复1-5",
        clock=clock,
        sleep=clock.sleep,
        owner=owner,
    )


def scheduler_process(db_url, log_path, clock_times, kill_after=None, batch_size=200):
    """A scheduler process: for each clock time, one tick of every job; the gateway logs to a file."""
    from pathlib import Path

    from models.db import make_engine, make_sessionmaker
    from scheduler.jobs import run_once

    engine = make_engine(db_url)
    clock = FakeClock(datetime.fromisoformat(clock_times[0]))
    env = scheduler_env(
        make_sessionmaker(engine),
        clock,
        gateway=FileGateway(log_path, kill_after),
        owner=f"worker-{Path(log_path).stem}",
        scheduler={"batch_size": batch_size},
    )
    for at in clock_times:
        clock.now = datetime.fromisoformat(at)
        run_once(env)
    engine.dispose()


def seed_due_surveys(db_url, count):
    """Migrate a database and add `count` due voice surveys of one active campaign (bulk inserts)."""
    from sqlalchemy import JSON, String, cast, insert, literal, select, text

    from models import migrate
    from models.base import UTCDateTime
    from models.db import make_engine, make_sessionmaker
    from models.departments import Department

    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        dept = Department(code="SWJ", name="税务局")
        session.add(dept)
        session.flush()
        campaign = add_campaign(session, T0)
        completed = T0 - timedelta(days=1)
        session.execute(
            insert(ServiceItem),
            [
                {
                    "source": "mp",
                    "external_id": str(n),
                    "department_id": dept.id,
                    "matter": "契税申报",
                    "phone_e164": f"+86139{n:08d}",
                    "phone_kind": "mobile",
                    "completed_at": completed,
                    "imported_at": completed,
                    "updated_at": completed,
                }
                for n in range(count)
            ],
        )
        items = ServiceItem.__table__
        columns = [
            "campaign_id",
            "item_id",
            "kind",
            "token",
            "department_id",
            "quarter",
            "language",
            "state",
            "channel",
            "next_attempt_at",
            "script_state",
            "created_at",
            "updated_at",
        ]
        session.execute(
            insert(Survey.__table__).from_select(
                columns,
                select(
                    literal(campaign.id),
                    items.c.id,
                    literal("survey"),
                    literal("t") + cast(items.c.id, String),
                    items.c.department_id,
                    literal("2026Q4"),
                    literal("zh-CN"),
                    literal("scheduled"),
                    literal("voice"),
                    literal(T0, UTCDateTime()),
                    literal({}, JSON()),
                    literal(completed, UTCDateTime()),
                    literal(completed, UTCDateTime()),
                ),
            )
        )
        session.commit()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:  # as autovacuum would, before a scheduler meets this much data
            conn.execute(text("ANALYZE"))
            conn.commit()
    return engine
