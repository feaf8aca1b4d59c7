"""Benchmark: the inbound SMS webhook (signed, parsed, one committed answer) under gunicorn, 2 sync workers.

Each request is a citizen's first reply ("1") to a survey text: signature check, routing to the open
SMS survey by (From, To), parsing, the engine step, the answer, the inbound and reply Message rows,
one commit. Loaded from loopback with wrk -t2 -c16 beside the bare Flask endpoint of bench/bare_app.py
in the same run, in rounds as the voice benchmark (bench/webhook_load.py); prints every round, then
the medians beside the target of >= 1,200 req/s on SQLite.
Each figure, and the workers' peak RSS, is also reported to bench/results.py (the table of
`make bench`); the app servers' own log goes to a file beside the test databases.

    .venv/bin/python bench/sms_webhook.py [--surveys N] [--seconds S] [--rounds R] [--skip-pg]
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook_load import run_webhook_benchmark  # noqa: E402

from ivr.script import ItemContext, default_script, start  # noqa: E402
from ivr.twilio_adapter import sign_request  # noqa: E402
from ivr.urls import sms_inbound_url  # noqa: E402
from models import migrate  # noqa: E402
from models.campaigns import Campaign  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.departments import Department  # noqa: E402
from models.items import ServiceItem  # noqa: E402
from models.settings import load_settings  # noqa: E402
from models.surveys import Attempt, Survey  # noqa: E402

TARGETS = {"SQLite": 1200}
P99_TARGET_MS = 25


def build_store(url: str, count: int) -> list[tuple[str, str, str]]:
    """Create `count` SMS surveys whose text awaits a reply; return one signed reply for each."""
    settings = load_settings(env={})
    ours = settings.twilio.sms_from
    engine = make_engine(url)
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    context = ItemContext("org", "税务局", "契税申报", now.date())
    state = start(default_script(), context, "survey", "sms").state
    public = sms_inbound_url(settings.app.public_base_url)
    path = public[len(settings.app.public_base_url) :]
    stamps = {"created_at": now, "updated_at": now}
    requests = []
    with engine.begin() as conn:
        dept = conn.execute(
            insert(Department).returning(Department.id),
            {"code": "SWJ", "name": "税务局", "kind": "service", "created_at": now},
        ).scalar_one()
        campaign = conn.execute(
            insert(Campaign).returning(Campaign.id),
            {"name": "bench", "status": "active", "seed": "b", "config": {"name": "bench"}, **stamps},
        ).scalar_one()
        conn.execute(
            insert(ServiceItem),
            [
                {
                    "id": i + 1,
                    "source": "bench",
                    "external_id": f"B{i}",
                    "department_id": dept,
                    "matter": "契税申报",
                    "phone_e164": _phone(i),
                    "phone_kind": "mobile",
                    "completed_at": now,
                    "imported_at": now,
                    "updated_at": now,
                }
                for i in range(count)
            ],
        )
        surveys, attempts = [], []
        for i in range(count):
            surveys.append(
                {
                    "id": i + 1,
                    "campaign_id": campaign,
                    "item_id": i + 1,
                    "kind": "survey",
                    "token": f"bench{i:010d}",
                    "department_id": dept,
                    "quarter": "2026Q4",
                    "language": "zh-CN",
                    "state": "in_progress",
                    "channel": "sms",
                    "script_state": {"engine": state, "channel": "sms"},
                    "first_attempt_at": now,
                    **stamps,
                }
            )
            attempts.append(
                {
                    "survey_id": i + 1,
                    "channel": "sms",
                    "number": 1,
                    "provider_id": f"SM{i:032x}",
                    "from_number": ours,
                    "status": "delivered",
                    "created_at": now,
                }
            )
            sid = f"SM{count + i:032x}"
            form = {
                "MessageSid": sid,
                "SmsMessageSid": sid,
                "AccountSid": "AC" + "0" * 32,
                "From": _phone(i),
                "To": ours,
                "Body": "1",
                "NumMedia": "0",
                "NumSegments": "1",
                "SmsStatus": "received",
                "ApiVersion": "2010-04-01",
            }
            requests.append((path, urlencode(form), sign_request(settings.twilio.auth_token, public, form)))
        conn.execute(insert(Survey), surveys)
        conn.execute(insert(Attempt), attempts)
    engine.dispose()
    return requests


def _phone(i: int) -> str:
    return f"+86199{i:08d}"


def main() -> None:
    run_webhook_benchmark(__doc__.splitlines()[0], build_store, database_name="rv_bench_sms", targets=TARGETS)


if __name__ == "__main__":
    main()
