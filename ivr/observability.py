"""Prometheus metrics of the webhook processes, and the guarded `/metrics` endpoint of both apps.

The webhook app observes one latency histogram and one response counter per request (a few
microseconds, no database). Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR in the
environment of gunicorn (an empty directory, cleared before each start): prometheus_client then keeps
each worker's values in a file there, and `/metrics` adds up every worker's files, including those of
workers that have exited, so counters never go back. Without it, `/metrics` shows this process only.

`/metrics` answers only clients in `metrics.allow_networks`, and never a request that came through a
proxy (it carries X-Forwarded-For, X-Real-IP or Forwarded): Prometheus scrapes gunicorn directly.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from flask import Blueprint, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.wrappers import Response

from ivr import web

log = logging.getLogger(__name__)

# Seconds; the webhooks aim at a p99 under 25 ms, so the buckets are finest there.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WEBHOOK_SECONDS = Histogram(
    "returnvisit_webhook_duration_seconds",
    "Time to answer a Twilio webhook (signature check included), by Flask endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
WEBHOOK_RESPONSES = Counter(
    "returnvisit_webhook_responses",
    "Twilio webhook answers by Flask endpoint and HTTP status (403: bad signature, 5xx: failures).",
    ["endpoint", "status"],
)
# Headers a reverse proxy adds: a request carrying one came from outside, whatever its peer address.
FORWARDED_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")

bp = Blueprint("metrics", __name__)


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


# The labelled children by (endpoint, status): looking them up by labels() costs as much as observing.
_children: dict[tuple[str, int], tuple[Any, Any]] = {}


def observe_webhook(endpoint: str, status: int, seconds: float) -> None:
    """Count one answered webhook and its latency."""
    children = _children.get((endpoint, status))
    if children is None:
        children = (WEBHOOK_SECONDS.labels(endpoint), WEBHOOK_RESPONSES.labels(endpoint, str(status)))
        _children[(endpoint, status)] = children
    children[0].observe(seconds)
    children[1].inc()


def multiprocess_dir() -> str | None:
    """Return the directory of prometheus_client's multiprocess mode, when gunicorn runs with one."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_collectors() -> Collector:
    """Return what this process's series come from: every worker's files, or this process."""
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return registry


@bp.get("/metrics")
def metrics() -> Response:
    """Serve the webhook processes' series in Prometheus text format (internal clients only)."""
    return metrics_response(lambda: [process_collectors()])


def metrics_response(collectors: Callable[[], list[Collector]]) -> Response:
    """Answer a scrape with the series of `collectors()`, or 403 for a client outside the allow-list."""
    if not scrape_allowed():
        log.info("metrics scrape refused for %s", request.remote_addr)
        return Response("metrics are served to internal networks only\n", status=403, mimetype="text/plain")
    body = generate_latest(_Joined(collectors()))  # type: ignore[arg-type]
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})


def scrape_allowed() -> bool:
    """Return whether this request may read metrics: a direct client in metrics.allow_networks."""
    if any(header in request.headers for header in FORWARDED_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _allowed_networks())


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = current_app.extensions.get("returnvisit.metrics_networks")
    if networks is None:
        networks = [
            ipaddress.ip_network(value, strict=False) for value in web.settings().metrics.allow_networks
        ]
        current_app.extensions["returnvisit.metrics_networks"] = networks
    return networks


class _Joined:
    """Several collectors seen as one registry by generate_latest."""

    def __init__(self, collectors: list[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()
