"""Benchmark: one quarter's full metrics and the 8-quarter trend over a store of 1,000,000 answers.

    python bench/quarter_report.py                         # SQLite file under /tmp
    python bench/quarter_report.py --url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/quarter_report.py --answers 50000         # a quick, smaller run

The store is built with bulk inserts (executemany on SQLite, COPY on PostgreSQL) into a database of
its own (a fresh file, or a fresh PostgreSQL database "rv_bench" next to the one named), migrated to
head, analysed, and the quarters before 2026Q3 are closed as they would be in production. Measured:
what a report of 2026Q3 computes (live figures of every department, the previous quarter from its
snapshot) and metrics.trend over all 8 quarters, each best of 3. `--reuse` measures an existing
bench database again without rebuilding it. Targets (issue 6): one quarter < 0.5 s on PostgreSQL
and < 1 s on SQLite; the trend over 8 quarters < 1.5 s on PostgreSQL and < 3 s on SQLite.

The machine is shared, so each run also times the issue's baseline: a bare GROUP BY department,
quarter, grade over the ratings (a flat copy of every rating with its survey's department and
quarter, made before timing; 890,000 of the 1,000,000 answers, so the baseline is if anything
quicker than the issue's), and prints each figure as a multiple of it beside the multiple the
issue's figures allow (0.3 s on PostgreSQL and 1.2 s on SQLite on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from models import migrate  # noqa: E402
from models.db import make_engine, make_sessionmaker  # noqa: E402
from models.metrics import trend  # noqa: E402
from models.quarter_ops import close_quarter, live_figures  # noqa: E402
from models.settings import load_settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import report  # noqa: E402

TARGETS = {"sqlite": (1.0, 3.0), "postgresql": (0.5, 1.5)}
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
BARE_QUIET = {"sqlite": 1.2, "postgresql": 0.3}  # the bare GROUP BY on a quiet machine, s
QUARTERS = ["2025Q1", "2025Q2", "2025Q3", "2025Q4", "2026Q1", "2026Q2", "2026Q3", "2026Q4"]
DISPOSITIONS = [  # (disposition, weight, rated)
    ("complete", 62, True),
    ("partial", 5, True),
    ("break_off", 3, False),
    ("refused", 3, False),
    ("no_answer", 12, False),
    ("busy", 3, False),
    ("machine", 3, False),
    ("not_contacted", 4, False),
    ("failed", 2, False),
    ("not_eligible", 3, False),
]
GRADES = ["very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied"]
GRADE_WEIGHTS = [50, 28, 14, 5, 3]
CATEGORIES = ["stuck", "shirk", "delay", "chaotic", "cold", "poor"]
BATCH = 20_000
SETTINGS = load_settings(env={})


def fresh_database(url: str) -> str:
    """Return the URL of an empty benchmark database (a new file, or a new PostgreSQL database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "/tmp/rv_bench.db")  # noqa: S108 - a throwaway bench file
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "rv_bench" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "rv_bench"'))
    admin.dispose()
    return parsed.set(database="rv_bench").render_as_string(hide_password=False)


class Loader:
    """Bulk rows into a table through the raw driver connection."""

    def __init__(self, dbapi: Any, dialect: str) -> None:
        self.dbapi, self.dialect = dbapi, dialect

    def time(self, value: datetime) -> Any:
        # SQLite keeps naive UTC text, as models.base.UTCDateTime writes it.
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") if self.dialect == "sqlite" else value

    def load(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        cursor = self.dbapi.cursor()
        if self.dialect == "postgresql":
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)  # noqa: S608
        cursor.close()


COLUMNS = {
    "service_items": [
        "id",
        "source",
        "external_id",
        "department_id",
        "matter",
        "phone_kind",
        "completed_at",
        "imported_at",
        "updated_at",
    ],
    "surveys": [
        "id",
        "campaign_id",
        "item_id",
        "kind",
        "token",
        "department_id",
        "quarter",
        "language",
        "state",
        "disposition",
        "channel",
        "script_state",
        "created_at",
        "updated_at",
    ],
    "attempts": ["id", "survey_id", "channel", "number", "status", "created_at"],
    "answers": ["id", "survey_id", "question", "value", "channel", "received_at", "late"],
    "cases": [
        "id",
        "survey_id",
        "department_id",
        "quarter",
        "grade",
        "categories",
        "state",
        "opened_at",
        "due_at",
        "answered_at",
        "reopened_count",
    ],
}
COUNT_KEYS = {"service_items": "items"}


