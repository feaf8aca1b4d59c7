"""Who is logged in, what their role allows, and which departments they may see.

Every check runs on the server: a page, an export or an API call asks `department_scope()` for the
departments it may read and `require_department()` before it shows one row of a department.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, g

from models.staff import Role, StaffUser

F = TypeVar("F", bound=Callable[..., Any])

# Roles that see every department (an officer sees only their own).
ALL_DEPARTMENTS = frozenset({Role.ADMIN, Role.SUPERVISOR})
STAFF = (Role.ADMIN, Role.SUPERVISOR)


def current_user() -> StaffUser:
    """Return the logged-in staff user (the login check ran before every view)."""
    user: StaffUser | None = g.get("user")
    if user is None:  # pragma: no cover - the before_request hook guarantees it
        abort(401)
    return user


def has_role(*roles: str) -> bool:
    """Return whether the current user has one of these roles."""
    user = g.get("user")
    return user is not None and user.role in roles


def roles_required(*roles: str) -> Callable[[F], F]:
    """Refuse the view with 403 unless the user has one of these roles."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not has_role(*roles):
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def login_exempt(view: F) -> F:
    """Mark a view that answers without a login (the login page itself, the language switch)."""
    view.login_exempt = True  # type: ignore[attr-defined]
    return view


def department_scope() -> list[int] | None:
    """Return the department ids the user may read, or None for every department."""
    user = current_user()
    if user.role in ALL_DEPARTMENTS:
        return None
    return [user.department_id] if user.department_id is not None else []


def may_see_department(department_id: int | None) -> bool:
    """Return whether the user may read rows of this department."""
    scope = department_scope()
    return scope is None or department_id in scope


def require_department(department_id: int | None) -> None:
    """Answer 404 when the row belongs to a department the user may not read (no existence leak)."""
    if not may_see_department(department_id):
        abort(404)
