"""The staff console: an internal Flask app, separate from the public webhook app (DESIGN §3, §9).

`create_console_app` follows the Flask tutorial's shape: load the settings, bind the extensions
(request-scoped sessions, CSRF, Babel), register one blueprint per feature area. Nothing queries the
database at import or start-up.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import IntegerConverter

from ivr import web
from models.settings import Settings, load_settings

# Seconds a failed login is held before it answers (slows password guessing down).
LOGIN_FAILURE_DELAY = 1.0


class RowIdConverter(IntegerConverter):
    """An <int:...> of the console's URLs: a row id the database can hold (larger: no such page)."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def create_console_app(
    settings: Settings | None = None, *, session_factory: sessionmaker[Session] | None = None
) -> Flask:
    """Build the staff console WSGI app: load config, bind extensions, register blueprints."""
    settings = settings or load_settings()
    if session_factory is None:
        session_factory = web.session_factory_for(settings)
    app = Flask(__name__)
    app.url_map.converters["int"] = RowIdConverter  # /cases/99999999999999999999 is not found, not a 500
    app.config.update(
        SECRET_KEY=settings.app.secret_key,
        SESSION_COOKIE_NAME="returnvisit_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the (8 h) session
        LOGIN_FAILURE_DELAY=LOGIN_FAILURE_DELAY,
        JSON_AS_ASCII=False,
    )
    web.init_app(app, settings, session_factory)

    from console.web import auth, i18n, security

    security.init_app(app)
    i18n.init_app(app, settings)
    auth.init_app(app)

    from console.web import (
        audit,
        campaigns,
        cases,
        dashboard,
        departments,
        items,
        optouts,
        quarter,
        results,
        simulator,
    )

    for module in (
        auth,
        dashboard,
        departments,
        items,
        campaigns,
        results,
        cases,
        quarter,
        optouts,
        audit,
        simulator,
    ):
        app.register_blueprint(module.bp)

    # Probes and Prometheus answer without a login (/metrics checks metrics.allow_networks itself).
    from console.web.access import login_exempt
    from ivr import health, store_metrics

    app.register_blueprint(health.bp)
    app.register_blueprint(store_metrics.bp)
    for endpoint in ("health.healthz", "health.readyz", "store_metrics.metrics"):
        login_exempt(app.view_functions[endpoint])
    return app