def flush(loader: Loader, rows: dict[str, list[tuple[Any, ...]]], counts: dict[str, int]) -> None:
    """Write the buffered rows, parents first, and empty the buffers."""
    for table, columns in COLUMNS.items():
        loader.load(table, columns, rows[table])
        counts[COUNT_KEYS.get(table, table)] += len(rows[table])
        rows[table].clear()


def build(url: str, answers_wanted: int, departments: int, seed: int) -> dict[str, int]:
    """Fill the store; return how many rows of each table were written."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    dialect = engine.dialect.name
    rnd = random.Random(seed)
    counts = dict.fromkeys(("departments", "items", "surveys", "attempts", "answers", "cases"), 0)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")  # opens the transaction (SQLite: BEGIN IMMEDIATE)
        raw = conn.connection.dbapi_connection
        loader = Loader(raw, dialect)
        now = loader.time(datetime(2026, 12, 31, tzinfo=UTC))
        loader.load(
            "departments",
            ["id", "code", "name", "kind", "created_at"],
            [(d, f"D{d:03d}", f"部门{d}", "service", now) for d in range(1, departments + 1)],
        )
        loader.load(
            "campaigns",
            ["id", "name", "status", "seed", "config", "created_at", "updated_at"],
            [(1, "bench", "active", "bench", "{}", now, now)],
        )
        counts["departments"] = departments
        # Each department has its own grade mix, so rates and ranks differ.
        mixes = [[w * rnd.uniform(0.5, 1.5) for w in GRADE_WEIGHTS] for _ in range(departments)]
        per_quarter = answers_wanted // len(QUARTERS)
        survey_id = attempt_id = answer_id = case_id = 0
        for q_index, quarter in enumerate(QUARTERS):
            start = datetime(2025 + q_index // 4, 3 * (q_index % 4) + 1, 1, tzinfo=UTC)
            rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in COLUMNS}
            items, surveys, attempts = rows["service_items"], rows["surveys"], rows["attempts"]
            answers, cases = rows["answers"], rows["cases"]
            quarter_answers = 0
            while quarter_answers < per_quarter:
                survey_id += 1
                department = rnd.randint(1, departments)
                at = start + timedelta(minutes=rnd.randint(0, 88 * 24 * 60))
                stamp = loader.time(at)
                disposition, _, rated = rnd.choices(DISPOSITIONS, [d[1] for d in DISPOSITIONS])[0]
                items.append(
                    (survey_id, "bench", str(survey_id), department, "契税", "mobile", stamp, stamp, stamp)
                )
                surveys.append(
                    (
                        survey_id,
                        1,
                        survey_id,
                        "survey",
                        f"t{survey_id}",
                        department,
                        quarter,
                        "zh-CN",
                        "done",
                        disposition,
                        "voice",
                        "{}",
                        stamp,
                        stamp,
                    )
                )
                tries = 0 if disposition == "not_contacted" else rnd.choice((1, 1, 2, 3))
                for number in range(1, tries + 1):
                    attempt_id += 1
                    attempts.append((attempt_id, survey_id, "voice", number, "completed", stamp))
                if not rated:
                    continue
                grade = rnd.choices(GRADES, mixes[department - 1])[0]
                answer_id += 1
                answers.append((answer_id, survey_id, "rating", grade, "voice", stamp, False))
                quarter_answers += 1
                if grade in ("dissatisfied", "very_dissatisfied"):
                    answer_id += 1
                    chosen = ",".join(rnd.sample(CATEGORIES, rnd.choice((1, 1, 2))))
                    answers.append((answer_id, survey_id, "categories", chosen, "voice", stamp, False))
                    quarter_answers += 1
                    if rnd.random() < 0.5:
                        answer_id += 1
                        answers.append(
                            (
                                answer_id,
                                survey_id,
                                "comment",
                                "办事太慢，" * rnd.randint(1, 30),
                                "voice",
                                stamp,
                                False,
                            )
                        )
                        quarter_answers += 1
                    case_id += 1
                    due = loader.time(at + timedelta(days=21))
                    answered = loader.time(at + timedelta(days=rnd.randint(5, 30)))
                    cases.append(
                        (
                            case_id,
                            survey_id,
                            department,
                            quarter,
                            grade,
                            json.dumps(chosen.split(",")),
                            "answered",
                            stamp,
                            due,
                            answered,
                            0,
                        )
                    )
                if len(surveys) >= BATCH:
                    flush(loader, rows, counts)
            flush(loader, rows, counts)
            print(f"  {quarter}: {counts['answers']:,} answers so far", flush=True)
        conn.commit()
    if dialect == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    # As in production, the quarters before the one reported on are closed (their figures frozen).
    with make_sessionmaker(engine)() as session:
        for quarter in QUARTERS[:-2]:
            close_quarter(session, quarter, "bench", SETTINGS, datetime(2027, 1, 2, tzinfo=UTC))
        session.commit()
    engine.dispose()
    return counts


def timed(label: str, target: float | None, run: Any, repeat: int = 3) -> float:
    """Run a measurement `repeat` times; print first and best against the target; return best."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        runs.append(time.perf_counter() - started)
    best = min(runs)
    verdict = "" if target is None else f"target < {target:.1f} s   " + ("ok" if best < target else "SLOW")
    print(f"{label:<44} first {runs[0]:6.3f} s   best {best:6.3f} s   {verdict}")
    return best


