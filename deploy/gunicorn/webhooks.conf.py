"""gunicorn settings of the public webhook app (ivr.wsgi:app), as deploy/systemd/returnvisit-webhooks.service
starts it: `gunicorn --config deploy/gunicorn/webhooks.conf.py ivr.wsgi:app`.

Every value can be overridden on the command line (a flag wins over this file) or, for the address and
the worker count, with RETURNVISIT_WEBHOOKS_BIND and RETURNVISIT_WEBHOOKS_WORKERS.
"""

import os

# Only the reverse proxy talks to gunicorn; it listens on loopback (see deploy/nginx/returnvisit.conf).
bind = os.environ.get("RETURNVISIT_WEBHOOKS_BIND", "127.0.0.1:8000")
# Sync workers: each webhook is a short transaction. Two per core is a good start; watch the p99.
workers = int(os.environ.get("RETURNVISIT_WEBHOOKS_WORKERS", str(2 * (os.cpu_count() or 1))))
worker_class = "sync"
# Twilio waits 15 s for a webhook answer; a worker stuck longer than this is restarted.
timeout = 20
graceful_timeout = 20
keepalive = 5
# Trust X-Forwarded-Proto only from the proxy on this host. The signature check does not depend on it
# (it uses app.public_base_url), but the URL scheme the app sees then matches the public one.
forwarded_allow_ips = "127.0.0.1,::1"
# The app logs one structured line per webhook (masked numbers); gunicorn's access log would repeat it
# with the survey token in the query string, so it stays off. Errors go to stderr (the journal).
accesslog = None
errorlog = "-"
loglevel = "info"
proc_name = "returnvisit-webhooks"
# Load the app in each worker (not the master): each worker opens its own database pool.
preload_app = False
