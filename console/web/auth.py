"""Login, logout and the interface language; the login check that runs before every view.

A failed login is always answered slowly (LOGIN_FAILURE_DELAY seconds); after MAX_FAILED_LOGINS
failures in a row the account is locked for LOCKOUT, even for the right password.
"""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.security import generate_password_hash
from werkzeug.wrappers import Response

from console.users import verify_password
from console.web.access import login_exempt
from console.web.audit import record
from ivr import web
from models.base import utcnow
from models.staff import StaffUser

bp = Blueprint("auth", __name__)

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
LANGUAGES = ("zh_CN", "en")
# Checked against when the username is unknown, so both cases take as long.
_DUMMY_HASH = generate_password_hash("not-a-password-of-anyone")


def init_app(app: Flask) -> None:
    """Require a logged-in, active user for every view not marked login_exempt."""
    app.before_request(_load_user)


def _load_user() -> Response | None:
    g.user = None
    if request.endpoint == "static":
        return None  # the stylesheet and scripts are public: the login page needs them
    user_id = session.get("user_id")
    if user_id is not None:
        user = web.db_session().get(StaffUser, user_id)
        if user is not None and user.active and session.get("auth") == _auth_stamp(user):
            g.user = user
        else:
            session.pop("user_id", None)
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "login_exempt", False) or g.user is not None:
        return None
    if request.path.startswith("/api/"):
        return Response('{"error": "login required"}', status=401, mimetype="application/json")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _auth_stamp(user: StaffUser) -> str:
    # Changes when the password changes: a session of the old password stops working.
    return user.password_hash[-16:]


def _safe_next(target: str | None) -> str:
    # Only a path of this site: browsers drop tabs and newlines ("/\t/evil" is "//evil", another
    # host), and a newline cannot go into the Location header at all.
    if not target or "\\" in target or any(c.isspace() or not c.isprintable() for c in target):
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return url_for("dashboard.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
@login_exempt
def login() -> Response | str | tuple[str, int]:
    """Show the login form; check the password, count failures, lock after too many."""
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    db = web.db_session()
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    now = utcnow()
    user = db.scalars(select(StaffUser).where(func.lower(StaffUser.username) == username.lower())).first()
    if user is not None and user.locked_until is not None and user.locked_until > now:
        verify_password(user, password)  # same work either way: no timing hint
        record(db, username, "login_refused_locked", "staff_user", user.id)
        db.commit()
        return _failed(_("Too many failed logins: this account is locked for a while. Try again later."))
    if user is None or not user.active:
        if user is None:
            verify_password(StaffUser(password_hash=_DUMMY_HASH), password)
        record(db, username[:64] or "?", "login_failed", "staff_user", user.id if user else None)
        db.commit()
        return _failed(_("Wrong username or password."))
    if not verify_password(user, password):
        user.failed_logins += 1
        detail = {"failed_logins": user.failed_logins}
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
            detail["locked_until"] = user.locked_until.isoformat()
        record(db, user.username, "login_failed", "staff_user", user.id, **detail)
        db.commit()
        return _failed(_("Wrong username or password."))
    user.failed_logins = 0
    user.locked_until = None
    record(db, user.username, "login", "staff_user", user.id)
    db.commit()
    language = session.get("lang")
    session.clear()  # a new session id for the new login (no fixation)
    if language:
        session["lang"] = language
    session.permanent = True
    session["user_id"] = user.id
    session["auth"] = _auth_stamp(user)
    return redirect(_safe_next(request.form.get("next")))


def _failed(message: str) -> tuple[str, int]:
    time.sleep(float(current_app.config.get("LOGIN_FAILURE_DELAY", 1.0)))
    flash(message, "error")
    return render_template("login.html", next=request.form.get("next", "")), 401


@bp.post("/logout")
def logout() -> Response:
    """End the session."""
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language
    return redirect(url_for("auth.login"))


@bp.post("/language")
@login_exempt
def language() -> Response:
    """Switch the interface language (Chinese or English) for this browser."""
    choice = request.form.get("lang", "")
    if choice in LANGUAGES:
        session["lang"] = choice
    return redirect(_page_to_show(_safe_next(request.form.get("next"))))


def _page_to_show(target: str) -> str:
    """The page itself, or for the answer to a form (/simulator/call, /items/7/reveal) the page the
    form is on: the redirect is a GET, which such an address refuses (405)."""
    adapter = current_app.create_url_adapter(request)
    path = urlsplit(target).path
    while adapter is not None:
        try:
            adapter.match(path, method="GET")
            return target
        except MethodNotAllowed:
            if path.count("/") <= 1:
                break
            path = target = path.rsplit("/", 1)[0]  # one step up: the page of the form
        except HTTPException:  # not found either: the page says so
            return target
    return url_for("dashboard.index")
