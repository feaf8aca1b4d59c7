"""Figures read from the store at scrape time: right across every web worker and scheduler process.

Answers by channel, final dispositions, dispatches, gateway errors and the due-survey backlog are
counted by a few grouped queries, most of them answered from an index alone (ix_surveys_due,
ix_surveys_quarter_metrics, ix_attempts_channel_status); answers by channel reads the answers table.
The result is reused for `metrics.store_cache_seconds`, so several scrapers cost one set of
queries. The staff console serves them at `/metrics` (Prometheus counters: they only grow, except
where an operator deletes rows).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ivr import web
from ivr.observability import metrics_response
from models.base import utcnow
from models.domain import Channel, Disposition
from models.surveys import Answer, Attempt, AttemptStatus, Survey, SurveyKind, SurveyState

log = logging.getLogger(__name__)

bp = Blueprint("store_metrics", __name__)

# Attempt statuses that mean the gateway or the carrier reported an error.
ERROR_STATUSES = (AttemptStatus.FAILED, AttemptStatus.UNDELIVERED)
OPEN_STATES = (SurveyState.SCHEDULED, SurveyState.DIALLING, SurveyState.IN_PROGRESS)


@dataclass
class StoreFigures:
    """Counts read from the database in one scrape."""

    answers: dict[str, int] = field(default_factory=dict)  # by channel
    dispositions: dict[tuple[str, str], int] = field(default_factory=dict)  # by (kind, disposition)
    dispatches: dict[str, int] = field(default_factory=dict)  # attempts handed to the gateway, by channel
    gateway_errors: dict[tuple[str, str], int] = field(default_factory=dict)  # by (channel, code)
    open_surveys: dict[str, int] = field(default_factory=dict)  # by state
    due: int = 0  # scheduled surveys whose next attempt time has come
    oldest_due_seconds: float = 0.0  # how long the longest-waiting due survey has waited
    read_seconds: float = 0.0


def read_store_figures(session: Session, now: datetime) -> StoreFigures:
    """Count answers, dispositions, dispatches, gateway errors and the due backlog at `now`."""
    started = time.perf_counter()
    figures = StoreFigures()
    figures.answers = _counts(session.execute(select(Answer.channel, func.count()).group_by(Answer.channel)))
    final = session.execute(
        select(Survey.kind, Survey.disposition, func.count())
        .where(Survey.state == SurveyState.DONE, Survey.disposition.is_not(None))
        .group_by(Survey.kind, Survey.disposition)
    )
    figures.dispositions = {(kind, disposition or ""): count for kind, disposition, count in final}
    figures.dispatches = _counts(
        session.execute(
            select(Attempt.channel, func.count())
            .where(Attempt.status != AttemptStatus.PENDING)
            .group_by(Attempt.channel)
        )
    )
    code = func.coalesce(Attempt.error_code, "none")
    failed = session.execute(
        select(Attempt.channel, code, func.count())
        .where(Attempt.status.in_(ERROR_STATUSES))
        .group_by(Attempt.channel, code)
    )
    figures.gateway_errors = {(channel, str(error)): count for channel, error, count in failed}
    figures.open_surveys = _counts(
        session.execute(
            select(Survey.state, func.count()).where(Survey.state.in_(OPEN_STATES)).group_by(Survey.state)
        )
    )
    due, oldest = session.execute(
        select(func.count(), func.min(Survey.next_attempt_at)).where(
            Survey.state == SurveyState.SCHEDULED, Survey.next_attempt_at <= now
        )
    ).one()
    figures.due = due
    figures.oldest_due_seconds = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    figures.read_seconds = time.perf_counter() - started
    return figures


def _counts(rows: Iterable[Any]) -> dict[str, int]:
    return {str(key): int(count) for key, count in rows}


class StoreCollector:
    """The store figures as Prometheus metric families (store_up 0 when they could not be read)."""

    def __init__(self, figures: StoreFigures | None) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "returnvisit_store_up", "1 when the store figures were read from the database, 0 when not."
        )
        up.add_metric([], 0 if self.figures is None else 1)
        yield up
        if self.figures is None:
            return
        f = self.figures
        channels = sorted({c.value for c in Channel} | set(f.answers) | set(f.dispatches))

        answers = CounterMetricFamily(
            "returnvisit_answers", "Answers stored, by the channel they arrived on.", labels=["channel"]
        )
        for channel in channels:
            answers.add_metric([channel], f.answers.get(channel, 0))
        yield answers

        dispositions = CounterMetricFamily(
            "returnvisit_dispositions",
            "Surveys that reached a final disposition, by kind (survey, verification, test).",
            labels=["kind", "disposition"],
        )
        known = {(SurveyKind.SURVEY.value, d.value) for d in Disposition}
        for kind, disposition in sorted(known | set(f.dispositions)):
            dispositions.add_metric([kind, disposition], f.dispositions.get((kind, disposition), 0))
        yield dispositions

        dispatches = CounterMetricFamily(
            "returnvisit_dispatches", "Calls and texts handed to the gateway, by channel.", labels=["channel"]
        )
        for channel in channels:
            dispatches.add_metric([channel], f.dispatches.get(channel, 0))
        yield dispatches

        errors = CounterMetricFamily(
            "returnvisit_gateway_errors",
            "Calls and texts the gateway or carrier failed (failed, undelivered), by channel and error code.",
            labels=["channel", "code"],
        )
        for (channel, code), count in sorted(f.gateway_errors.items()):
            errors.add_metric([channel, code], count)
        yield errors

        open_surveys = GaugeMetricFamily(
            "returnvisit_surveys_open", "Surveys not finished yet, by state.", labels=["state"]
        )
        for state in OPEN_STATES:
            open_surveys.add_metric([state.value], f.open_surveys.get(state.value, 0))
        yield open_surveys

        yield GaugeMetricFamily(
            "returnvisit_surveys_due", "Scheduled surveys whose next attempt is due now (backlog).", f.due
        )
        yield GaugeMetricFamily(
            "returnvisit_surveys_due_oldest_seconds",
            "How long the longest-waiting due survey has been due (0 when none is).",
            f.oldest_due_seconds,
        )
        yield GaugeMetricFamily(
            "returnvisit_store_read_seconds", "Time the store figures took to read.", f.read_seconds
        )


def cached_store_figures() -> StoreFigures | None:
    """Return the store figures, read at most once per metrics.store_cache_seconds; None on failure."""
    cache = current_app.extensions.setdefault("returnvisit.store_figures", {})
    if cache.get("until", 0.0) > time.monotonic():
        return cache["figures"]
    try:
        with web.session_factory()() as session:
            figures = read_store_figures(session, utcnow())
    except Exception:  # a scrape must answer even when the database does not
        log.exception("store figures could not be read")
        return None
    cache.update(figures=figures, until=time.monotonic() + web.settings().metrics.store_cache_seconds)
    return figures


@bp.get("/metrics")
def metrics() -> Response:
    """Serve the store figures in Prometheus text format (internal clients only)."""
    return metrics_response(lambda: [StoreCollector(cached_store_figures())])
