"""The operating figures read from the store for Prometheus, cheaply enough to read at every scrape.

Totals over a large store would cost a scan of a million rows per scrape, so a `StoreReader` keeps
what can no longer change between reads and asks the database only for the rest:

- answers and attempts (dispatches) are only ever inserted: their counts by channel are kept up to
  the newest row older than SETTLE, and each read counts only the rows after it (a primary-key range);
- final dispositions are kept per quarter: each read recounts the two newest quarters from the
  index that leads with the quarter, and every FULL_REFRESH seconds every quarter is recounted;
- gateway errors, open surveys and the due backlog are read in full each time from index ranges
  (failed attempts, unfinished surveys: a small part of the store).

A row whose transaction commits more than SETTLE after it was created could be missed by the
incremental counts; webhook and dispatch transactions last milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.domain import Channel, Disposition
from models.surveys import Answer, Attempt, AttemptStatus, Survey, SurveyState

SETTLE = timedelta(minutes=5)
FULL_REFRESH = 3600.0  # seconds between full recounts of the dispositions of every quarter
CHANNELS = tuple(channel.value for channel in Channel)
# Attempt statuses that mean the gateway or the carrier reported an error.
ERROR_STATUSES = (AttemptStatus.FAILED, AttemptStatus.UNDELIVERED)
OPEN_STATES = (SurveyState.SCHEDULED, SurveyState.DIALLING, SurveyState.IN_PROGRESS)
# Dispositions counted by name; anything else a later version may write is counted as "other".
KNOWN_DISPOSITIONS = frozenset(d.value for d in Disposition)


@dataclass
class StoreFigures:
    """Counts read from the database in one scrape."""

    answers: dict[str, int] = field(default_factory=dict)  # by channel
    dispositions: dict[tuple[str, str], int] = field(default_factory=dict)  # by (kind, disposition)
    dispatches: dict[str, int] = field(default_factory=dict)  # attempts written by dispatch, by channel
    gateway_errors: dict[tuple[str, str], int] = field(default_factory=dict)  # by (channel, code)
    open_surveys: dict[str, int] = field(default_factory=dict)  # by state
    due: int = 0  # scheduled surveys whose next attempt time has come
    oldest_due_seconds: float = 0.0  # how long the longest-waiting due survey has waited
    read_seconds: float = 0.0


@dataclass
class InsertedTally:
    """Rows of an insert-only table by channel, counted once up to `upto_id` and then incrementally."""

    model: type[Answer] | type[Attempt]
    created: str  # the attribute holding the row's creation time
    upto_id: int = 0
    settled: Counter[str] = field(default_factory=Counter)

    def read(self, session: Session, now: datetime) -> dict[str, int]:
        """Return the rows by channel at `now`, settling those older than SETTLE."""
        model, created = self.model, getattr(self.model, self.created)
        cut = session.scalar(
            select(func.max(model.id)).where(model.id > self.upto_id, created < now - SETTLE)
        )
        upto, settled = self.upto_id, self.settled
        if cut is not None:
            newly = _counts(
                session.execute(
                    select(model.channel, func.count())
                    .where(model.id > upto, model.id <= cut)
                    .group_by(model.channel)
                )
            )
            upto, settled = cut, settled + Counter(newly)
        after = select(model.channel, func.count()).where(model.id > upto).group_by(model.channel)
        fresh = _counts(session.execute(after))
        self.upto_id, self.settled = upto, settled  # only once every query has answered
        return dict(settled + Counter(fresh))


@dataclass
class DispositionTally:
    """Final dispositions by (kind, disposition), kept per quarter."""

    by_quarter: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)
    full_at: float | None = None  # time.monotonic() of the last full recount

    def read(self, session: Session, clock: float) -> dict[tuple[str, str], int]:
        """Return the dispositions, recounting the newest quarters (or all of them when it is time)."""
        full = self.full_at is None or clock - self.full_at >= FULL_REFRESH
        quarters: list[str] | None = None
        if not full:
            newest = session.scalar(select(func.max(Survey.quarter)))
            before = session.scalar(select(func.max(Survey.quarter)).where(Survey.quarter < newest))
            quarters = [q for q in (newest, before) if q is not None]
        recount: dict[str, Counter[tuple[str, str]]] = {q: Counter() for q in quarters or ()}
        for quarter, kind, disposition, count in _final_dispositions(session, quarters):
            recount.setdefault(quarter, Counter())[(kind, disposition)] += count
        self.by_quarter = recount if full else {**self.by_quarter, **recount}
        if full:
            self.full_at = clock
        total: Counter[tuple[str, str]] = Counter()
        for counts in self.by_quarter.values():
            total.update(counts)
        return +total  # without zeros


def _final_dispositions(session: Session, quarters: list[str] | None) -> list[tuple[str, str, str, int]]:
    """Return (quarter, kind, disposition, surveys) of finished surveys, of `quarters` or of all."""
    done = [Survey.state == SurveyState.DONE, Survey.disposition.is_not(None)]
    if quarters is not None:
        done.append(Survey.quarter.in_(quarters))
    if session.get_bind().dialect.name != "sqlite":
        grouped = select(Survey.quarter, Survey.kind, Survey.disposition, func.count()).where(*done)
        rows = session.execute(grouped.group_by(Survey.quarter, Survey.kind, Survey.disposition))
        return [(quarter, kind, _known(disposition), count) for quarter, kind, disposition, count in rows]
    # SQLite sorts a GROUP BY that does not follow an index into a temporary b-tree (a second for two
    # quarters of 166,000 surveys); grouping by the index's leading (quarter, kind) and counting each
    # disposition with FILTER reads the index in order (a third of that).
    known = sorted(KNOWN_DISPOSITIONS)
    counts = [func.count().filter(Survey.disposition == d) for d in known]
    query = select(Survey.quarter, Survey.kind, func.count(), *counts).where(*done)
    result: list[tuple[str, str, str, int]] = []
    for row in session.execute(query.group_by(Survey.quarter, Survey.kind)):
        quarter, kind, total, each = row[0], row[1], int(row[2]), [int(n) for n in row[3:]]
        result += [(quarter, kind, d, n) for d, n in zip(known, each, strict=True) if n]
        if total > sum(each):
            result.append((quarter, kind, "other", total - sum(each)))
    return result


class StoreReader:
    """Reads the store figures, keeping the incremental counts between reads (one per app)."""

    def __init__(self) -> None:
        self.answers = InsertedTally(Answer, "received_at")
        self.dispatches = InsertedTally(Attempt, "created_at")
        self.dispositions = DispositionTally()
        self._lock = threading.Lock()

    def read(self, session: Session, now: datetime) -> StoreFigures:
        """Count answers, dispositions, dispatches, gateway errors and the due backlog at `now`."""
        with self._lock:
            started = time.perf_counter()
            figures = StoreFigures(
                answers=self.answers.read(session, now),
                dispatches=self.dispatches.read(session, now),
                dispositions=self.dispositions.read(session, time.monotonic()),
            )
            code = func.coalesce(Attempt.error_code, "none")
            failed = session.execute(
                select(Attempt.channel, code, func.count())
                # Both columns of ix_attempts_channel_status, so only failed attempts are read.
                .where(Attempt.channel.in_(CHANNELS), Attempt.status.in_(ERROR_STATUSES))
                .group_by(Attempt.channel, code)
            )
            figures.gateway_errors = {(channel, str(error)): count for channel, error, count in failed}
            figures.open_surveys = _counts(
                session.execute(
                    select(Survey.state, func.count())
                    .where(Survey.state.in_(OPEN_STATES))
                    .group_by(Survey.state)
                )
            )
            due, oldest = session.execute(
                select(func.count(), func.min(Survey.next_attempt_at)).where(
                    Survey.state == SurveyState.SCHEDULED, Survey.next_attempt_at <= now
                )
            ).one()
            figures.due = due
            figures.oldest_due_seconds = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
            figures.read_seconds = time.perf_counter() - started
            return figures


def _known(disposition: str | None) -> str:
    return disposition if disposition in KNOWN_DISPOSITIONS else "other"


def _counts(rows: Iterable[Any]) -> dict[str, int]:
    return {str(key): int(count) for key, count in rows}
