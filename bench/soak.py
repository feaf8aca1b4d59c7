"""Soak: 50,000 simulated surveys through the whole loop at full speed, on SQLite and on PostgreSQL.

The loop of tests/test_whole_loop.py, long: service items generated (console/demo_data.py) and
imported (models.intake.Importer) a batch a tick, as a service centre pushes them; the demo campaign
with sampling 1.0 (and a max age that covers the generated half year); scheduler ticks
(scheduler.jobs.run_once) on a clock advanced a minute a tick; the simulated gateway's calls and texts
played by random citizens against the real webhook app in this process (FlaskTransport); at the end
the quarter metrics of every quarter the surveys fall in (models/metrics.py via live_figures).

Checked after every tick (bench/soak_checks.py): no lost answer (each input a citizen gave that the
webhook acknowledged is replayed through the pure engine, and what it answers must be stored, with
that value), no duplicate dial (no attempt handed to the gateway twice; no provider id twice in the
store at the end), and memory flat (RSS sampled after each tick; the last half of the run grows
< 10 % or < 20 MB, judged without file-backed pages, as SQLite maps the growing database file).
Printed and reported to bench/results.py: those, surveys/s, webhook requests/s and the quarter
figures. Exits 1 when a check fails.

    .venv/bin/python bench/soak.py [--surveys N] [--batch ITEMS] [--skip-pg] [--skip-sqlite] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import is_quick, report  # noqa: E402
from soak_checks import (  # noqa: E402
    CountingGateway,
    Ledger,
    MemorySample,
    MemoryVerdict,
    memory_sample,
    memory_verdict,
)
from webhook_load import PG_DEFAULT, fresh_postgres  # noqa: E402

from console.cli_scheduler import make_compose_sms  # noqa: E402
from console.demo import DEMO_CAMPAIGN  # noqa: E402
from console.demo_data import HEADERS, generate_items  # noqa: E402
from ivr.app import create_app  # noqa: E402
from ivr.script import default_script  # noqa: E402
from ivr.simulator import FlaskTransport, PhoneNetwork, RandomPersona, SimulatedGateway  # noqa: E402
from models import migrate  # noqa: E402
from models.db import make_engine, make_sessionmaker  # noqa: E402
from models.intake import Importer, IntakeOptions, map_headers  # noqa: E402
from models.quarter_ops import live_figures  # noqa: E402
from models.settings import Settings, load_settings  # noqa: E402
from models.surveys import Attempt, Survey, SurveyState  # noqa: E402
from scheduler.campaigns import apply_campaign, department_names, parse_definition  # noqa: E402
from scheduler.jobs import SchedulerEnv, run_once  # noqa: E402

TICK = timedelta(minutes=1)  # while items arrive: the campaign retries after 1 and 2 minutes
# Once every survey is picked, the rest wait for retries and expiry (an unanswered SMS conversation
# closes 1 h + 2 h after the first attempt): the clock moves faster.
DRAIN_TICK = timedelta(minutes=5)
QUARTERS_OF_ITEMS = 2  # items completed over this quarter and the one before: two quarters' figures
CAMPAIGN = {**DEMO_CAMPAIGN, "name": "soak", "sampling_rate": 1.0, "max_age": "200d"}
# Surveys per generated item (malformed rows, invalid numbers and the per-citizen cap take the
# rest), to size the item stream so it spans its half year; a stream that falls short is topped up.
YIELD_GUESS = 0.97
DRAIN_TICKS = 100  # 500 minutes: far past the last survey's expiry


@dataclass
class SoakRun:
    """The figures of one database's soak."""

    database: str
    surveys: int = 0
    items: int = 0
    ticks: int = 0
    seconds: float = 0.0
    webhook_seconds: float = 0.0
    open_surveys: int = 0
    dispositions: dict[str, int] = field(default_factory=dict)
    provider_id_twice: int = 0
    attempts: int = 0
    memory: list[MemorySample] = field(default_factory=list)  # after every tick
    ledger: Ledger = field(default_factory=Ledger)
    quarters: list[dict[str, Any]] = field(default_factory=list)
    metrics_seconds: float = 0.0


def item_rows(settings: Settings, now: datetime, wanted: int, seed: int) -> Iterator[tuple[str, int, dict]]:
    """Yield (source, line, row) of generated items, a fresh stream (own source) each round."""
    mapping = map_headers(HEADERS, settings.intake.columns)
    for round_number in range(1, 1000):
        count = math.ceil(wanted / YIELD_GUESS)
        rows = generate_items(count, now=now, seed=seed + round_number, quarters=QUARTERS_OF_ITEMS)
        for line, row in enumerate(rows, start=2):
            yield (
                f"soak{round_number}",
                line,
                {mapping[i]: value for i, value in enumerate(row.values()) if i in mapping},
            )


