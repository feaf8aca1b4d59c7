"""bench/results.py (figures as JSON lines) and bench/run_all.py (one table; exit status on crashes only).

No real benchmark runs here: the table is built from results files written by the tests, and the
runner is pointed at two tiny stand-in scripts.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # run_all imports `results` by name: one module, one Figure class
    spec.loader.exec_module(module)
    return module


results = _load("results")
run_all = _load("run_all")


@pytest.fixture
def results_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "results.jsonl"
    monkeypatch.setenv(results.RESULTS_ENV, str(path))
    return path


def test_report_appends_one_json_line_per_figure(results_file, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/bench/voice_webhook.py"])
    results.report("SQLite: req/s", 1523.4, "req/s", target=">= 1,500", ok=True, note="errors: none")
    results.report("SQLite: peak RSS of a worker", 61, "MB")

    lines = [json.loads(line) for line in results_file.read_text(encoding="utf-8").splitlines()]
    assert [(line["benchmark"], line["figure"], line["measured"]) for line in lines] == [
        ("voice_webhook", "SQLite: req/s", 1523.4),
        ("voice_webhook", "SQLite: peak RSS of a worker", 61),
    ]
    assert lines[0]["target"] == ">= 1,500" and lines[0]["ok"] is True and lines[0]["unit"] == "req/s"
    assert lines[1]["target"] is None and lines[1]["ok"] is None
    assert results.read_results(results_file)[0] == results.Figure(
        "voice_webhook", "SQLite: req/s", 1523.4, "req/s", ">= 1,500", True, "errors: none"
    )


def test_report_writes_nothing_without_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(results.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    figure = results.report("rows/s", 10.0, benchmark="import_items")
    assert figure.measured == 10.0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"figure": "rate", "measured": "fast"}, "measured value of 'rate' must be a number"),
        ({"figure": "rate", "measured": True}, "measured value of 'rate' must be a number"),
        ({"figure": "", "measured": 1.0}, "figure must be a non-empty string"),
        ({"figure": "rate", "measured": 1.0, "ok": True}, "names no target"),
        ({"figure": "rate", "measured": 1.0, "target": 5}, "target of 'rate' must be a string"),
    ],
)
def test_report_refuses_a_malformed_figure_naming_the_problem(results_file, kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        results.report(**kwargs, benchmark="schedule")
    assert not results_file.exists()


def test_a_value_that_was_not_measured_is_reported_as_such(results_file):
    results.report("p99 latency", float("nan"), "ms", target="< 25", ok=False, benchmark="sms_webhook")
    (figure,) = results.read_results(results_file)
    assert figure.measured is None
    assert "n/a" in run_all.build_table([figure])


def test_read_results_names_the_line_that_is_not_a_figure(tmp_path):
    path = tmp_path / "results.jsonl"
    good = {"benchmark": "schedule", "figure": "dispatch", "measured": 1100}
    path.write_text(json.dumps(good) + '\n{"benchmark": "schedule", "figure": "pick"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"results.jsonl:2: figure lacks measured"):
        results.read_results(path)


def test_quick_mode_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(results.QUICK_ENV, raising=False)
    assert not results.is_quick()
    monkeypatch.setenv(results.QUICK_ENV, "1")
    assert results.is_quick()


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (5111.3, "rows/s", "5,111 rows/s"),
        (40000, "", "40,000"),
        (12.345, "ms", "12.3 ms"),
        (0.6034, "s", "0.603 s"),
        (5.2, "%", "5.2 %"),
        (None, "ms", "n/a"),
    ],
)
def test_measured_values_are_formatted_for_reading(value, unit, text):
    assert run_all.format_measured(value, unit) == text


def _write(path: Path, *figures: dict) -> None:
    path.write_text("".join(json.dumps(f) + "\n" for f in figures), encoding="utf-8")


def test_the_table_lists_every_figure_its_target_and_result_then_crashes(tmp_path):
    path = tmp_path / "results.jsonl"
    _write(
        path,
        {
            "benchmark": "voice_webhook",
            "figure": "bare Flask endpoint (same run)",
            "measured": 2367.0,
            "unit": "req/s",
        },
        {
            "benchmark": "voice_webhook",
            "figure": "SQLite: req/s",
            "measured": 130.2,
            "unit": "req/s",
            "target": ">= 1,500",
            "ok": False,
            "note": "errors: none",
        },
        {
            "benchmark": "voice_webhook",
            "figure": "SQLite: ratio to bare Flask",
            "measured": 5.5,
            "unit": "%",
            "target": ">= 35%",
            "ok": False,
        },
        {
            "benchmark": "schedule",
            "figure": "dispatch, PostgreSQL",
            "measured": 1110,
            "unit": "/s",
            "target": ">= 1,000",
            "ok": True,
        },
    )
    runs = [
        run_all.Run(run_all.Benchmark("voice_webhook"), 0, 31.0),
        run_all.Run(run_all.Benchmark("schedule"), 0, 120.0),
        run_all.Run(run_all.Benchmark("import_items"), 0, 60.0),
        run_all.Run(run_all.Benchmark("quarter_report"), 2, 5.0),
    ]
    table = run_all.build_table(results.read_results(path), runs).splitlines()

    assert table[0].split() == ["benchmark", "figure", "measured", "target", "result", "note"]

    def row(benchmark: str, figure: str) -> list[str]:
        (line,) = [line for line in table if line.startswith(benchmark + " ") and f"  {figure}  " in line]
        return [cell.strip() for cell in line.split("  ") if cell.strip()]

    assert row("voice_webhook", "bare Flask endpoint (same run)")[2:] == ["2,367 req/s", "-", "-"]
    assert row("voice_webhook", "SQLite: req/s")[2:] == ["130 req/s", ">= 1,500", "MISSED", "errors: none"]
    assert row("voice_webhook", "SQLite: ratio to bare Flask")[2:] == ["5.5 %", ">= 35%", "MISSED"]
    assert row("schedule", "dispatch, PostgreSQL")[2:] == ["1,110 /s", ">= 1,000", "ok"]
    assert row("quarter_report", "the benchmark itself")[2:] == ["-", "-", "CRASHED", "exit status 2"]
    assert row("import_items", "the benchmark itself")[-1] == "ran, but reported no figures"
    # Measured values align on the right, under their header.
    measured_end = table[0].index("measured") + len("measured")
    assert all(line[measured_end - 1] != " " for line in table[2:7])
    assert "4 figures: 1 targets met, 2 missed, 1 without a target; 1 benchmark run(s) crashed" in table
    assert table[-1].startswith("run times: voice_webhook 31 s, schedule 120 s")


def test_the_table_of_an_earlier_results_file_is_printed_on_request(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    _write(
        path,
        {
            "benchmark": "import_items",
            "figure": "SQLite: rows/s",
            "measured": 5111.0,
            "unit": "rows/s",
            "target": ">= 20,000",
            "ok": False,
        },
    )
    assert run_all.main(["--table", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SQLite: rows/s" in out and "5,111 rows/s" in out and "MISSED" in out


def test_quick_plan_without_postgresql_passes_small_sizes_and_skip_pg_to_every_benchmark(tmp_path):
    runs = run_all.plan(quick=True, skip_pg=True, pg_url="postgresql+psycopg://x/test", workdir=str(tmp_path))
    names = [run.name for run in runs]
    assert names == [
        "import_items",
        "schedule",
        "quarter_report",
        "voice_webhook",
        "sms_webhook",
        "voice_instructions",
    ]
    for run in runs:
        assert "postgresql+psycopg://x/test" not in run.args
        # quarter_report is given its database; voice_instructions measures SQLite only
        assert ("--skip-pg" in run.args) != (run.name in {"quarter_report", "voice_instructions"})
    assert "--rows" in runs[0].args and "--answers" in runs[2].args and "--seconds" in runs[3].args
    assert "--requests" in runs[5].args
    full = run_all.plan(
        quick=False, skip_pg=False, pg_url="postgresql+psycopg://x/test", workdir=str(tmp_path)
    )
    assert [run.name for run in full].count("quarter_report") == 2
    assert all("--skip-pg" not in run.args and "--rows" not in run.args for run in full)


def _stand_ins(directory: Path, crash: bool) -> None:
    reporter = f"import sys\nsys.path.insert(0, {str(BENCH)!r})\nfrom results import report\n"
    (directory / "slow_thing.py").write_text(
        reporter + 'report("rate", 5.0, "req/s", target=">= 10", ok=False)\nprint("slow_thing ran")\n',
        encoding="utf-8",
    )
    (directory / "fast_thing.py").write_text(
        reporter
        + 'report("rate", 50.0, "req/s", target=">= 10", ok=True)\n'
        + ("raise SystemExit(3)\n" if crash else ""),
        encoding="utf-8",
    )


@pytest.mark.parametrize("crash", [False, True])
def test_run_all_fails_only_when_a_benchmark_crashed_not_when_a_target_is_missed(
    tmp_path, monkeypatch, capfd, crash
):
    _stand_ins(tmp_path, crash)
    monkeypatch.setattr(run_all, "BENCH", tmp_path)
    monkeypatch.setattr(
        run_all, "plan", lambda **_: [run_all.Benchmark("slow_thing"), run_all.Benchmark("fast_thing")]
    )
    kept = tmp_path / "kept.jsonl"
    status = run_all.main(["--results", str(kept), "--skip-pg"])

    out = capfd.readouterr().out
    assert status == (1 if crash else 0)
    assert "slow_thing ran" in out  # the benchmark's own output streams through
    table = out.split("== benchmark results")[1]
    assert "slow_thing" in table and "MISSED" in table and "fast_thing" in table
    assert ("CRASHED" in table) == crash
    assert [f.figure for f in results.read_results(kept)] == ["rate", "rate"]
