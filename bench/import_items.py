"""Benchmark: generate 1,000,000 service items and import them from CSV into SQLite and PostgreSQL.

Prints rows/s and the importer's peak RSS beside the targets (>= 20,000 rows/s, < 300 MB).
Each import runs `returnvisit import` in its own process so its peak RSS is measured alone.

    .venv/bin/python bench/import_items.py [--rows N] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from console.demo_data import write_items

TARGET_RATE = 20_000
TARGET_RSS_MB = 300
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def run_import(csv_path: Path, db_url: str) -> tuple[float, float, str]:
    """Import in a child process; return (seconds, peak RSS in MB, summary line)."""
    env = {**os.environ, "RETURNVISIT_DATABASE_URL": db_url}
    exe = Path(sys.executable).with_name("returnvisit")
    subprocess.run([str(exe), "init"], env=env, check=True, capture_output=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), "import", str(csv_path), "--source", "bench", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    out = proc.stdout.read().decode() if proc.stdout else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"import into {db_url} failed with status {status}")
    return seconds, usage.ru_maxrss / 1024, out.strip()


def fresh_postgres(url: str) -> str:
    """Create an empty database beside the given one for the benchmark."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "rv_bench_import" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "rv_bench_import"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/rv_bench_import"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg-url", default=os.environ.get("RETURNVISIT_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "items.csv"
        start = time.perf_counter()
        write_items(csv_path, args.rows, now=datetime(2026, 11, 30, tzinfo=UTC), progress=True)
        print(
            f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f} s "
            f"({csv_path.stat().st_size / 1e6:.0f} MB CSV)"
        )
        targets = [("SQLite", f"sqlite:///{tmp}/bench.db")]
        if not args.skip_pg:
            targets.append(("PostgreSQL", fresh_postgres(args.pg_url)))
        print(f"{'database':<12}{'rows/s':>12}{'target':>10}{'peak RSS MB':>14}{'target':>9}  result")
        for name, url in targets:
            seconds, rss, summary = run_import(csv_path, url)
            rate = args.rows / seconds
            ok = rate >= TARGET_RATE and rss < TARGET_RSS_MB
            print(
                f"{name:<12}{rate:>12,.0f}{'>= ' + format(TARGET_RATE, ','):>10}"
                f"{rss:>14.0f}{'< ' + str(TARGET_RSS_MB):>9}  {'ok' if ok else 'MISSED'}"
            )
            print(f"  summary: {summary}")


if __name__ == "__main__":
    main()