def flat_ratings(session: Any) -> None:
    """Copy every rating with its survey's department and quarter into a temporary table (untimed)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))  # as models.metrics runs its aggregates
    session.execute(
        text(
            "CREATE TEMPORARY TABLE flat_ratings AS SELECT s.department_id, s.quarter, a.value AS grade"
            " FROM answers a JOIN surveys s ON s.id = a.survey_id WHERE a.question = 'rating'"
        )
    )
    session.execute(text("ANALYZE flat_ratings"))


def bare_group_by(session: Any) -> None:
    """The issue's baseline: GROUP BY department, quarter, grade over the flat ratings."""
    session.execute(
        text("SELECT department_id, quarter, grade, count(*) FROM flat_ratings GROUP BY 1, 2, 3")
    ).all()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="sqlite:////tmp/rv_bench.db", help="Database (a fresh one is made).")
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--departments", type=int, default=40)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--reuse", action="store_true", help="Measure an existing bench database.")
    args = parser.parse_args()

    url = args.url
    if args.reuse:
        if make_url(url).get_backend_name() != "sqlite":
            url = make_url(url).set(database="rv_bench").render_as_string(hide_password=False)
    else:
        url = fresh_database(url)
        started = time.perf_counter()
        print(f"building {args.answers:,} answers over {len(QUARTERS)} quarters ...", flush=True)
        counts = build(url, args.answers, args.departments, args.seed)
        built = ", ".join(f"{key} {value:,}" for key, value in counts.items())
        print(f"built in {time.perf_counter() - started:.0f} s: {built}")

    engine = make_engine(url)
    dialect = engine.dialect.name
    quarter_target, trend_target = TARGETS[dialect]
    sessions = make_sessionmaker(engine)
    now = datetime(2027, 1, 5, tzinfo=UTC)
    with sessions() as session:
        figures: list[Any] = []

        def one_quarter() -> None:
            # What a report of the quarter computes (the previous quarter's figures are published).
            figures[:] = live_figures(session, "2026Q3", SETTINGS, now)

        def all_quarters() -> None:
            trend(session, QUARTERS)

        print(f"\n{dialect}:")
        flat_ratings(session)
        bare = timed("bare GROUP BY over the ratings", None, lambda: bare_group_by(session))
        quarter = timed("one quarter, full metrics, all departments", quarter_target, one_quarter)
        trend_all = timed(f"trend over {len(QUARTERS)} quarters", trend_target, all_quarters)
        quiet = BARE_QUIET[dialect]
        for label, best, target in (
            ("one quarter", quarter, quarter_target),
            ("trend", trend_all, trend_target),
        ):
            print(
                f"{label:<12} {best / bare:5.2f} x the bare GROUP BY of this run"
                f" (the target allows {target / quiet:.2f} x the issue's {quiet} s)"
            )
            report(
                f"{NAMES[dialect]}: {label}",
                best,
                "s",
                target=f"< {target}",
                ok=best < target,
                note=f"{best / bare:.2f} x the bare GROUP BY ({bare:.2f} s), {target / quiet:.2f} x allowed",
            )
        print("load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
        rated = sum(f.rated for f in figures)
        top = min((f for f in figures if f.rank), key=lambda f: f.rank, default=None)
        print(
            f"\n2026Q3: {len(figures)} departments, {rated:,} ratings"
            + (f", first {top.department_code} index {top.satisfaction_index:.1f}" if top else "")
        )
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
