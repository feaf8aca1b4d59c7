"""CSRF on every form, security headers on every answer, and the error pages."""

from __future__ import annotations

from flask import Flask, Response, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect

csrf = CSRFProtect()

# Every asset is served by the app itself (no CDN); recordings may live at the provider.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "media-src 'self' https: http:; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)


def init_app(app: Flask) -> None:
    """Protect every POST with a CSRF token and add the security headers."""
    csrf.init_app(app)
    app.before_request(_refuse_nul)
    app.after_request(_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    for code in (403, 404, 405):
        app.register_error_handler(code, _error_page)


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _refuse_nul() -> tuple[str, int] | None:
    # No browser sends a NUL and PostgreSQL text cannot hold one: a search for it would fail in the
    # database instead of finding nothing. (The answer reuses a text the catalogs already translate.)
    values = [*request.args.items(multi=True), *(request.view_args or {}).items()]
    if request.method == "POST":
        values += request.form.items(multi=True)
    if any("\x00" in f"{key}{value}" for key, value in values):
        return render_template("error.html", code=400, reason=_("This request cannot be answered.")), 400
    return None


def _csrf_error(error: CSRFError) -> tuple[str, int]:
    return render_template("error.html", code=400, message=error.description), 400


def _error_page(error: object) -> tuple[str, int]:
    code = int(getattr(error, "code", 500) or 500)
    return render_template("error.html", code=code, message=None), code
