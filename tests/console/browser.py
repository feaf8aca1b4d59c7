"""Live servers and a Chromium page for the browser tests (Playwright driving Debian's /usr/bin/chromium).

The console runs with werkzeug's server on 127.0.0.1 on a free port, in a thread, against a fresh
SQLite database migrated to head; the simulator drives the webhook app in that same process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_PASSWORD = "browser-pass-1"


@dataclass
class LiveConsole:
    """A console served over HTTP, and the store behind it."""

    url: str
    sessions: object


def seed(sessions) -> None:
    """Two departments, an admin, and completed items the simulator can call."""
    from models.departments import Department
    from models.items import ServiceItem
    from models.staff import StaffUser

    with sessions() as session:
        swj = Department(code="SWJ", name="税务局")
        scj = Department(code="SCJ", name="市场监督管理局")
        session.add_all([swj, scj])
        session.flush()
        hashed = generate_password_hash(ADMIN_PASSWORD, method="pbkdf2:sha256:1000")
        session.add(StaffUser(username="admin", role="admin", password_hash=hashed))
        completed = datetime.now(UTC) - timedelta(days=1)
        for n, dept in enumerate([swj, scj, swj], start=1):
            session.add(ServiceItem(
                source="hall", external_id=f"WEB-{n}", department_id=dept.id, matter="企业开办登记",
                phone_raw=f"1390013900{n}", phone_e164=f"+861390013900{n}", phone_kind="mobile",
                completed_at=completed,
            ))
        session.commit()


@contextmanager
def live_console(db_url: str) -> Iterator[LiveConsole]:
    """Serve a console on a fresh, migrated database until the block ends."""
    from console.web import create_console_app
    from models import migrate
    from models.db import make_engine, make_sessionmaker
    from models.settings import load_settings

    engine = make_engine(db_url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    seed(sessions)
    settings = load_settings(env={}, overrides={"database": {"url": db_url}})
    app = create_console_app(settings, session_factory=sessions)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-console", daemon=True)
    thread.start()
    try:
        yield LiveConsole(f"http://127.0.0.1:{server.server_port}", sessions)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        engine.dispose()
