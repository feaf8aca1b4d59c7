"""Helpers for tests that end PostgreSQL server connections."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text


def terminate_backend(url: str, pid: int) -> None:
    """End the server process of one connection and wait until it is gone (its goodbye is sent)."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            gone = text("SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = :pid)")
            deadline = time.monotonic() + 10
            while not other.execute(gone, {"pid": pid}).scalar():
                assert time.monotonic() < deadline, f"server process {pid} did not end"
                time.sleep(0.05)
    finally:
        admin.dispose()
