"""The survey engine is pure (DESIGN §3): importing and running it loads no web, Twilio or database code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("flask", "werkzeug", "twilio", "sqlalchemy", "psycopg")

# Run in a fresh interpreter: the test process has imported the app long before this test runs.
PROGRAM = """
import json, sys
from datetime import date

import ivr.script
from ivr.script import Digits, ItemContext, default_script, start, step

script = default_script()
ctx = ItemContext(org="org", department="dept", matter="matter", completed_on=date(2026, 11, 10))
first = start(script, ctx)
after = step(script, ctx, first.state, Digits("4"))
assert first.ask is not None and after.answers, (first, after)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_engine_imports_and_runs_without_flask_twilio_or_a_database():
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    impure = sorted({m.split(".")[0] for m in loaded} & set(FORBIDDEN))
    assert not impure, f"ivr.script pulled in {impure}"
