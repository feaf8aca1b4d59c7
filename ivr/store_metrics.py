"""The store's figures as Prometheus series, served by the staff console at `/metrics`.

They are read from the database at scrape time (ivr.store_figures), so they are right across every
web worker and scheduler process. A read is reused for `metrics.store_cache_seconds`, so several
scrapers cost one set of queries; when the database fails, the scrape still answers, with
returnvisit_store_up 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from flask import Blueprint, current_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from werkzeug.wrappers import Response

from ivr import web
from ivr.observability import metrics_response
from ivr.store_figures import OPEN_STATES, StoreFigures, StoreReader
from models.base import utcnow
from models.domain import Channel, Disposition
from models.surveys import SurveyKind

log = logging.getLogger(__name__)

bp = Blueprint("store_metrics", __name__)


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
            "returnvisit_dispatches",
            "Calls and texts dispatched (attempts written before the gateway is called), by channel.",
            labels=["channel"],
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
    cache = current_app.extensions.setdefault("returnvisit.store_figures", {"reader": StoreReader()})
    if cache.get("until", 0.0) > time.monotonic():
        return cache["figures"]
    try:
        with web.session_factory()() as session:
            figures = cache["reader"].read(session, utcnow())
    except Exception:  # a scrape must answer even when the database does not
        log.exception("store figures could not be read")
        return None
    cache.update(figures=figures, until=time.monotonic() + web.settings().metrics.store_cache_seconds)
    return figures


@bp.get("/metrics")
def metrics() -> Response:
    """Serve the store figures in Prometheus text format (internal clients only)."""
    return metrics_response(lambda: [StoreCollector(cached_store_figures())])
