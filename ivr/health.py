"""Liveness of the public app."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    """Answer that the process is up (no database access)."""
    return {"status": "ok"}, 200