def soak(name: str, url: str, surveys: int, batch: int, seed: int) -> SoakRun:
    """Run the whole loop until `surveys` surveys were picked and every one of them ended."""
    run = SoakRun(name)
    now = datetime.now(UTC).replace(microsecond=0)
    settings = load_settings(
        env={},
        overrides={
            "database": {"url": url},
            # Full speed: no call-rate spacing, no cap on calls in flight (the simulator queues them).
            "gateway": {"calls_per_second": 1e9, "max_concurrent_calls": 10**9},
        },
    )
    engine = make_engine(url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    options = IntakeOptions(tz=settings.app.tz, area_code="023")
    script = default_script()
    app = create_app(settings, session_factory=sessions)
    rng = random.Random(seed)  # noqa: S311 - simulated citizens
    simulated = SimulatedGateway(
        PhoneNetwork(FlaskTransport(app), settings.twilio.auth_token, rng=random.Random(seed + 1)),  # noqa: S311
        settings.app.public_base_url,
        lambda _number: RandomPersona(random.Random(rng.random())),  # noqa: S311
    )
    gateway = CountingGateway(simulated)
    clock = {"now": now}
    env = SchedulerEnv(
        sessions=sessions,
        settings=settings,
        gateway=gateway,
        compose_sms=make_compose_sms(settings),
        clock=lambda: clock["now"],
        sleep=lambda _s: None,
    )
    stream = item_rows(settings, now, surveys, seed)
    ledger = run.ledger
    importing, drained_at, last_attempt, finished = True, 0, 0, 0
    bar = tqdm(total=surveys, unit="survey", desc=f"soak {name}", mininterval=2, dynamic_ncols=True)
    started = time.perf_counter()
    while True:
        if importing:
            # The last chunks only as many items as should make up the surveys still wanted.
            per_item = run.surveys / run.items if run.surveys else YIELD_GUESS
            chunk = list(islice(stream, min(batch, math.ceil((surveys - run.surveys) / per_item))))
            with sessions() as session:
                for source in dict.fromkeys(source for source, _, _ in chunk):
                    importer = Importer(session, options, source, now=clock["now"])
                    importer.import_batch([(line, row) for s, line, row in chunk if s == source])
                if run.ticks == 0:
                    definition = parse_definition(CAMPAIGN, departments=department_names(session))
                    apply_campaign(session, definition, clock["now"])
                session.commit()
            run.items += len(chunk)
        run_once(env)
        webhooks_started = time.perf_counter()
        records = simulated.run_pending()
        run.webhook_seconds += time.perf_counter() - webhooks_started
        with sessions() as session:
            created = session.scalar(
                select(func.count()).select_from(Attempt).where(Attempt.id > last_attempt)
            )
            last_attempt = session.scalar(select(func.max(Attempt.id))) or 0
            ledger.check_dials(gateway.handed, created or 0)
            ledger.check_answers(session, records, script)
            states = dict(session.execute(select(Survey.state, func.count()).group_by(Survey.state)).all())
        gateway.handed.clear()
        simulated.records.clear()  # what was checked goes: the harness must not grow
        del records
        run.ticks += 1
        run.memory.append(memory_sample())
        run.surveys = sum(states.values())
        done = states.get(SurveyState.DONE.value, 0)
        bar.update(min(done, surveys) - finished)
        finished = min(done, surveys)
        bar.set_postfix(tick=run.ticks, surveys=run.surveys, rss=f"{run.memory[-1].rss:.0f}MB", refresh=False)
        if importing and run.surveys >= surveys:
            importing, drained_at = False, run.ticks
        if not importing and done == run.surveys:
            break
        if not importing and run.ticks - drained_at > DRAIN_TICKS:
            break  # reported below as surveys still open
        clock["now"] += TICK if importing else DRAIN_TICK
    run.seconds = time.perf_counter() - started
    bar.close()
    with sessions() as session:
        run.open_surveys = run.surveys - done
        run.dispositions = dict(
            session.execute(
                select(Survey.disposition, func.count())
                .where(Survey.state == "done")
                .group_by(Survey.disposition)
            ).all()
        )
        run.attempts = session.scalar(select(func.count()).select_from(Attempt)) or 0
        run.provider_id_twice = len(
            session.execute(
                select(Attempt.provider_id)
                .where(Attempt.provider_id.is_not(None))
                .group_by(Attempt.provider_id)
                .having(func.count() > 1)
            ).all()
        )
        quarters = sorted(session.scalars(select(Survey.quarter).distinct()))
        _statistics_as_a_live_server_keeps_them(session)
        metrics_started = time.perf_counter()
        for quarter in quarters:
            run.quarters.append(summarise(quarter, live_figures(session, quarter, settings, clock["now"])))
        run.metrics_seconds = time.perf_counter() - metrics_started
    engine.dispose()
    return run


def _statistics_as_a_live_server_keeps_them(session: Any) -> None:
    """ANALYZE before the metrics when the PostgreSQL server runs without autovacuum.

    A live server's autovacuum keeps the planner's statistics (docs/deploy.md); a server started
    with it off (some test machines are) has none for the tables this run filled, and a quarter's
    metrics then take seconds instead of hundredths of one.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    if session.execute(text("SHOW autovacuum")).scalar() == "off":
        print("  autovacuum is off on this server: ANALYZE before the quarter metrics")
        session.execute(text("ANALYZE"))
        session.commit()


def summarise(quarter: str, figures: list[Any]) -> dict[str, Any]:
    """Sum a quarter's department figures into the few numbers the soak prints."""
    rated = sum(f.rated for f in figures)
    classes: dict[str, int] = {}
    for f in figures:
        for klass, count in f.aapor.counts.items():
            classes[klass] = classes.get(klass, 0) + count
    eligible = sum(count for klass, count in classes.items() if klass != "NE")
    return {
        "quarter": quarter,
        "departments": len(figures),
        "ranked": sum(1 for f in figures if f.rank),
        "surveys": sum(f.surveys for f in figures),
        "completes": sum(f.completes for f in figures),
        "rated": rated,
        "satisfaction_rate": sum(f.satisfied for f in figures) / rated if rated else None,
        "bad_review_rate": sum(f.bad for f in figures) / rated if rated else None,
        "satisfaction_index": (
            sum((f.satisfaction_index or 0) * f.rated for f in figures) / rated if rated else None
        ),
        "cases_opened": sum(f.cases.opened for f in figures),
        "rr1": classes.get("I", 0) / eligible if eligible else None,
    }


def own_memory(run: SoakRun) -> MemoryVerdict:
    """Judge the process's own memory: RSS without file-backed pages.

    File-backed pages (code, shared libraries, and any file a driver maps) belong to the kernel's
    page cache and are not the process growing, so "flat" is judged without them.
    """
    return memory_verdict([sample.anon for sample in run.memory])


def verdicts(run: SoakRun) -> dict[str, bool]:
    """Return each check of a run and whether it held."""
    ledger = run.ledger
    memory = own_memory(run)
    return {
        "0 lost answers": ledger.lost_answers == 0 and ledger.changed_answers == 0,
        "0 unexpected answers": ledger.unexpected_answers == 0,
        "0 duplicate dials": ledger.duplicate_dials == 0 and run.provider_id_twice == 0,
        "every attempt dialled": ledger.undialled_attempts == 0,
        "every survey ended": run.open_surveys == 0,
        "webhooks all 2xx": ledger.webhook_failures == 0,
        "memory flat": memory.flat,
    }


def print_and_report(run: SoakRun) -> bool:
    """Print one database's figures, report them to bench/results.py; return whether all checks held."""
    ledger, memory, name = run.ledger, own_memory(run), run.database
    rss = memory_verdict([sample.rss for sample in run.memory])
    checks = verdicts(run)
    surveys_per_second = run.surveys / run.seconds
    requests_per_second = ledger.webhook_requests / run.webhook_seconds if run.webhook_seconds else 0.0
    print(
        f"\n{name}: {run.surveys:,} surveys from {run.items:,} items, {run.ticks} ticks, {run.seconds:,.0f} s"
    )
    print(
        f"  answers: {ledger.expected_answers:,} given and acknowledged, {ledger.lost_answers} lost, "
        f"{ledger.changed_answers} changed, {ledger.unexpected_answers} never given"
    )
    print(
        f"  dials: {ledger.dials:,} handed to the gateway for {run.attempts:,} attempts; "
        f"{ledger.duplicate_dials} duplicate, {run.provider_id_twice} provider ids twice, "
        f"{ledger.undialled_attempts} attempts never dialled"
    )
    print(
        f"  webhooks: {ledger.webhook_requests:,} requests, {ledger.webhook_failures} not 2xx, "
        f"{ledger.simulator_errors} simulator errors, {ledger.replay_mismatches} replay mismatches"
    )
    print(
        f"  RSS: {rss.at_10:.0f} MB at 10 %, {rss.at_50:.0f} MB at 50 %, {rss.at_100:.0f} MB at 100 % "
        f"(last half {rss.growth_mb:+.1f} MB); without file-backed pages: {memory.at_10:.0f} / "
        f"{memory.at_50:.0f} / {memory.at_100:.0f} MB, last half {memory.growth_mb:+.1f} MB "
        f"({'flat' if memory.flat else 'GROWING'})"
    )
    print(f"  speed: {surveys_per_second:.1f} surveys/s, {requests_per_second:,.0f} webhook requests/s")
    print(f"  dispositions: {', '.join(f'{k} {v:,}' for k, v in sorted(run.dispositions.items(), key=str))}")
    print(f"  quarter metrics ({run.metrics_seconds:.2f} s):")
    for q in run.quarters:
        rate = f"{q['satisfaction_rate']:.1%}" if q["satisfaction_rate"] is not None else "-"
        index = f"{q['satisfaction_index']:.1f}" if q["satisfaction_index"] is not None else "-"
        bad = f"{q['bad_review_rate']:.1%}" if q["bad_review_rate"] is not None else "-"
        rr1 = f"{q['rr1']:.1%}" if q["rr1"] is not None else "-"
        print(
            f"    {q['quarter']}: {q['surveys']:,} surveys, {q['completes']:,} complete, "
            f"{q['rated']:,} rated, "
            f"satisfaction {rate}, index {index}, bad reviews {bad}, RR1 {rr1}, "
            f"{q['cases_opened']:,} cases, {q['ranked']} of {q['departments']} departments ranked"
        )
    for example in ledger.examples:
        print(f"  problem: {example}")
    for check, held in checks.items():
        print(f"  {check}: {'ok' if held else 'FAILED'}")

    report(f"{name}: surveys through the loop", run.surveys, note=f"{run.items:,} items, {run.ticks} ticks")
    report(
        f"{name}: lost answers",
        ledger.lost_answers + ledger.changed_answers,
        target="0",
        ok=checks["0 lost answers"],
        note=f"of {ledger.expected_answers:,} acknowledged; {ledger.unexpected_answers} never given",
    )
    report(
        f"{name}: duplicate dials",
        ledger.duplicate_dials + run.provider_id_twice,
        target="0",
        ok=checks["0 duplicate dials"],
        note=f"{ledger.dials:,} dials, {run.attempts:,} attempts, {ledger.undialled_attempts} never dialled",
    )
    report(
        f"{name}: memory growth over the last half",
        memory.growth_mb,
        "MB",
        target="< 20 MB or < 10 %",
        ok=memory.flat,
        note=f"RSS without file-backed pages {memory.at_10:.0f} / {memory.at_50:.0f} / "
        f"{memory.at_100:.0f} MB at 10 / 50 / 100 %",
    )
    report(
        f"{name}: RSS at the end",
        rss.at_100,
        "MB",
        note=f"{rss.at_10:.0f} / {rss.at_50:.0f} MB at 10 / 50 %; last half {rss.growth_mb:+.0f} MB "
        "with the mapped database file",
    )
    report(f"{name}: surveys/s", surveys_per_second, "/s", note=f"{run.seconds:,.0f} s wall clock")
    report(f"{name}: webhook requests/s (in process)", requests_per_second, "req/s")
    report(
        f"{name}: surveys still open at the end",
        run.open_surveys,
        target="0",
        ok=checks["every survey ended"],
    )
    for q in run.quarters:
        if q["satisfaction_rate"] is not None:
            report(
                f"{name}: {q['quarter']} satisfaction rate",
                q["satisfaction_rate"] * 100,
                "%",
                note=f"{q['rated']:,} rated, index {q['satisfaction_index']:.1f}, RR1 {q['rr1']:.1%}",
            )
    report(f"{name}: quarter metrics of {len(run.quarters)} quarters", run.metrics_seconds, "s")
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surveys", type=int, default=500 if is_quick() else 50_000)
    parser.add_argument("--batch", type=int, default=1000, help="items imported a tick (default 1000)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-url", default=os.environ.get("RETURNVISIT_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    if args.surveys < 1 or args.batch < 1:
        parser.error("--surveys and --batch must be at least 1")
    if args.skip_pg and args.skip_sqlite:
        parser.error("--skip-pg with --skip-sqlite leaves no database to soak")

    held = True
    with tempfile.TemporaryDirectory(prefix="rv_soak_") as tmp:
        databases = [] if args.skip_sqlite else [("SQLite", f"sqlite:///{tmp}/soak.db")]
        if not args.skip_pg:
            databases.append(("PostgreSQL", fresh_postgres(args.pg_url, "rv_bench_soak")))
        for name, url in databases:
            held = print_and_report(soak(name, url, args.surveys, args.batch, args.seed)) and held
    return 0 if held else 1


if __name__ == "__main__":
    raise SystemExit(main())
