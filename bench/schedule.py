"""Benchmark: pick a day's eligible items among 1,000,000, claim 10,000 due surveys, dispatch rate.

For each database (SQLite, PostgreSQL): bulk-load the items (completed over `--days` days, so one
day holds items / days of them), apply a campaign whose age range is one day (delay 2h, max age 26h),
time one pick sweep, top the due surveys up to `--due`, time claiming them in dispatch batches, then
time dispatching them all to a no-op gateway with no rate limit. Figures are printed beside the
targets: pick + claim of 10,000 < 1 s on PostgreSQL; dispatch >= 1,000 attempts/s.

The machine is shared, so each run also times its own floor: a bare INSERT ... SELECT of as many
survey rows as a pick writes (same table, same indexes, then removed again), and prints pick + claim
as a multiple of it beside the absolute figure.

    .venv/bin/python bench/schedule.py [--items N] [--days D] [--due N] [--batch-sizes 100,500]
                                       [--pg-url URL] [--skip-pg] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, bindparam, create_engine, func, insert, select, text, update
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import migrate  # noqa: E402
from models.base import UTCDateTime  # noqa: E402
from models.db import make_engine, make_sessionmaker  # noqa: E402
from models.departments import Department  # noqa: E402
from models.items import ServiceItem  # noqa: E402
from models.settings import Settings, load_settings  # noqa: E402
from models.surveys import Survey, SurveyState  # noqa: E402
from scheduler.campaigns import apply_campaign, parse_definition  # noqa: E402
from scheduler.dispatch import Dispatcher, claim_due  # noqa: E402
from scheduler.gateway import CallRequest, GatewayResult, SmsRequest  # noqa: E402
from scheduler.picking import pick  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import report  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai: a window is open
TARGET_PICK_CLAIM = 1.0
TARGET_DISPATCH = 1000.0
COLUMNS = (
    "source",
    "external_id",
    "department_id",
    "matter",
    "phone_raw",
    "phone_e164",
    "phone_kind",
    "completed_at",
    "imported_at",
    "updated_at",
)


class NoopGateway:
    """Accepts every call and text at once."""

    name = "noop"

    def place_call(self, request: CallRequest) -> GatewayResult:
        return GatewayResult(provider_id=f"CA{request.attempt_id:032d}", status="queued")

    def send_sms(self, request: SmsRequest) -> GatewayResult:
        return GatewayResult(provider_id=f"SM{request.attempt_id:032d}", status="queued")


def item_rows(count: int, days: int, departments: list[int]) -> Iterator[tuple]:
    """Yield service items completed evenly over `days` days before NOW (a few landlines, invalid)."""
    rng = random.Random(2026)
    span = days * 86400
    for n in range(count):
        completed = NOW - timedelta(seconds=span * (n + 0.5) / count)
        kind = "fixed" if n % 50 == 0 else "invalid" if n % 97 == 0 else "mobile"
        phone = None if kind == "invalid" else f"+86{138 + n % 10}{rng.randrange(10**8):08d}"
        yield (
            "bench",
            f"B{n:08d}",
            departments[n % len(departments)],
            f"事项{n % 40:02d}",
            phone or "12345",
            phone,
            kind,
            completed,
            completed,
            completed,
        )


def load_items(engine: Engine, rows: Iterator[tuple]) -> None:
    """Bulk-load items: COPY on PostgreSQL, executemany of plain tuples on SQLite."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY service_items ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:  # the text format UTCDateTime stores on SQLite: naive UTC
            marks = ", ".join("?" for _ in COLUMNS)
            cursor.execute("BEGIN")
            cursor.executemany(
                f"INSERT INTO service_items ({', '.join(COLUMNS)}) VALUES ({marks})",
                (
                    row[:7] + tuple(f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}" for value in row[7:])
                    for row in rows
                ),
            )
        raw.commit()
    finally:
        raw.close()
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def bare_insert_seconds(engine: Engine, campaign_id: int, count: int) -> float:
    """Time a bare INSERT ... SELECT of `count` survey rows and its commit; then remove them again."""
    postgres = engine.dialect.name == "postgresql"
    token = "md5(random()::text || id::text)" if postgres else "lower(hex(randomblob(16)))"
    sql = text(
        "INSERT INTO surveys (campaign_id, item_id, kind, token, department_id, quarter, language, state,"
        " channel, next_attempt_at, script_state, created_at, updated_at)"
        f" SELECT :campaign_id, id, 'survey', {token}, department_id, '2026Q4', 'zh-CN', 'scheduled',"
        " 'voice', :now, '{}', :now, :now FROM service_items ORDER BY completed_at DESC LIMIT :count"
    ).bindparams(bindparam("now", type_=UTCDateTime()))
    with engine.connect() as conn:
        started = time.perf_counter()
        conn.execute(sql, {"campaign_id": campaign_id, "now": NOW, "count": count})
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute(text("DELETE FROM surveys"))
        conn.commit()
    if postgres:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE surveys"))
    return seconds


