"""Backups of the store: SQLite through its online backup API; PostgreSQL is dumped with pg_dump.

The SQLite copy is taken page by page from the live database (the webhook app and the scheduler may
keep writing: SQLite restarts the copy when a page it already copied changes), written beside the
destination under a temporary name, switched to a single-file journal, checked, and only then renamed
into place, so a file with the destination's name is always a whole, consistent database.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

# Where an operator finds the PostgreSQL procedure.
PROCEDURE = "docs/deploy.md, section Backups"
# Pages copied per step of the backup API (4 MiB with SQLite's default 4 KiB pages).
PAGES_PER_STEP = 1024


class BackupError(Exception):
    """The backup cannot be taken; the message says why and what to do instead."""


@dataclass(frozen=True)
class BackupResult:
    """What a finished backup wrote."""

    path: Path
    pages: int
    size_bytes: int
    seconds: float


def sqlite_file(url: str) -> Path:
    """Return the database file of a SQLite URL, or raise BackupError naming what to use instead."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        raise BackupError(
            "returnvisit backup copies SQLite databases only; this site uses PostgreSQL. "
            "Back it up with pg_dump, e.g. `pg_dump --format=custom --file=returnvisit.dump "
            f"DBNAME`, and restore with pg_restore (see {PROCEDURE})."
        )
    if backend != "sqlite":
        raise BackupError(f"returnvisit backup copies SQLite databases only, not {backend} (see {PROCEDURE})")
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database has no file to back up")
    path = Path(parsed.database)
    if not path.is_file():
        raise BackupError(f"database file {path} does not exist")
    return path


def backup_sqlite(
    url: str,
    destination: Path,
    *,
    pages_per_step: int = PAGES_PER_STEP,
    progress: Callable[[int, int], None] | None = None,
) -> BackupResult:
    """Copy the live SQLite database at `url` to a new file; `progress(copied, total)` sees each step."""
    source = sqlite_file(url)
    if destination.exists():
        raise BackupError(f"{destination} already exists: name a new file (a backup never overwrites one)")
    if not destination.parent.is_dir():
        raise BackupError(f"directory {destination.parent} does not exist")
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    pages = 0

    def step(_status: int, remaining: int, total: int) -> None:
        nonlocal pages
        pages = total
        if progress is not None:
            progress(total - remaining, total)

    try:
        check = _copy(source, partial, pages_per_step, step)
    except sqlite3.Error as exc:  # a destination that cannot be written (read-only, full, not a disk)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise BackupError(f"cannot copy the database to {destination}: {exc}") from None
    if check != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(f"the copy failed SQLite's integrity check: {check}")
    partial.rename(destination)
    return BackupResult(destination, pages, destination.stat().st_size, time.perf_counter() - started)


def _copy(source: str | Path, partial: Path, pages_per_step: int, step: Any) -> str:
    """Copy `source` into `partial` with SQLite's online backup; return its integrity check."""
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=pages_per_step, progress=step)
            # The live database runs in WAL mode; a backup is one self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE")
            return str(dst.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            dst.close()
    finally:
        src.close()
