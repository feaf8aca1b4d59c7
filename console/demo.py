"""`make demo`: the whole loop on the embedded default (SQLite, simulated phones).

Sets up the database, generates and imports a county's completed items, applies a demo campaign,
then runs the webhook app, the staff console, the scheduler and the simulated phone network
together, printing what happens, until Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, make_server

from console.demo_data import write_items
from console.import_files import run_import
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.intake import IntakeOptions
from models.settings import Settings, load_settings
from models.staff import StaffUser
from models.surveys import Answer, Attempt, Survey

DEMO_ADMIN = ("admin", "returnvisit-demo")
# Contact at any hour so the demo shows calls whenever it runs; quick retries, short expiry.
DEMO_CAMPAIGN: dict[str, Any] = {
    "name": "demo",
    "status": "active",
    "sampling_rate": 0.5,
    "channels": ["voice", "sms"],
    "delay": "0m",
    "max_age": "45d",
    "retry": {"voice": "1m 2m", "sms": ""},
    "expire_after": "1h",
    "windows": ["00:00-24:00"],
    "working_days_only": False,
}


def demo_settings(settings: Settings, port: int) -> Settings:
    """Return the settings the demo runs with: its own ports, a fast tick, no call-rate wait."""
    return load_settings(
        overrides={
            "app": {"public_base_url": f"http://127.0.0.1:{port}"},
            "gateway": {"kind": "simulator", "calls_per_second": 20.0, "max_concurrent_calls": 50},
            "scheduler": {"tick_seconds": 3},
        },
        env={"RETURNVISIT_DATABASE_URL": settings.database.url},
    )


def prepare(
    settings: Settings,
    sessions: sessionmaker[Session],
    count: int,
    workdir: Path,
    echo: Callable[[str], None],
) -> None:
    """Generate and import items, apply the demo campaign and create the demo admin."""
    from console.users import create_user
    from scheduler.campaigns import apply_campaign, department_names, parse_definition

    workdir.mkdir(parents=True, exist_ok=True)
    items_path = workdir / "demo-items.csv"
    written = write_items(items_path, count, now=datetime.now(UTC))
    echo(f"generated {written} demo service items in {items_path}")
    summary = run_import(
        sessions,
        items_path,
        options=IntakeOptions(
            tz=settings.app.tz,
            region=settings.phones.default_region,
            area_code=settings.phones.default_area_code or None,
            auto_create_departments=True,
        ),
        columns=settings.intake.columns,
        source="demo",
    ).as_dict()
    echo(
        f"imported: {summary['new']} new, {summary['updated']} updated, {summary['unchanged']} unchanged, "
        f"{summary['skipped']} skipped {summary['skipped_by_reason']}"
    )
    with sessions() as session:
        definition = parse_definition(DEMO_CAMPAIGN, departments=department_names(session))
        campaign, created = apply_campaign(session, definition, datetime.now(UTC))
        if session.scalars(select(StaffUser).where(StaffUser.username == DEMO_ADMIN[0])).first() is None:
            create_user(session, DEMO_ADMIN[0], DEMO_ADMIN[1], "admin")
        session.commit()
    echo(f"campaign {campaign.name!r} {'created' if created else 'updated'}: sampling 50 %, voice then SMS")


def progress_line(sessions: sessionmaker[Session]) -> str:
    """Return one line of what has happened so far: placed, answered, dispositions."""
    with sessions() as session:
        attempts = session.scalar(select(func.count()).select_from(Attempt)) or 0
        answers = session.scalar(select(func.count()).select_from(Answer)) or 0
        rows = session.execute(
            select(Survey.disposition, func.count())
            .where(Survey.state == "done")
            .group_by(Survey.disposition)
        ).all()
        surveys = session.scalar(select(func.count()).select_from(Survey)) or 0
    done = ", ".join(f"{disposition} {count}" for disposition, count in sorted(rows, key=lambda r: -r[1]))
    return f"surveys {surveys}, attempts placed {attempts}, answers {answers}; finished: {done or 'none yet'}"


def _serve(app: Flask, port: int) -> BaseWSGIServer:
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True).start()
    return server


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run_demo(
    settings: Settings,
    *,
    count: int,
    port: int,
    serve: bool,
    echo: Callable[[str], None],
    workdir: Path = Path("var"),
    ticks: int | None = None,
) -> None:
    """Run the whole loop until Ctrl-C (or for `ticks` scheduler ticks)."""
    from console.cli_scheduler import make_compose_sms
    from console.web import create_console_app
    from ivr.app import create_app
    from ivr.simulator.gateway import from_settings
    from scheduler.jobs import SchedulerEnv, release_scheduler_lock, run_once

    settings = demo_settings(settings, port)
    # The demo prints its own progress lines; request and job logs would drown them.
    for name in ("werkzeug", "returnvisit.webhooks", "scheduler", "apscheduler", "ivr", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    engine = make_engine(settings.database.url)
    migrate.upgrade(engine)
    echo(f"database ready: {engine.url.render_as_string(hide_password=True)}")
    sessions = make_sessionmaker(engine)
    prepare(settings, sessions, count, workdir, echo)
    if not serve:
        engine.dispose()
        return
    servers = [_serve(create_app(settings), port), _serve(create_console_app(settings), port + 1)]
    echo(f"webhook app and intake API: http://127.0.0.1:{port}/  (OpenAPI: /api/v1/openapi.json)")
    echo(f"staff console: http://127.0.0.1:{port + 1}/  (log in as {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]})")
    # Simulated citizens' voice comments play in the console (a tone as long as each comment).
    gateway = from_settings(settings, recordings_url=f"http://127.0.0.1:{port + 1}/simulator/recordings")
    env = SchedulerEnv(
        sessions=sessions, settings=settings, gateway=gateway, compose_sms=make_compose_sms(settings)
    )
    echo("scheduler and simulated phones running; Ctrl-C stops everything")
    tick = 0
    # A TERM (a supervisor, `timeout`) stops it as Ctrl-C does: servers down, scheduler lock given up.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        while ticks is None or tick < ticks:
            counts = run_once(env)
            placed = counts.get("dispatch", {})
            echo(f"tick {tick}: picked {counts.get('pick', {}).get('picked', 0)}, dispatched {placed}")
            time.sleep(settings.scheduler.tick_seconds)
            echo("  " + progress_line(sessions))
            tick += 1
    except KeyboardInterrupt:
        echo("stopping")
    finally:
        stop = getattr(gateway, "stop", None)
        if stop:
            stop()
        for server in servers:
            server.shutdown()
        release_scheduler_lock(env)  # a `scheduler` started next need not wait for the lock to expire
        engine.dispose()
    echo("stopped")
