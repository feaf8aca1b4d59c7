"""The public web app: Twilio webhooks and the service-item intake API (`create_app`)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker

from ivr import web
from models.settings import Settings, load_settings


def create_app(
    settings: Settings | None = None, *, session_factory: sessionmaker[Session] | None = None
) -> Flask:
    """Build the public WSGI app: load config, bind the store, register blueprints."""
    settings = settings or load_settings()
    if session_factory is None:
        session_factory = web.session_factory_for(settings)
    app = Flask(__name__)
    from ivr.webhooks import WebhookRequest

    app.request_class = WebhookRequest  # Twilio's form bodies parsed directly (every webhook reads one)
    app.config["JSON_AS_ASCII"] = False
    web.init_app(app, settings, session_factory)

    from ivr.health import bp as health_bp
    from ivr.intake_api import bp as intake_bp
    from ivr.observability import bp as metrics_bp
    from ivr.sms import bp as sms_bp
    from ivr.voice import bp as voice_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(intake_bp)
    app.register_blueprint(voice_bp)
    app.register_blueprint(sms_bp)
    return app
