"""Departments: the list with their staff and open cases; admins add and rename them."""

from __future__ import annotations

import re

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import func, select

from console.web.access import STAFF, current_user, roles_required
from console.web.audit import record
from ivr import web
from models.cases import Case, CaseState
from models.departments import Department, DepartmentKind, department_by_code
from models.items import ServiceItem
from models.staff import Role, StaffUser

bp = Blueprint("departments", __name__, url_prefix="/departments")
CODE_LENGTH = Department.__table__.c.code.type.length
# A new department's code goes into URLs, file names and CSV columns: letters, digits, '-' and '_'.
CODE_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{CODE_LENGTH}}}")
NAME_LENGTH = Department.__table__.c.name.type.length


@bp.get("")
@roles_required(*STAFF)
def index() -> str:
    """List every department with its items, officers and open cases."""
    session = web.db_session()
    departments = session.scalars(select(Department).order_by(Department.code)).all()
    items = dict(
        session.execute(
            select(ServiceItem.department_id, func.count()).group_by(ServiceItem.department_id)
        ).all()
    )
    officers = dict(
        session.execute(
            select(StaffUser.department_id, func.count())
            .where(StaffUser.active.is_(True))
            .group_by(StaffUser.department_id)
        ).all()
    )
    cases = dict(
        session.execute(
            select(Case.department_id, func.count())
            .where(Case.state != CaseState.CLOSED)
            .group_by(Case.department_id)
        ).all()
    )
    return render_template(
        "departments.html",
        departments=departments,
        items=items,
        officers=officers,
        cases=cases,
        kinds=list(DepartmentKind),
    )


@bp.post("")
@roles_required(Role.ADMIN)
def save() -> ResponseReturnValue:
    """Add a department, or rename the one with this code."""
    session = web.db_session()
    code = request.form.get("code", "").strip()
    name = request.form.get("name", "").strip()
    kind = request.form.get("kind", DepartmentKind.SERVICE)
    if not code or not name or len(name) > NAME_LENGTH or kind not in set(DepartmentKind):
        flash(_("A department needs a code (up to 64 characters), a name and a kind."), "error")
        return redirect(url_for("departments.index"))
    department = department_by_code(session, code)
    created = department is None
    # An imported department may have any code: it can still be renamed; a new one needs a plain code.
    if created and not CODE_PATTERN.fullmatch(code):
        flash(_("The code “%(code)s” is not allowed: use 1 to %(n)s letters, digits, '-' or '_'.",
                code=code[:CODE_LENGTH], n=CODE_LENGTH), "error")
        return redirect(url_for("departments.index"))
    if department is None:
        department = Department(code=code, name=name, kind=kind)
        session.add(department)
    else:
        department.name, department.kind = name, kind
    session.flush()
    record(
        session, current_user().username, "department_created" if created else "department_changed",
        "department", department.id, code=code, name=name, kind=kind,
    )
    session.commit()
    flash(_("Department %(code)s saved.", code=code), "ok")
    return redirect(url_for("departments.index"))
