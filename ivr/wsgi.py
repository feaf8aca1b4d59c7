"""WSGI entry point for gunicorn: `gunicorn 'ivr.wsgi:app'` (configuration from RETURNVISIT_CONFIG).

Logs go to stderr as JSON lines (readable text on a terminal), phone numbers masked; see
docs/observability.md for metrics under several workers (PROMETHEUS_MULTIPROC_DIR).
"""

import gc
import logging

from ivr.app import create_app
from models.logs import setup_logging

if setup_logging() is not None:
    # Our lines name no source file, line or function, so the logging module is told not to look
    # them up for every record (the logging HOWTO's "Optimization" section): a tenth of the cost of
    # the line each webhook logs. A logging configuration given to gunicorn keeps them.
    logging._srcfile = None  # type: ignore[attr-defined]
app = create_app()
# What exists now lives as long as the worker: modules, the app, the engine, compiled statements.
# Frozen, the collector's full passes no longer walk it all (they paused a worker 30-40 ms under
# the voice benchmark), and its younger passes never look there either. Garbage left by the start is
# collected first, or it would be kept for the worker's life.
gc.collect()
gc.freeze()
