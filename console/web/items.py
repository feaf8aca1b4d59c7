"""Service items: search by item id or full phone number (shown masked), reveal a number (audited),
and the import upload with its per-row error list."""

from __future__ import annotations

import tempfile
from pathlib import Path

from flask import Blueprint, abort, flash, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import or_, select
from werkzeug.utils import secure_filename

from console.cli import intake_options
from console.import_files import FORMATS, ImportFileError, run_import
from console.web.access import STAFF, current_user, department_scope, require_department, roles_required
from console.web.audit import record
from console.web.i18n import translated
from console.web.paging import Page
from ivr import web
from models.cases_ops import says_something
from models.departments import Department
from models.intake import RowStatus
from models.items import ServiceItem
from models.phones import normalize_phone
from models.surveys import Survey

bp = Blueprint("items", __name__, url_prefix="/items")
MAX_ERRORS_SHOWN = 500


def phone_query(text: str) -> str | None:
    """Return the full E.164 number a search text stands for, or None when it is not a number."""
    settings = web.settings()
    digits = sum(ch.isdigit() for ch in text)
    if digits < 7:
        return None
    normalized = normalize_phone(
        text, region=settings.phones.default_region, area_code=settings.phones.default_area_code or None
    )
    return normalized.e164


@bp.get("")
def index() -> str:
    """List items of the departments the user may see, searched by item id or full phone number."""
    session = web.db_session()
    scope = department_scope()
    q = request.args.get("q", "").strip()
    code = request.args.get("department", "").strip()
    stmt = select(ServiceItem).order_by(ServiceItem.completed_at.desc(), ServiceItem.id.desc())
    if scope is not None:
        stmt = stmt.where(ServiceItem.department_id.in_(scope))
    if code:
        stmt = stmt.join(Department, Department.id == ServiceItem.department_id)
        stmt = stmt.where(Department.code == code)
    if q:
        phone = phone_query(q)
        # A phone number matches only in full: a partial number would let anyone enumerate citizens.
        match = ServiceItem.external_id == q
        stmt = stmt.where(or_(match, ServiceItem.phone_e164 == phone) if phone else match)
    page = Page.of(session, stmt, request.args.get("page"))
    departments = _departments(scope)
    return render_template("items.html", page=page, q=q, department=code, departments=departments)


def _departments(scope: list[int] | None) -> list[Department]:
    stmt = select(Department).order_by(Department.code)
    if scope is not None:
        stmt = stmt.where(Department.id.in_(scope))
    return list(web.db_session().scalars(stmt))


def _item(item_id: int) -> ServiceItem:
    item = web.db_session().get(ServiceItem, item_id)
    if item is None:
        abort(404)
    require_department(item.department_id)
    return item


@bp.get("/<int:item_id>")
def detail(item_id: int) -> str:
    """Show one item (number masked) and its surveys."""
    item = _item(item_id)
    return render_template("item.html", item=item, surveys=_surveys(item), full_number=None)


def _surveys(item: ServiceItem) -> list[Survey]:
    stmt = select(Survey).where(Survey.item_id == item.id).order_by(Survey.id)
    return list(web.db_session().scalars(stmt))


@bp.post("/<int:item_id>/reveal")
@roles_required(*STAFF)
def reveal(item_id: int) -> ResponseReturnValue:
    """Show the full phone number, once, and write who saw it and why to the audit log."""
    session = web.db_session()
    item = _item(item_id)
    reason = request.form.get("reason", "").strip()[:200]
    if not says_something(reason):
        # An audit row without a reason tells an auditor nothing: the number stays masked.
        flash(_("Say why you need the full number."), "error")
        return render_template("item.html", item=item, surveys=_surveys(item), full_number=None), 400
    record(
        session, current_user().username, "phone_viewed", "service_item", item.id,
        external_id=item.external_id, reason=reason,
    )
    session.commit()
    return render_template(
        "item.html", item=item, surveys=_surveys(item), full_number=item.phone_e164 or item.phone_raw
    )


@bp.route("/import", methods=["GET", "POST"])
@roles_required(*STAFF)
def upload() -> str:
    """Import an uploaded CSV, XLSX or JSON Lines file; show the counts and every rejected row."""
    settings = web.settings()
    if request.method == "GET":
        return render_template("import.html", summary=None, errors=[], formats=FORMATS,
                               source=settings.intake.default_source)
    upload_file = request.files.get("file")
    source = request.form.get("source", "").strip()[:64] or settings.intake.default_source
    if upload_file is None or not upload_file.filename:
        flash(_("Choose a file to import."), "error")
        return render_template("import.html", summary=None, errors=[], formats=FORMATS, source=source)
    name = secure_filename(upload_file.filename) or "upload.csv"
    errors: list[tuple[int, str | None, str | None]] = []

    def on_result(line: int, external_id: str | None, status: RowStatus, reason: str | None) -> None:
        if status == RowStatus.ERROR and len(errors) < MAX_ERRORS_SHOWN:
            errors.append((line, external_id, translated(reason or "")))

    session = web.db_session()
    session.commit()  # end this request's transaction: the import commits batches of its own
    with tempfile.TemporaryDirectory(prefix="rv-import-") as folder:
        path = Path(folder) / name
        upload_file.save(path)
        try:
            summary = run_import(
                web.session_factory(),
                path,
                options=intake_options(settings),
                columns=settings.intake.columns,
                source=source,
                on_result=on_result,
            )
        except ImportFileError as exc:
            flash(str(exc), "error")
            return render_template("import.html", summary=None, errors=[], formats=FORMATS, source=source)
    data = summary.as_dict()
    record(session, current_user().username, "items_imported", "import", name, source=source,
           **{k: v for k, v in data.items() if k != "skipped_by_reason"})
    session.commit()
    return render_template("import.html", summary=data, errors=errors, formats=FORMATS, source=source)
