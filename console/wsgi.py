"""WSGI entry point of the staff console: `gunicorn 'console.wsgi:app'` (configuration from
RETURNVISIT_CONFIG). Keep it off the internet: only the webhook app (ivr.wsgi) is public.

Logs go to stderr as JSON lines (readable text on a terminal), phone numbers masked.
"""

from console.web import create_console_app
from models.logs import setup_logging

setup_logging()
app = create_console_app()
