"""WSGI entry point of the staff console: `gunicorn 'console.wsgi:app'` (configuration from
RETURNVISIT_CONFIG). Keep it off the internet: only the webhook app (ivr.wsgi) is public."""

from console.web import create_console_app

app = create_console_app()
