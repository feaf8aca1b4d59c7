"""WSGI entry point for gunicorn: `gunicorn 'ivr.wsgi:app'` (configuration from RETURNVISIT_CONFIG).

Logs go to stderr as JSON lines (readable text on a terminal), phone numbers masked; see
docs/observability.md for metrics under several workers (PROMETHEUS_MULTIPROC_DIR).
"""

from ivr.app import create_app
from models.logs import setup_logging

setup_logging()
app = create_app()
