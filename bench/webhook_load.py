"""Shared machinery of the webhook benchmarks: gunicorn servers, wrk load, signed request files."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import is_quick, report  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
WRK_LUA = r"""
local requests = {}
local index = 0
local step = 1
local counter = 0
-- Each thread gets its own global "thread_number" (no local of that name may shadow it): the
-- threads take every step-th request from their own offset, so no request is sent twice.
function setup(thread)
  thread:set("thread_number", counter)
  counter = counter + 1
end
function init(args)
  step = tonumber(args[1]) or 1
  for line in io.lines(args[2]) do
    local path, body, signature = line:match("([^\t]*)\t([^\t]*)\t([^\t]*)")
    requests[#requests + 1] = {path = path, body = body, signature = signature}
  end
  index = thread_number or 0
end
function request()
  local r = requests[(index % #requests) + 1]
  index = index + step
  return wrk.format("POST", r.path, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = r.signature,
  }, r.body)
end
"""


@dataclass
class LoadResult:
    """What wrk measured."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str
    worker_cpu_ms: float = float("nan")  # the server's workers' CPU (user + system) per request
    steal: float = float("nan")  # the share of the machine's time its host gave to others meanwhile
    machine_cpu_ms: float = float("nan")  # every process's and the kernel's busy CPU, per request
    postgres_cpu_ms: float = float("nan")  # PostgreSQL's own processes' CPU, per request


def ensure_tool(name: str) -> str:
    """Return the path of a benchmark tool (wrk, valgrind), installing Debian's package of that name
    when it is missing."""
    found = shutil.which(name)
    if found:
        return found
    print(f"{name} not found: installing Debian's {name} package", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-q", name], check=True, stdout=subprocess.DEVNULL)
    return shutil.which(name) or name


def free_port() -> int:
    """Return a free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """A gunicorn server with sync workers, stopped on exit.

    Its output (the app logs a line per webhook) goes to `log`, so the benchmark's own lines stay
    readable; a server that does not start prints the end of it.
    """

    def __init__(
        self,
        app: str,
        *,
        log: Path,
        workers: int = 2,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ):
        self.port = free_port()
        self.log = log
        exe = Path(sys.executable).with_name("gunicorn")
        log_file = log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(exe),
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                app,
            ],
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()  # the server holds its own descriptor
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)  # noqa: S310
                return
            except Exception:  # noqa: BLE001 - not up yet (404 counts as up below)
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    time.sleep(0.2)
        tail = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        raise SystemExit("gunicorn did not start; the end of its log:\n" + "\n".join(tail))

    def workers(self) -> list[str]:
        """Return the process ids of the server's workers."""
        return Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()

    def worker_cpu_seconds(self) -> float:
        """Return the CPU time (user + system) the workers have used so far."""
        ticks = sum(_cpu_ticks(Path(f"/proc/{pid}/stat").read_text())[1] for pid in self.workers())
        return ticks / os.sysconf("SC_CLK_TCK")

    def worker_rss_mb(self) -> float:
        """Return the peak RSS of the largest worker (VmHWM), in MB."""
        peaks = []
        for child in self.workers():
            status = Path(f"/proc/{child}/status").read_text()
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peaks.append(int(match.group(1)) / 1024)
        return max(peaks, default=0.0)

    def stop(self) -> None:
        """Stop the server."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def fresh_postgres(url: str, name: str) -> str:
    """Create an empty database `name` beside the one `url` names; return its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def settle_store(url: str) -> None:
    """Bring a freshly loaded store to the state a live database is in before it is measured.

    The planner's statistics: without them PostgreSQL plans the SMS routing query as a scan of every
    survey (17 ms instead of 0.2 ms with 40,000 surveys). Vacuumed and checkpointed: otherwise the
    load's own backlog is paid during the measurement (PostgreSQL's autovacuum of the new rows and a
    checkpoint writing them out put its p99 at 150-330 ms with 120,000 surveys; SQLite's first
    checkpoint would copy the whole load from its WAL inside one request).
    """
    from sqlalchemy import create_engine

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()


def write_requests(path: Path, rows: Iterable[tuple[str, str, str]]) -> None:
    """Write (path, form body, signature) lines for the wrk script."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write("\t".join(row) + "\n")


def run_wrk(
    port: int, requests_file: Path, *, threads: int = 2, connections: int = 16, seconds: int = 10
) -> LoadResult:
    """Load a server from loopback with wrk and return its figures."""
    wrk = ensure_tool("wrk")
    script = requests_file.with_suffix(".lua")
    script.write_text(WRK_LUA, encoding="utf-8")
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(threads),
            str(requests_file),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def percentile(name: str) -> float:
        match = re.search(rf"\s{name}%\s+([\d.]+)(us|ms|s)", out)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = ", ".join(
        line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line
    )
    return LoadResult(rate, percentile("50"), percentile("99"), total, errors or "none")


def _machine_times() -> list[int]:
    return [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _cpu_ticks(stat: str) -> tuple[str, int]:
    """Return a process's name and CPU ticks (user + system) from the text of its /proc/PID/stat."""
    name, _, rest = stat.partition(" (")[2].rpartition(")")
    fields = rest.split()
    return name, int(fields[11]) + int(fields[12])  # utime, stime


def _postgres_cpu_seconds() -> float:
    """Return the CPU time (user + system) PostgreSQL's processes on this machine have used so far."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, used = _cpu_ticks(stat.read_text())
        except OSError:  # the process has gone
            continue
        if name == "postgres":
            ticks += used
    return ticks / os.sysconf("SC_CLK_TCK")


def load(server: Gunicorn, requests_file: Path, *, seconds: int) -> LoadResult:
    """Run wrk against `server` (see run_wrk); add what its workers spent per request and the steal.

    The workers' CPU per request is the cost a ratio of rates stands for, without wrk's own share
    of the two cores or an idle moment; the steal (the hypervisor's time for other guests, from
    /proc/stat) says how much the host took from this machine during the run. Beside them, the whole
    machine's busy CPU per request (workers, wrk, the database, the kernel: what the cores must
    hold) and PostgreSQL's own share of it.
    """
    cpu, machine, postgres = server.worker_cpu_seconds(), _machine_times(), _postgres_cpu_seconds()
    result = run_wrk(server.port, requests_file, seconds=seconds)
    cpu = server.worker_cpu_seconds() - cpu
    postgres = _postgres_cpu_seconds() - postgres
    machine = [after - before for before, after in zip(machine, _machine_times(), strict=True)]
    steal = machine[7] / max(sum(machine), 1)  # user nice system idle iowait irq softirq steal ...
    busy = (sum(machine[:3]) + machine[5] + machine[6]) / os.sysconf("SC_CLK_TCK")
    requests = max(result.requests, 1)
    return replace(
        result,
        worker_cpu_ms=1000 * cpu / requests,
        steal=steal,
        machine_cpu_ms=1000 * busy / requests,
        postgres_cpu_ms=1000 * postgres / requests,
    )


def warm_up(port: int) -> None:
    """Let every worker import the app before the measurement starts."""
    import urllib.error

    for _ in range(8):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30).read()  # noqa: S310
        except urllib.error.HTTPError:
            pass  # any answer means a worker is up (the bare app has no /healthz)
    time.sleep(1)


@dataclass
class Round:
    """One round: the bare endpoint, then the webhook right after it, loaded the same way."""

    bare: LoadResult
    webhook: LoadResult

    @property
    def ratio(self) -> float:
        return self.webhook.requests_per_second / self.bare.requests_per_second

    @property
    def cpu_ratio(self) -> float:
        """The bare workers' CPU per request over the webhook workers': the ratio if CPU were all."""
        return self.bare.worker_cpu_ms / self.webhook.worker_cpu_ms


def run_webhook_benchmark(
    description: str,
    build_store: Callable[[str, int], list[tuple[str, str, str]]],
    *,
    database_name: str,
    targets: dict[str, int],
    p99_target_ms: float | None = None,
    ratio_target: float | None = None,
) -> None:
    """Measure a webhook under gunicorn beside the bare endpoint, per database; print the table.

    These machines are shared: another tenant can slow one ten-second window by a tenth or more. So
    each database is measured in rounds (three unless asked), each round the bare endpoint and then
    the webhook right after it, and the table gives the median of the rounds (every round printed
    above it). Each round answers surveys of its own: no request is sent twice.
    """
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=description)
    quick = is_quick()  # RETURNVISIT_BENCH_QUICK: a smoke run
    parser.add_argument("--surveys", type=int, default=5_000 if quick else 40_000, help="per round")
    parser.add_argument("--seconds", type=int, default=2 if quick else 10)
    parser.add_argument("--rounds", type=int, default=1 if quick else 3)
    parser.add_argument("--pg-url", default=os.environ.get("RETURNVISIT_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    bench_dir = str(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as tmp:
        bare_file = Path(tmp) / "bare.tsv"
        write_requests(bare_file, [("/twilio/voice/gather", "Digits=1", "x")])
        bare = Gunicorn("bare_app:app", cwd=bench_dir, log=Path(tmp) / "bare.log")
        try:
            warm_up(bare.port)
            databases = [("SQLite", f"sqlite:///{tmp}/{database_name}.db")]
            if not args.skip_pg:
                databases.append(("PostgreSQL", fresh_postgres(args.pg_url, database_name)))
            measured = []
            for name, url in databases:
                requests = build_store(url, args.surveys * args.rounds)
                settle_store(url)
                slices = [  # each round answers surveys of its own
                    requests[index * args.surveys : (index + 1) * args.surveys]
                    for index in range(args.rounds)
                ]
                rounds, rss = _measure_rounds(name, url, slices, bare, bare_file, Path(tmp), args.seconds)
                measured.append((name, rounds, rss))
        finally:
            bare.stop()
        bare_rate = statistics.median(
            [r.bare.requests_per_second for _, rounds, _ in measured for r in rounds]
        )
        print(f"bare Flask endpoint: {bare_rate:,.0f} req/s (median of every round)")
        report(
            "bare Flask endpoint (same run)",
            bare_rate,
            "req/s",
            note=f"median of {sum(len(r) for _, r, _ in measured)} rounds, each beside a webhook round",
        )
        print(
            f"{'median':<12}{'req/s':>9}{'target':>9}{'p50 ms':>8}{'p99 ms':>8}{'target':>8}"
            f"{'ratio':>7}{'target':>8}{'worker RSS MB':>15}  result"
        )
        for name, rounds, rss in measured:
            summary = _summary(rounds, args.surveys)
            target = targets.get(name)
            ok = (
                (target is None or summary.requests_per_second >= target)
                and (p99_target_ms is None or summary.p99_ms < p99_target_ms)
                and (ratio_target is None or summary.ratio >= ratio_target)
                and not summary.exhausted
            )
            print(
                f"{name:<12}{summary.requests_per_second:>9,.0f}{'>= ' + str(target) if target else '-':>9}"
                f"{summary.p50_ms:>8.1f}{summary.p99_ms:>8.1f}"
                f"{'< ' + format(p99_target_ms, 'g') if p99_target_ms else '-':>8}{summary.ratio:>7.0%}"
                f"{'>= ' + format(ratio_target, '.0%') if ratio_target else '-':>8}"
                f"{rss:>15.0f}  {'ok' if ok else 'MISSED'}  (errors: {summary.errors})"
            )
            print(
                f"  worker CPU per request: {summary.worker_cpu_ms:.3f} ms, the bare endpoint's "
                f"{summary.bare_worker_cpu_ms:.3f} ms ({summary.cpu_ratio:.0%} of the webhook's)"
            )
            _print_cpu_budget(name, summary, ratio_target)
            if summary.exhausted:
                print(
                    f"  note: a round sent more requests than its {args.surveys} surveys: "
                    "rerun with more --surveys"
                )
            _report_database(name, summary, rounds, rss, target, p99_target_ms, ratio_target, args.surveys)


def _print_cpu_budget(name: str, summary: _Summary, ratio_target: float | None) -> None:
    """Print what the whole machine spent per request, and what the ratio target would allow it."""
    line = f"  whole machine: {summary.machine_cpu_ms:.3f} ms CPU per request (workers, wrk, kernel"
    line += ", PostgreSQL)" if name == "PostgreSQL" else ")"
    if ratio_target:
        cores = os.cpu_count() or 1
        rate = ratio_target * summary.bare_rate
        line += (
            f"; at {ratio_target:.0%} of the bare endpoint ({rate:,.0f} req/s) {cores} cores "
            f"leave {1000 * cores / rate:.3f} ms"
        )
    print(line)
    if name == "PostgreSQL":
        print(f"  PostgreSQL's own processes: {summary.postgres_cpu_ms:.3f} ms CPU per request")


def _measure_rounds(
    name: str,
    url: str,
    slices: list[list[tuple[str, str, str]]],
    bare: Gunicorn,
    bare_file: Path,
    tmp: Path,
    seconds: int,
) -> tuple[list[Round], float]:
    """Serve the app on `url` and run the rounds (bare endpoint, then webhook); return them and the
    workers' peak RSS, printing each round."""
    files = []
    for index, requests in enumerate(slices):
        files.append(tmp / f"{name}-{index + 1}.tsv")
        write_requests(files[-1], requests)
    config = tmp / f"{name}.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    server = Gunicorn("ivr.wsgi:app", env={"RETURNVISIT_CONFIG": str(config)}, log=tmp / f"{name}.log")
    try:
        warm_up(server.port)
        print(f"{name}: {len(files)} round(s) of {seconds} s: the bare endpoint, then the webhook")
        print(
            f"  {'round':<7}{'bare req/s':>11}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>7}"
            f"{'worker CPU ms/req: bare':>25}{'webhook':>9}{'ratio':>7}{'steal':>7}"
        )
        rounds = []
        for index, requests_file in enumerate(files):
            # Each run starts with no disk writes pending from the one before (the kernel writes a
            # SQLite round's pages back later, in the next rounds).
            os.sync()
            baseline = load(bare, bare_file, seconds=seconds)
            os.sync()
            result = load(server, requests_file, seconds=seconds)
            rounds.append(Round(baseline, result))
            print(
                f"  {index + 1:<7}{baseline.requests_per_second:>11,.0f}{result.requests_per_second:>9,.0f}"
                f"{result.p50_ms:>8.1f}{result.p99_ms:>8.1f}{rounds[-1].ratio:>7.0%}"
                f"{baseline.worker_cpu_ms:>25.3f}{result.worker_cpu_ms:>9.3f}{rounds[-1].cpu_ratio:>7.0%}"
                f"{max(baseline.steal, result.steal):>7.0%}"
            )
        return rounds, server.worker_rss_mb()
    finally:
        server.stop()


@dataclass
class _Summary:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    ratio: float
    exhausted: bool  # a round sent more requests than it had surveys (some were replays)
    errors: str
    worker_cpu_ms: float  # the webhook workers' CPU per request
    bare_worker_cpu_ms: float  # the bare endpoint's, in the same rounds
    cpu_ratio: float
    machine_cpu_ms: float  # the whole machine's busy CPU per webhook request
    postgres_cpu_ms: float  # PostgreSQL's processes' CPU per webhook request
    bare_rate: float  # the bare endpoint's rate, in the same rounds


def _summary(rounds: list[Round], surveys: int) -> _Summary:
    """The median of each figure over the rounds (each ratio is its own round's)."""
    return _Summary(
        statistics.median(r.webhook.requests_per_second for r in rounds),
        statistics.median(r.webhook.p50_ms for r in rounds),
        statistics.median(r.webhook.p99_ms for r in rounds),
        statistics.median(r.ratio for r in rounds),
        exhausted=any(r.webhook.requests > surveys for r in rounds),
        errors=", ".join(sorted({r.webhook.errors for r in rounds})),
        worker_cpu_ms=statistics.median(r.webhook.worker_cpu_ms for r in rounds),
        bare_worker_cpu_ms=statistics.median(r.bare.worker_cpu_ms for r in rounds),
        cpu_ratio=statistics.median(r.cpu_ratio for r in rounds),
        machine_cpu_ms=statistics.median(r.webhook.machine_cpu_ms for r in rounds),
        postgres_cpu_ms=statistics.median(r.webhook.postgres_cpu_ms for r in rounds),
        bare_rate=statistics.median(r.bare.requests_per_second for r in rounds),
    )


def _report_database(
    name: str,
    summary: _Summary,
    rounds: list[Round],
    rss: float,
    target: int | None,
    p99_target_ms: float | None,
    ratio_target: float | None,
    surveys: int,
) -> None:
    """Report one database's medians to bench/results.py (the table of `make bench`)."""

    def spread(values: list[float], text: Callable[[float], str]) -> str:
        return f"median of {len(values)} rounds, {text(min(values))} to {text(max(values))}"

    rates = spread([r.webhook.requests_per_second for r in rounds], lambda v: f"{v:,.0f} req/s")
    note = f"{rates}, errors: {summary.errors}"
    if summary.exhausted:
        note += f"; a round sent more requests than its {surveys:,} surveys: rerun with more --surveys"
    report(
        f"{name}: req/s",
        summary.requests_per_second,
        "req/s",
        target=f">= {target:,}" if target else None,
        ok=(summary.requests_per_second >= target and not summary.exhausted) if target else None,
        note=note,
    )
    report(
        f"{name}: p99 latency",
        summary.p99_ms,
        "ms",
        target=f"< {p99_target_ms:g}" if p99_target_ms else None,
        ok=summary.p99_ms < p99_target_ms if p99_target_ms else None,
        note=spread([r.webhook.p99_ms for r in rounds], lambda v: f"{v:.1f} ms")
        + f"; p50 {summary.p50_ms:.1f} ms",
    )
    report(
        f"{name}: ratio to bare Flask",
        summary.ratio * 100,
        "%",
        target=f">= {ratio_target:.0%}" if ratio_target else None,
        ok=summary.ratio >= ratio_target if ratio_target else None,
        note=spread([r.ratio for r in rounds], lambda v: f"{v:.0%}")
        + ", each beside its round's bare endpoint",
    )
    report(
        f"{name}: worker CPU per request",
        summary.worker_cpu_ms,
        "ms",
        note=f"the bare endpoint's {summary.bare_worker_cpu_ms:.3f} ms, "
        f"{summary.cpu_ratio:.0%} of the webhook's (medians of {len(rounds)} rounds)",
    )
    report(
        f"{name}: whole machine CPU per request",
        summary.machine_cpu_ms,
        "ms",
        note="workers, wrk, kernel and database together (median of the rounds)",
    )
    if name == "PostgreSQL":
        report(f"{name}: PostgreSQL CPU per request", summary.postgres_cpu_ms, "ms", note="its own processes")
    report(f"{name}: peak RSS of a worker", rss, "MB", note="largest of the 2 gunicorn sync workers (VmHWM)")
