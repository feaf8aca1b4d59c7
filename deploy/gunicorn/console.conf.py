"""gunicorn settings of the staff console (console.wsgi:app), as deploy/systemd/returnvisit-console.service
starts it: `gunicorn --config deploy/gunicorn/console.conf.py console.wsgi:app`.

Keep the console off the internet: bind it to loopback (behind the internal proxy) or an internal address.
RETURNVISIT_CONSOLE_BIND and RETURNVISIT_CONSOLE_WORKERS override the address and the worker count.
"""

import os

bind = os.environ.get("RETURNVISIT_CONSOLE_BIND", "127.0.0.1:8001")
workers = int(os.environ.get("RETURNVISIT_CONSOLE_WORKERS", "2"))
worker_class = "sync"
# Quarter reports (XLSX, charts) and imports of large files take longer than a webhook.
timeout = 120
graceful_timeout = 30
keepalive = 5
# The proxy on this host sets X-Forwarded-Proto: https; trusting it lets the console see HTTPS, so the
# CSRF check compares the Referer with the public https origin and session cookies stay Secure.
forwarded_allow_ips = "127.0.0.1,::1"
# Path only, never the query string: staff search items by full phone number (/items?q=...).
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = "info"
proc_name = "returnvisit-console"
preload_app = False
