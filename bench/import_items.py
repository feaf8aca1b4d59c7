"""Benchmark: generate 1,000,000 service items and import them from CSV into SQLite and PostgreSQL.

Prints rows/s and the importer's peak RSS beside the targets (>= 20,000 rows/s, < 300 MB), and
beside a bare baseline measured in the same run on the same machine: the same CSV streamed into an
empty table by one plain executemany (SQLite) or binary COPY (PostgreSQL) per 10,000 rows, without
validation, look-ups or phone numbers (the floor this database and machine set). On a busy machine
the absolute rate moves with the load; the ratio to the bare rate much less.

Each run (`returnvisit import`, and the baseline) is its own process; peak RSS is the largest sum,
sampled every 50 ms, of that process and its children (the import's reader process included).
Every figure is also reported to bench/results.py (the table of `make bench`).

    .venv/bin/python bench/import_items.py [--rows N] [--pg-url URL] [--skip-pg]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import is_quick, report  # noqa: E402
from webhook_load import fresh_postgres  # noqa: E402

from console.demo_data import write_items  # noqa: E402

TARGET_RATE = 20_000
TARGET_RSS_MB = 300
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BARE_BATCH = 10_000


class TreeRss:
    """Sample the summed RSS of a process and its descendants until stopped; keep the peak (MB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mb = max(self.peak_mb, sum(_rss_kib(pid) for pid in _tree(self.pid)) / 1024)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo.extend(int(child) for child in fh.read().split())
        except OSError:
            continue  # it has just ended
    return pids


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class Run:
    """One measured run of a command."""

    seconds: float  # wall clock
    peak_rss_mb: float  # of the process and its children, summed
    cpu_seconds: float  # user + system of the process and its children (not a database server's)
    output: str


def measure(command: list[str], env: dict[str, str]) -> Run:
    """Run a command to its end and measure it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = TreeRss(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, peak, cpu, out.decode().strip())


def init_database(url: str) -> dict[str, str]:
    env = {**os.environ, "RETURNVISIT_DATABASE_URL": url}
    exe = Path(sys.executable).with_name("returnvisit")
    subprocess.run([str(exe), "init"], env=env, check=True, capture_output=True)
    return env


def run_import(csv_path: Path, url: str) -> Run:
    """Import the file with the CLI into a fresh database (its output is the JSON summary)."""
    env = init_database(url)
    exe = Path(sys.executable).with_name("returnvisit")
    return measure([str(exe), "import", str(csv_path), "--source", "bench", "--json"], env)


def run_bare(csv_path: Path, url: str) -> Run:
    """Stream the same file into a fresh database without any intake logic."""
    env = init_database(url)
    return measure([sys.executable, __file__, "--bare-into", url, str(csv_path)], env)


def bare_load(url: str, csv_path: Path) -> None:
    """The baseline: CSV rows into service_items as they are, by executemany or binary COPY."""
    from sqlalchemy import text

    from models.db import make_engine
    from models.items_bulk import bulk_import_settings

    engine = make_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        department = conn.execute(
            text(
                "INSERT INTO departments (code, name, kind, created_at) "
                "VALUES ('BARE', 'bare', 'service', :now) RETURNING id"
            ),
            {"now": now},
        ).scalar_one()
    columns = (
        "source, external_id, department_id, matter, channel_handled, citizen_name, phone_raw, "
        "phone_e164, phone_kind, phone_extension, completed_at, imported_at, updated_at"
    )
    is_pg = engine.dialect.name == "postgresql"
    stamp = now if is_pg else now.replace(tzinfo=None).isoformat(" ")
    with csv_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        with engine.connect() as conn, bulk_import_settings(conn):  # the importer's own pragmas
            driver = conn.connection.driver_connection
            while chunk := list(islice(reader, BARE_BATCH)):
                rows = [
                    (
                        "bare",
                        r[0],
                        department,
                        r[3],
                        r[4] or None,
                        r[5] or None,
                        r[6],
                        r[6][:20],
                        "mobile",
                        None,
                        _bare_time(r[7], stamp) if is_pg else r[7],
                        stamp,
                        stamp,
                    )
                    for r in chunk
                ]
                with conn.begin():
                    if is_pg:
                        _bare_copy(driver, columns, rows)
                    else:
                        sql = f"INSERT INTO service_items ({columns}) VALUES ({', '.join('?' * 13)})"
                        driver.executemany(sql, rows)
    engine.dispose()


def _bare_time(text: str, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:  # the few malformed on purpose
        return default


def _bare_copy(driver, columns: str, rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    types = ["varchar", "varchar", "int4", *["varchar"] * 7, "timestamptz", "timestamptz", "timestamptz"]
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY service_items ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000 if is_quick() else 1_000_000)
    parser.add_argument("--pg-url", default=os.environ.get("RETURNVISIT_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--bare-into", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("csv", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_into:
        bare_load(args.bare_into, args.csv)
        return

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "items.csv"
        start = time.perf_counter()
        write_items(csv_path, args.rows, now=datetime(2026, 11, 30, tzinfo=UTC), progress=True)
        print(
            f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f} s "
            f"({csv_path.stat().st_size / 1e6:.0f} MB CSV); load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs"
        )
        targets = [("SQLite", lambda name: f"sqlite:///{tmp}/{name}.db")]
        if not args.skip_pg:
            targets.append(("PostgreSQL", lambda name: fresh_postgres(args.pg_url, f"rv_bench_{name}")))
        print(
            f"{'database':<12}{'rows/s':>9}{'target':>10}{'peak RSS MB':>13}{'target':>7}"
            f"{'bare rows/s':>13}{'of bare':>9}{'CPU µs/row':>12}{'bare':>6}  result"
        )
        for name, url_for in targets:
            bare = run_bare(csv_path, url_for("import_bare"))
            run = run_import(csv_path, url_for("import"))
            rate, bare_rate = args.rows / run.seconds, args.rows / bare.seconds
            cpu, bare_cpu = run.cpu_seconds / args.rows * 1e6, bare.cpu_seconds / args.rows * 1e6
            rss = run.peak_rss_mb
            ok = rate >= TARGET_RATE and rss < TARGET_RSS_MB
            print(
                f"{name:<12}{rate:>9,.0f}{'>= ' + format(TARGET_RATE, ','):>10}"
                f"{rss:>13.0f}{'< ' + str(TARGET_RSS_MB):>7}"
                f"{bare_rate:>13,.0f}{rate / bare_rate:>9.0%}{cpu:>12.1f}{bare_cpu:>6.1f}"
                f"  {'ok' if ok else 'MISSED'}"
            )
            summary = json.loads(run.output.splitlines()[-1])
            print(f"  summary: {summary}; bare run peak RSS {bare.peak_rss_mb:.0f} MB")
            note = f"{args.rows:,} rows; load average {os.getloadavg()[0]:.1f}"
            target = f">= {TARGET_RATE:,}"
            report(f"{name}: rows/s", rate, "rows/s", target=target, ok=rate >= TARGET_RATE, note=note)
            report(f"{name}: peak RSS", rss, "MB", target=f"< {TARGET_RSS_MB}", ok=rss < TARGET_RSS_MB)
            report(
                f"{name}: bare executemany/COPY rows/s", bare_rate, "rows/s", note="same CSV, no intake logic"
            )
            report(f"{name}: share of the bare rate", 100 * rate / bare_rate, "%")
            report(f"{name}: client CPU per row", cpu, "µs", note=f"bare: {bare_cpu:.1f} µs")
        print(
            "CPU µs/row: user + system time of the importing processes (not PostgreSQL's server) per row;"
            " it moves much less with the machine's load than rows/s does."
        )


if __name__ == "__main__":
    main()
