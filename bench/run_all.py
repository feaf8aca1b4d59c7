"""Run every benchmark in bench/, then print all their figures as one table (what `make bench` runs).

Each benchmark runs as a child process whose output streams through; each reports its figures with
bench/results.py into one results file (RETURNVISIT_BENCH_RESULTS), read back at the end. A missed
target is a figure, not a failure: the exit status is non-zero only when a benchmark crashed.

    .venv/bin/python bench/run_all.py [--quick] [--skip-pg] [--pg-url URL] [--only NAME,...]
                                      [--results FILE]
    .venv/bin/python bench/run_all.py --table FILE     # print the table of an earlier results file

--quick (or RETURNVISIT_BENCH_QUICK=1) is a smoke run of every benchmark with small sizes: minutes,
not the hour or more of the full sizes. The soak (bench/soak.py, `make soak`) runs on its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from results import QUICK_ENV, RESULTS_ENV, Figure, is_quick, read_results  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark run: a script of bench/ and its arguments."""

    name: str  # the script's stem: what its figures are reported under
    args: tuple[str, ...] = ()

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(BENCH / f"{self.name}.py"), *self.args]


@dataclass(frozen=True)
class Run:
    """How one benchmark run ended."""

    benchmark: Benchmark
    returncode: int
    seconds: float


def plan(*, quick: bool, skip_pg: bool, pg_url: str, workdir: str) -> list[Benchmark]:
    """Return the benchmark runs, full size or quick, with PostgreSQL or without."""
    pg = ("--skip-pg",) if skip_pg else ("--pg-url", pg_url)
    webhook = ("--surveys", "5000", "--seconds", "2") if quick else ()
    answers = ("--answers", "20000") if quick else ()
    runs = [
        Benchmark("import_items", (*(("--rows", "20000") if quick else ()), *pg)),
        Benchmark(
            "schedule",
            (*(("--items", "20000", "--due", "1000", "--batch-sizes", "100") if quick else ()), *pg),
        ),
        # quarter_report measures one database a run: a fresh SQLite file, then PostgreSQL.
        Benchmark(
            "quarter_report",
            (*answers, "--url", f"sqlite:///{workdir}/rv_bench_quarter.db"),
        ),
    ]
    if not skip_pg:
        runs.append(Benchmark("quarter_report", (*answers, "--url", pg_url)))
    runs += [
        Benchmark("voice_webhook", (*webhook, *pg)),
        Benchmark("sms_webhook", (*webhook, *pg)),
        Benchmark("voice_instructions", ("--requests", "100") if quick else ()),
    ]
    return runs


def run_benchmarks(runs: Sequence[Benchmark], results: Path, *, quick: bool) -> list[Run]:
    """Run each benchmark in turn, its output streaming through; return how each ended."""
    env = {**os.environ, RESULTS_ENV: str(results)}
    if quick:
        env[QUICK_ENV] = "1"
    done = []
    for benchmark in runs:
        print(f"\n== bench/{benchmark.name}.py {' '.join(benchmark.args)}", flush=True)
        started = time.perf_counter()
        returncode = subprocess.run(benchmark.command, env=env, cwd=BENCH.parent, check=False).returncode
        seconds = time.perf_counter() - started
        if returncode != 0:
            print(f"== bench/{benchmark.name}.py CRASHED (exit status {returncode})", flush=True)
        done.append(Run(benchmark, returncode, seconds))
    return done


def format_measured(value: float | None, unit: str) -> str:
    """Return a measured value as the table shows it: digits grouped, a sensible precision."""
    if value is None:
        return "n/a"
    if isinstance(value, int) or (abs(value) >= 100 and float(value).is_integer()):
        text = f"{int(value):,}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip() if unit else text


def build_table(figures: Sequence[Figure], runs: Sequence[Run] = ()) -> str:
    """Return the one table of a run: every figure, its target and result, then the summary."""
    header = ("benchmark", "figure", "measured", "target", "result", "note")
    rows = [
        (
            f.benchmark,
            f.figure,
            format_measured(f.measured, f.unit),
            f.target or "-",
            "-" if f.ok is None else "ok" if f.ok else "MISSED",
            f.note or "",
        )
        for f in figures
    ]
    reported = {f.benchmark for f in figures}
    for run in runs:
        name = run.benchmark.name
        if run.returncode != 0:
            rows.append((name, "the benchmark itself", "-", "-", "CRASHED", f"exit status {run.returncode}"))
        elif name not in reported:
            rows.append((name, "the benchmark itself", "-", "-", "-", "ran, but reported no figures"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {2}  # measured values align right

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]
    met = sum(1 for f in figures if f.ok is True)
    missed = [f for f in figures if f.ok is False]
    crashed = [run for run in runs if run.returncode != 0]
    out.append("")
    out.append(
        f"{len(figures)} figures: {met} targets met, {len(missed)} missed, "
        f"{len(figures) - met - len(missed)} without a target"
        + (f"; {len(crashed)} benchmark run(s) crashed" if crashed else "")
    )
    if runs:
        took = ", ".join(f"{run.benchmark.name} {run.seconds:.0f} s" for run in runs)
        out.append(f"run times: {took}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"small sizes (also {QUICK_ENV}=1)")
    parser.add_argument("--skip-pg", action="store_true", help="SQLite only")
    parser.add_argument("--pg-url", default=os.environ.get("RETURNVISIT_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--only", help="comma-separated benchmark names, e.g. voice_webhook,sms_webhook")
    parser.add_argument("--results", type=Path, help="keep the JSON lines of the figures in this file")
    parser.add_argument("--table", type=Path, metavar="FILE", help="only print the table of a results file")
    args = parser.parse_args(argv)

    if args.table:
        try:
            print(build_table(read_results(args.table)))
        except (OSError, ValueError) as error:
            parser.error(str(error))
        return 0
    quick = args.quick or is_quick()
    with tempfile.TemporaryDirectory(prefix="rv_bench_") as workdir:
        runs = plan(quick=quick, skip_pg=args.skip_pg, pg_url=args.pg_url, workdir=workdir)
        if args.only:
            wanted = {name.strip() for name in args.only.split(",") if name.strip()}
            unknown = wanted - {run.name for run in runs}
            if unknown:
                parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}")
            runs = [run for run in runs if run.name in wanted]
        results = args.results or Path(workdir) / "results.jsonl"
        results.unlink(missing_ok=True)
        results.touch()
        done = run_benchmarks(runs, results, quick=quick)
        figures = read_results(results)
    print(f"\n== {'quick ' if quick else ''}benchmark results")
    print(build_table(figures, done))
    return 1 if any(run.returncode != 0 for run in done) else 0


if __name__ == "__main__":
    raise SystemExit(main())
