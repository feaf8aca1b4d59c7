"""Staff accounts: create, list, disable; passwords hashed with werkzeug's scrypt."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from models.departments import department_by_code
from models.staff import Role, StaffUser

MIN_PASSWORD_LENGTH = 8
USERNAME_LENGTH = StaffUser.__table__.c.username.type.length  # also what the actor columns hold


class UserError(ValueError):
    """A user cannot be created or changed as asked; the message says why."""


def create_user(
    session: Session, username: str, password: str, role: str, department_code: str | None = None
) -> StaffUser:
    """Create a staff user with a hashed password."""
    username = username.strip()
    if not username:
        raise UserError("username is empty")
    if len(username) > USERNAME_LENGTH:
        raise UserError(f"username is longer than {USERNAME_LENGTH} characters")
    if role not in {r.value for r in Role}:
        raise UserError(f"role {role!r} is not one of {', '.join(r.value for r in Role)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalars(select(StaffUser).where(StaffUser.username == username)).first():
        raise UserError(f"user {username!r} already exists")
    department_id = None
    if role == Role.OFFICER:
        if not department_code:
            raise UserError("a department officer needs --department")
        dept = department_by_code(session, department_code)
        if dept is None:
            raise UserError(f"unknown department {department_code!r}")
        department_id = dept.id
    user = StaffUser(
        username=username,
        password_hash=generate_password_hash(password),
        role=role,
        department_id=department_id,
    )
    session.add(user)
    session.flush()
    return user


def verify_password(user: StaffUser, password: str) -> bool:
    """Return whether the password matches the user's hash."""
    return check_password_hash(user.password_hash, password)
