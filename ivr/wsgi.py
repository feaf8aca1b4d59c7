"""WSGI entry point for gunicorn: `gunicorn 'ivr.wsgi:app'` (configuration from RETURNVISIT_CONFIG)."""

from ivr.app import create_app

app = create_app()
