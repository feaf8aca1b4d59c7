"""Benchmark: the inbound SMS webhook (signed, parsed, one committed answer) under gunicorn, 2 sync workers.

Each request is a citizen's first reply ("1") to a survey text: signature check, routing to the open
SMS survey by (From, To), parsing, the engine step, the answer, the inbound and reply Message rows,
one commit. Loaded from loopback with wrk -t2 -c16 beside the bare Flask endpoint of bench/bare_app.py
in the same run; prints req/s, p50 and p99 for both and their ratio, beside the target of
>= 1,200 req/s on SQLite.

    .venv/bin/python bench/sms_webhook.py [--surveys N] [--seconds S] [--skip-pg]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook_load import Gunicorn, fresh_postgres, run_wrk, write_requests  # noqa: E402

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

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
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
    path = public[len(settings.app.public_base_url):]
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
        conn.execute(insert(ServiceItem), [
            {"id": i + 1, "source": "bench", "external_id": f"B{i}", "department_id": dept,
             "matter": "契税申报", "phone_e164": _phone(i), "phone_kind": "mobile", "completed_at": now,
             "imported_at": now, "updated_at": now}
            for i in range(count)
        ])
        surveys, attempts = [], []
        for i in range(count):
            surveys.append({"id": i + 1, "campaign_id": campaign, "item_id": i + 1, "kind": "survey",
                            "token": f"bench{i:010d}", "department_id": dept, "quarter": "2026Q4",
                            "language": "zh-CN", "state": "in_progress", "channel": "sms",
                            "script_state": {"engine": state, "channel": "sms"}, "first_attempt_at": now,
                            **stamps})
            attempts.append({"survey_id": i + 1, "channel": "sms", "number": 1, "provider_id": f"SM{i:032x}",
                             "from_number": ours, "status": "delivered", "created_at": now})
            sid = f"SM{count + i:032x}"
            form = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC" + "0" * 32,
                    "From": _phone(i), "To": ours, "Body": "1", "NumMedia": "0", "NumSegments": "1",
                    "SmsStatus": "received", "ApiVersion": "2010-04-01"}
            requests.append((path, urlencode(form), sign_request(settings.twilio.auth_token, public, form)))
        conn.execute(insert(Survey), surveys)
        conn.execute(insert(Attempt), attempts)
    engine.dispose()
    return requests


def _phone(i: int) -> str:
    return f"+86199{i:08d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surveys", type=int, default=40_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--pg-url", default=os.environ.get("RETURNVISIT_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    bench_dir = str(Path(__file__).resolve().parent)

    with tempfile.TemporaryDirectory() as tmp:
        bare = Gunicorn("bare_app:app", cwd=bench_dir)
        baseline = run_wrk(bare.port, _bare_requests(Path(tmp)), seconds=args.seconds)
        bare.stop()
        targets = [("SQLite", f"sqlite:///{tmp}/sms.db")]
        if not args.skip_pg:
            targets.append(("PostgreSQL", fresh_postgres(args.pg_url, "rv_bench_sms")))
        print(f"bare Flask endpoint: {baseline.requests_per_second:,.0f} req/s, "
              f"p50 {baseline.p50_ms:.1f} ms, p99 {baseline.p99_ms:.1f} ms")
        print(f"{'database':<12}{'req/s':>9}{'target':>9}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>7}"
              f"{'worker RSS MB':>15}  result")
        for name, url in targets:
            requests = build_store(url, args.surveys)
            requests_file = Path(tmp) / f"{name}.tsv"
            write_requests(requests_file, requests)
            config = Path(tmp) / f"{name}.toml"
            config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
            server = Gunicorn("ivr.wsgi:app", env={"RETURNVISIT_CONFIG": str(config)})
            _warm_up(server.port)
            result = run_wrk(server.port, requests_file, seconds=args.seconds)
            rss = server.worker_rss_mb()
            server.stop()
            ratio = result.requests_per_second / baseline.requests_per_second
            target = TARGETS.get(name)
            ok = (target is None or result.requests_per_second >= target) and result.requests <= args.surveys
            print(f"{name:<12}{result.requests_per_second:>9,.0f}{'>= ' + str(target) if target else '-':>9}"
                  f"{result.p50_ms:>8.1f}{result.p99_ms:>8.1f}{ratio:>7.0%}"
                  f"{rss:>15.0f}  {'ok' if ok else 'MISSED'}  (errors: {result.errors})")
            if result.requests > args.surveys:
                print(f"  note: {result.requests} requests > {args.surveys} surveys: "
                      "rerun with more --surveys")


def _warm_up(port: int) -> None:
    # Both workers import the app after the port opens; a short run must not time their start-up.
    for _ in range(8):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30).read()  # noqa: S310
    time.sleep(1)


def _bare_requests(tmp: Path) -> Path:
    path = tmp / "bare.tsv"
    write_requests(path, [("/twilio/voice/gather", "Digits=1", "x")])
    return path


if __name__ == "__main__":
    main()
