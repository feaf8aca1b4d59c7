"""Each process entry point works with only its own imports (the test session imports every module)."""

import os
import subprocess
import sys

from sqlalchemy import select
from test_call_cli import seed_item

from models.cases import Case
from models.db import make_sessionmaker


def run(
    code: str, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_bad_rating_opens_its_case_from_the_cli_alone(tmp_path):
    # `returnvisit call` imports the webhook app, never the staff tables that cases.owner_id names.
    db_url = f"sqlite:///{tmp_path}/entry.db"
    engine, item_id = seed_item(db_url)
    result = run(
        "from console.cli import main; main()",
        "call", "--item", str(item_id),
        stdin="5\n12#\n\n",
        env={"RETURNVISIT_DATABASE_URL": db_url},
    )
    assert result.returncode == 0, result.stderr
    assert "非常抱歉" not in result.stdout  # the apology of a webhook that failed
    with make_sessionmaker(engine)() as session:
        case = session.scalars(select(Case)).one()
        assert (case.grade, case.categories) == ("very_dissatisfied", ["stuck", "shirk"])
    engine.dispose()


def test_the_gunicorn_entry_point_knows_every_table(tmp_path):
    code = "import ivr.wsgi; from models.base import Base; print(sorted(Base.metadata.tables))"
    result = run(code, env={"RETURNVISIT_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert result.returncode == 0, result.stderr
    assert "'staff_users'" in result.stdout and "'cases'" in result.stdout


def test_a_cli_command_prints_only_its_own_output(tmp_path):
    # Each command checks the schema first; reading its revision must not log Alembic's set-up lines.
    db_url = f"sqlite:///{tmp_path}/quiet.db"
    engine, _ = seed_item(db_url)
    engine.dispose()
    cli = "from console.cli import main; main()"
    result = run(cli, "cases", "list", env={"RETURNVISIT_DATABASE_URL": db_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 case(s)"
    assert "alembic" not in result.stderr and "Context impl" not in result.stderr
