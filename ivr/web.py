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

from typing import Any

from flask import Flask, Request, current_app, g, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.db import KeptConnection, connection_session, make_engine, make_sessionmaker
from models.settings import Settings

_EXT = "returnvisit"


def init_app(app: Flask, settings: Settings, session_factory: sessionmaker[Session]) -> None:
    """Attach settings and the session factory to an app."""
    engine = getattr(session_factory, "kw", {}).get("bind")  # a test may give any callable
    kept = KeptConnection(engine) if isinstance(engine, Engine) else None
    app.extensions[_EXT] = {"settings": settings, "sessions": session_factory, "kept": kept}
    app.teardown_appcontext(_close_session)


def session_factory_for(settings: Settings) -> sessionmaker[Session]:
    """Return a session factory on a new engine for the configured database (app factories use it)."""
    return make_sessionmaker(make_engine(settings.database.url, echo=settings.database.echo))


# Flask's `request`, `current_app` and `g` are werkzeug proxies: reading an attribute through one
# first fails an ordinary look-up (a formatted AttributeError, then caught) and then runs the proxy's
# own calls, a few microseconds each time. The helpers below read through the object itself; a
# webhook takes `current_request()` once (a Gather read two dozen attributes through the proxies).


def current_request() -> Request:
    """Return this request's object itself (not the `flask.request` proxy)."""
    return request._get_current_object()  # type: ignore[attr-defined]


def _extension() -> dict[str, Any]:
    return current_app._get_current_object().extensions[_EXT]  # type: ignore[attr-defined]


def settings() -> Settings:
    """Return the settings of the current app."""
    return _extension()["settings"]


def session_factory() -> sessionmaker[Session]:
    """Return the session factory of the current app."""
    return _extension()["sessions"]


def db_session() -> Session:
    """Return this request's session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = session_factory()()
    return g.db_session


def webhook_session() -> Session:
    """Return this request's session for a hot webhook, opening it and its connection on first use."""
    state = g._get_current_object()
    session: Session | None = state.get("db_session")
    if session is None:
        kept = None
        if not current_request().environ.get("wsgi.multithread", True):
            kept = _extension()["kept"]
            state.db_kept = kept
        session, state.db_connection = connection_session(session_factory(), kept)
        state.db_session = session
    return session


def _close_session(_exc: BaseException | None) -> None:
    state = g._get_current_object()
    session = state.pop("db_session", None)
    connection = state.pop("db_connection", None)
    kept = state.pop("db_kept", None)
    try:
        if session is not None:
            session.rollback()
            session.close()
    finally:
        if connection is not None:
            connection.close()
        if kept is not None:
            kept.release()
