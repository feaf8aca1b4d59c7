"""The figures of a benchmark run: each benchmark reports every figure it measures here.

`report` prints nothing: a benchmark prints its own lines. When RETURNVISIT_BENCH_RESULTS names a
file (bench/run_all.py sets it), each figure is appended to it as one JSON line, and run_all.py
prints all of them as one table at the end. RETURNVISIT_BENCH_QUICK set to 1 asks a benchmark for a
short smoke run with small sizes (`is_quick`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_ENV = "RETURNVISIT_BENCH_RESULTS"
QUICK_ENV = "RETURNVISIT_BENCH_QUICK"


@dataclass(frozen=True)
class Figure:
    """One measured figure of one benchmark."""

    benchmark: str  # the script that measured it, e.g. "voice_webhook"
    figure: str  # what was measured, e.g. "SQLite: rating Gather req/s"
    measured: float | None  # None: not measured (e.g. wrk printed no percentile)
    unit: str = ""
    target: str | None = None  # as people read it, e.g. ">= 1,500"
    ok: bool | None = None  # None: the figure has no target
    note: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figure:
        """Read one JSON line's object; raise ValueError naming what is wrong with it."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a figure is a JSON object, not {type(data).__name__}")
        missing = [key for key in ("benchmark", "figure", "measured") if key not in data]
        if missing:
            raise ValueError(f"figure lacks {', '.join(missing)}")
        return _checked(
            benchmark=data["benchmark"],
            figure=data["figure"],
            measured=data["measured"],
            unit=data.get("unit") or "",
            target=data.get("target"),
            ok=data.get("ok"),
            note=data.get("note"),
        )


def report(
    figure: str,
    measured: float | None,
    unit: str = "",
    *,
    target: str | None = None,
    ok: bool | None = None,
    note: str | None = None,
    benchmark: str | None = None,
) -> Figure:
    """Record one measured figure (to the results file when RETURNVISIT_BENCH_RESULTS names one)."""
    entry = _checked(
        benchmark=benchmark if benchmark is not None else Path(sys.argv[0]).stem,
        figure=figure,
        measured=measured,
        unit=unit,
        target=target,
        ok=ok,
        note=note,
    )
    path = os.environ.get(RESULTS_ENV)
    if path:
        line = json.dumps({**asdict(entry), "at": datetime.now(UTC).isoformat()}, ensure_ascii=False)
        # One write per line in append mode: benchmarks that report at once do not interleave lines.
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return entry


def read_results(path: Path) -> list[Figure]:
    """Read a results file; raise ValueError naming the line that is not a figure."""
    figures = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            figures.append(Figure.from_json(json.loads(line)))
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{path}:{number}: {error}") from error
    return figures


def is_quick() -> bool:
    """Whether RETURNVISIT_BENCH_QUICK asks for a short smoke run."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _checked(
    *,
    benchmark: object,
    figure: object,
    measured: object,
    unit: object,
    target: object,
    ok: object,
    note: object,
) -> Figure:
    for name, value in (("benchmark", benchmark), ("figure", figure)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    for name, value in (("unit", unit), ("target", target), ("note", note)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} of {figure!r} must be a string, got {value!r}")
    if measured is not None and (isinstance(measured, bool) or not isinstance(measured, int | float)):
        raise ValueError(f"measured value of {figure!r} must be a number, got {measured!r}")
    if ok is not None and not isinstance(ok, bool):
        raise ValueError(f"ok of {figure!r} must be true, false or absent, got {ok!r}")
    if ok is not None and target is None:
        raise ValueError(f"{figure!r} says ok={ok} but names no target")
    # NaN or infinity (e.g. no percentile printed, a rate over zero seconds) is "not measured".
    value = None if measured is None or not math.isfinite(measured) else measured  # type: ignore[arg-type]
    return Figure(str(benchmark), str(figure), value, str(unit or ""), target, ok, note)  # type: ignore[arg-type]
