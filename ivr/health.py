"""Liveness and readiness of a web app (the public webhook app and the staff console both serve them).

`/healthz` says the process answers; it touches nothing. `/readyz` says the app can do its work: the
database answers and its schema is at the newest migration. It never raises: a database that is
down or behind answers 503 with the reason, and the cause is logged.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import text

from ivr import web

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)

# A ready answer is reused this long (seconds), so a busy probe costs the database little.
READY_CACHE_SECONDS = 2.0


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    """Answer that the process is up (no database access)."""
    return {"status": "ok"}, 200


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    """Answer 200 when the database answers and is migrated to head, 503 with the reason otherwise."""
    cache = current_app.extensions.setdefault("returnvisit.readyz", {})
    if cache.get("until", 0.0) > time.monotonic():
        return cache["body"], 200
    body, status = check_ready()
    if status == 200:
        cache.update(body=body, until=time.monotonic() + READY_CACHE_SECONDS)
    else:
        cache.clear()
    return body, status


def check_ready() -> tuple[dict[str, Any], int]:
    """Check the database and its schema revision; return the JSON body and the status code."""
    head = head_revisions()
    try:
        with web.session_factory()() as session:
            connection = session.connection()
            revisions: set[str] = set()
            if connection.dialect.has_table(connection, "alembic_version"):
                rows = connection.execute(text("SELECT version_num FROM alembic_version"))
                revisions.update(rows.scalars())
    except Exception as exc:  # any failure to reach the database means not ready, never a 500
        log.warning("readyz: database unreachable: %s", _first_line(exc))
        return {"status": "unavailable", "reason": "database unreachable"}, 503
    if revisions != head:
        found = ", ".join(sorted(revisions)) or "none"
        wanted = ", ".join(sorted(head))
        log.warning("readyz: schema at revision %s, the code needs %s (run returnvisit init)", found, wanted)
        return {
            "status": "unavailable",
            "reason": f"schema at revision {found}, needs {wanted} (run `returnvisit init`)",
        }, 503
    return {"status": "ready", "database": "ok", "schema": ", ".join(sorted(head))}, 200


@functools.cache
def head_revisions() -> frozenset[str]:
    """Return the newest migration revision(s) this code ships (read once per process)."""
    from alembic.script import ScriptDirectory

    from models.migrate import alembic_config

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