def top_up_due(session: Session, campaign_id: int, wanted: int) -> int:
    """Add due surveys for older items until `wanted` are due; return how many are due."""
    due = (
        session.scalar(
            select(func.count()).where(Survey.state == SurveyState.SCHEDULED, Survey.next_attempt_at <= NOW)
        )
        or 0
    )
    if due < wanted:
        surveyed = select(Survey.item_id)
        items = session.execute(
            select(ServiceItem.id, ServiceItem.department_id)
            .where(ServiceItem.phone_kind == "mobile", ServiceItem.id.not_in(surveyed))
            .order_by(ServiceItem.completed_at.desc())
            .limit(wanted - due)
        ).all()
        session.execute(
            insert(Survey),
            [
                {
                    "campaign_id": campaign_id,
                    "item_id": item_id,
                    "kind": "survey",
                    "token": secrets.token_urlsafe(24),
                    "department_id": dept,
                    "quarter": "2026Q4",
                    "language": "zh-CN",
                    "state": "scheduled",
                    "channel": "voice",
                    "next_attempt_at": NOW,
                    "script_state": {},
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for item_id, dept in items
            ],
        )
        due += len(items)
    session.commit()
    return due


def reset_due(engine: Engine) -> None:
    """Put every survey back to due and forget the attempts, for the next batch size."""
    with engine.connect() as conn:
        for table in ("messages", "attempts", "rate_slots"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(
            update(Survey).values(
                state=SurveyState.SCHEDULED, lease_owner=None, lease_expires_at=None, first_attempt_at=None
            )
        )
        conn.commit()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE surveys"))
            conn.execute(text("VACUUM ANALYZE attempts"))


def claim_and_dispatch(name: str, engine: Engine, settings: Settings, due: int) -> tuple[float, float]:
    """Time claiming `due` surveys in dispatch batches, then dispatching them all; reset after."""
    sessions = make_sessionmaker(engine)
    batch = settings.scheduler.batch_size
    claimed = 0
    started = time.perf_counter()
    with sessions() as session:
        while claimed < due:
            ids = claim_due(
                session, owner="bench", now=NOW, lease=timedelta(minutes=5), limit=min(batch, due - claimed)
            )
            session.commit()
            if not ids:
                break
            claimed += len(ids)
    claim_seconds = time.perf_counter() - started
    print(f"{name}: claimed {claimed:,} in {claim_seconds:.2f} s, {batch} a batch", flush=True)
    with sessions() as session:  # give them back, then dispatch them all
        session.execute(
            update(Survey)
            .where(Survey.state == SurveyState.DIALLING)
            .values(state=SurveyState.SCHEDULED, lease_owner=None, lease_expires_at=None)
        )
        session.commit()
    noop = NoopGateway()
    dispatcher = Dispatcher(
        sessions, settings, noop, lambda s, v: "请回复1-5", lambda: NOW, lambda _s: None, "b"
    )
    started = time.perf_counter()
    result = dispatcher.run(budget_seconds=3600)
    seconds = time.perf_counter() - started
    placed = result.get("placed", 0)
    print(f"{name}: dispatched {placed:,} in {seconds:.2f} s, {batch} a batch: {result}", flush=True)
    reset_due(engine)
    return claim_seconds, placed / seconds if seconds else 0.0


def run(name: str, url: str, args: argparse.Namespace) -> list[dict[str, float]]:
    """Load, pick once, then claim and dispatch once per batch size; return a figure line each."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        departments = [Department(code=f"D{n:02d}", name=f"部门{n:02d}") for n in range(20)]
        session.add_all(departments)
        session.commit()
        dept_ids = [d.id for d in departments]
    started = time.perf_counter()
    load_items(engine, item_rows(args.items, args.days, dept_ids))
    print(f"{name}: loaded {args.items:,} items in {time.perf_counter() - started:.1f} s", flush=True)

    def settings_for(batch: int) -> Settings:
        return load_settings(
            env={},
            overrides={
                "gateway": {"calls_per_second": 1e9, "max_concurrent_calls": 10**9},
                "scheduler": {"contact_cap_days": 30, "batch_size": batch},
            },
        )

    with sessions() as session:
        campaign, _ = apply_campaign(
            session, parse_definition({"name": "bench", "status": "active", "max_age": "26h"}), NOW
        )
        session.commit()
        campaign_id = campaign.id
    bare_seconds = bare_insert_seconds(engine, campaign_id, args.due)
    print(f"{name}: bare INSERT ... SELECT of {args.due:,} survey rows {bare_seconds:.2f} s", flush=True)
    with sessions() as session:
        started = time.perf_counter()
        report = pick(session, settings_for(100), NOW)
        session.commit()
        pick_seconds = time.perf_counter() - started
    counts = report.counts()
    print(f"{name}: pick {pick_seconds:.2f} s: {counts}", flush=True)
    with sessions() as session:
        top_up_due(session, campaign_id, args.due)
    reset_due(engine)

    lines = []
    for batch in args.batch_sizes:
        claim_seconds, rate = claim_and_dispatch(name, engine, settings_for(batch), args.due)
        lines.append(
            {
                "batch": batch,
                "picked": counts["picked"],
                "pick": pick_seconds,
                "claim": claim_seconds,
                "rate": rate,
                "bare": bare_seconds,
            }
        )
    engine.dispose()
    return lines


def fresh_postgres(url: str) -> str:
    """Create an empty database beside the given one for the benchmark."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "rv_bench_schedule" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "rv_bench_schedule"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/rv_bench_schedule"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="service items in the table")
    parser.add_argument("--days", type=int, default=100, help="days the items were completed over")
    parser.add_argument("--due", type=int, default=10_000, help="due surveys to claim and dispatch")
    parser.add_argument(
        "--batch-sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[100, 500],
        help="comma-separated scheduler.batch_size values to claim and dispatch with (default 100,500)",
    )
    parser.add_argument("--pg-url", default=os.environ.get("RETURNVISIT_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_sqlite:
            results["SQLite"] = run("SQLite", f"sqlite:///{tmp}/bench.db", args)
        if not args.skip_pg:
            results["PostgreSQL"] = run("PostgreSQL", fresh_postgres(args.pg_url), args)

    print()
    print(
        f"{args.items:,} items over {args.days} days: a day's eligible items picked; "
        f"{args.due:,} due surveys claimed, then dispatched to a no-op gateway"
    )
    print(
        f"{'database':<12}{'batch':>6}{'picked':>8}{'pick s':>8}{'claim s':>9}{'pick+claim':>12}"
        f"{'target':>8}{'bare s':>8}{'ratio':>7}{'dispatch/s':>12}{'target':>10}"
    )
    for name, lines in results.items():
        for r in lines:
            total = r["pick"] + r["claim"]
            target = f"< {TARGET_PICK_CLAIM:.0f} s" if name == "PostgreSQL" else "-"
            ok = (total < TARGET_PICK_CLAIM or name != "PostgreSQL") and r["rate"] >= TARGET_DISPATCH
            print(
                f"{name:<12}{r['batch']:>6}{r['picked']:>8,}{r['pick']:>8.2f}{r['claim']:>9.2f}"
                f"{total:>12.2f}{target:>8}{r['bare']:>8.2f}{total / r['bare']:>6.1f}x"
                f"{r['rate']:>12,.0f}{'>= 1,000':>10}  {'ok' if ok else 'MISSED'}"
            )
            batch = f"batch {r['batch']}"
            if name == "PostgreSQL":
                report(
                    f"{name}: pick + claim {args.due:,} ({batch})",
                    total,
                    "s",
                    target=f"< {TARGET_PICK_CLAIM:.0f}",
                    ok=total < TARGET_PICK_CLAIM,
                    note=f"{total / r['bare']:.1f} x the bare INSERT ... SELECT ({r['bare']:.2f} s)",
                )
            else:
                report(f"{name}: pick + claim {args.due:,} ({batch})", total, "s")
            report(f"{name}: bare INSERT ... SELECT of the rows", r["bare"], "s")
            report(
                f"{name}: dispatch ({batch})",
                r["rate"],
                "attempts/s",
                target=">= 1,000",
                ok=r["rate"] >= TARGET_DISPATCH,
            )
    print(
        "bare s: a bare INSERT ... SELECT of as many survey rows, same run; ratio: pick + claim over it "
        "(load average now " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + ")"
    )


if __name__ == "__main__":
    main()
