"""Benchmark: the rating Gather webhook (signed, one committed answer) under gunicorn, 2 sync workers.

Loaded from loopback with wrk -t2 -c16 -d10s beside a bare Flask endpoint returning a fixed TwiML
string, in the same run: three rounds per database, each the bare endpoint and then the webhook, so
a slow spell of this shared machine touches both sides of a ratio (bench/webhook_load.py). Prints
every round, then the medians beside the targets: >= 1,500 req/s on SQLite, >= 900 req/s on
PostgreSQL, p99 < 25 ms, >= 35 % of the bare rate.
Each figure, and the workers' peak RSS, is also reported to bench/results.py (the table of
`make bench`); the app servers' own log goes to a file beside the test databases.

    .venv/bin/python bench/voice_webhook.py [--surveys N] [--seconds S] [--rounds R] [--skip-pg]
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
from ivr.twilio_adapter import render_voice, sign_request  # noqa: E402
from ivr.urls import voice_gather_url  # noqa: E402
from ivr.voice import remembered, voice_for  # noqa: E402
from models import migrate  # noqa: E402
from models.campaigns import Campaign  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.departments import Department  # noqa: E402
from models.items import ServiceItem  # noqa: E402
from models.settings import load_settings  # noqa: E402
from models.surveys import Attempt, Survey  # noqa: E402

TARGETS = {"SQLite": 1500, "PostgreSQL": 900}
P99_TARGET_MS = 25
RATIO_TARGET = 0.35


def build_store(url: str, count: int) -> list[tuple[str, str, str]]:
    """Create `count` surveys waiting at the rating menu; return their signed Gather requests.

    Each survey's state is the one the answer webhook leaves: the engine at the rating menu and the
    greeting's TwiML kept for a repeated request (the row a Gather reads and rewrites).
    """
    settings = load_settings(env={})
    engine = make_engine(url)
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    greeting = start(
        default_script(),
        ItemContext(settings.app.org, "税务局", "契税申报", now.astimezone(settings.app.tz).date()),
        "survey",
        "voice",
    )
    voice = voice_for(settings, "zh-CN")
    base = settings.app.public_base_url
    requests = []
    with engine.begin() as conn:
        dept = conn.execute(
            insert(Department).returning(Department.id),
            {"code": "SWJ", "name": "税务局", "kind": "service", "created_at": now},
        ).scalar_one()
        campaign = conn.execute(
            insert(Campaign).returning(Campaign.id),
            {
                "name": "bench",
                "status": "active",
                "seed": "b",
                "config": {"script": "default"},
                "created_at": now,
                "updated_at": now,
            },
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
                    "phone_e164": f"+86199{i:08d}",
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
            sid = f"CA{i:032x}"
            token = f"bench{i:010d}"
            gather_url = voice_gather_url(base, token, 0, "zh-CN")  # as the answer webhook writes it
            engine_state = {"engine": greeting.state, "channel": "voice"}
            surveys.append(
                {
                    "id": i + 1,
                    "campaign_id": campaign,
                    "item_id": i + 1,
                    "kind": "survey",
                    "token": token,
                    "department_id": dept,
                    "quarter": "2026Q4",
                    "language": "zh-CN",
                    "state": "in_progress",
                    "channel": "voice",
                    "script_state": remembered(
                        engine_state, sid, "answer", render_voice(greeting, voice, gather_url)
                    ),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            attempts.append(
                {
                    "survey_id": i + 1,
                    "channel": "voice",
                    "number": 1,
                    "provider_id": sid,
                    "status": "in_progress",
                    "created_at": now,
                }
            )
            form = {
                "CallSid": sid,
                "AccountSid": "AC" + "0" * 32,
                "From": "+12025550100",
                "To": f"+86199{i:08d}",
                "CallStatus": "in-progress",
                "Direction": "outbound-api",
                "ApiVersion": "2010-04-01",
                "Digits": "1",
            }
            path = gather_url[len(base) :]
            requests.append(
                (path, urlencode(form), sign_request(settings.twilio.auth_token, gather_url, form))
            )
        conn.execute(insert(Survey), surveys)
        conn.execute(insert(Attempt), attempts)
    engine.dispose()
    return requests


def main() -> None:
    run_webhook_benchmark(
        __doc__.splitlines()[0],
        build_store,
        database_name="rv_bench_voice",
        targets=TARGETS,
        p99_target_ms=P99_TARGET_MS,
        ratio_target=RATIO_TARGET,
    )


if __name__ == "__main__":
    main()
