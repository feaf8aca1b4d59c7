"""Request-scoped database sessions shared by the public and the staff Flask apps.

A view asks for `db_session()`, does its work and commits once before it answers; the teardown rolls
back whatever was not committed and closes the session. The busiest webhooks ask for
`webhook_session()` instead: the same contract, on a connection the request holds itself
(models.db.ConnectionSession), which their driver-level statements reach without the session's
transaction machinery. A process that serves one request at a time (gunicorn's sync workers, the
test client: `wsgi.multithread` is false) keeps that connection between requests
(models.db.KeptConnection); a threaded server checks one out of the pool per request.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.settings import Settings

_EXT = "returnvisit"


def init_app(app: Flask, settings: Settings, session_factory: sessionmaker[Session]) -> None:
    """Attach settings and the session factory to an app."""
    from models.db import KeptConnection

    engine = getattr(session_factory, "kw", {}).get("bind")  # a test may give any callable
    kept = KeptConnection(engine) if isinstance(engine, Engine) else None
    app.extensions[_EXT] = {"settings": settings, "sessions": session_factory, "kept": kept}
    app.teardown_appcontext(_close_session)


def session_factory_for(settings: Settings) -> sessionmaker[Session]:
    """Return a session factory on a new engine for the configured database (app factories use it)."""
    from models.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(settings.database.url, echo=settings.database.echo))


def settings() -> Settings:
    """Return the settings of the current app."""
    return current_app.extensions[_EXT]["settings"]


def session_factory() -> sessionmaker[Session]:
    """Return the session factory of the current app."""
    return current_app.extensions[_EXT]["sessions"]


def db_session() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = session_factory()()
    return g.db_session


def webhook_session() -> Session:
    """Return this request's session for a hot webhook, opening it and its connection on first use."""
    if "db_session" not in g:
        from models.db import connection_session

        kept = None
        if not request.environ.get("wsgi.multithread", True):
            kept = current_app.extensions[_EXT]["kept"]
            g.db_kept = kept
        g.db_session, g.db_connection = connection_session(session_factory(), kept)
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    connection = g.pop("db_connection", None)
    kept = g.pop("db_kept", None)
    try:
        if session is not None:
            session.rollback()
            session.close()
    finally:
        if connection is not None:
            connection.close()
        if kept is not None:
            kept.release()
