"""Opt-outs: the list (numbers masked), add one for a citizen, remove one with a reason (audited)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from console.web.access import STAFF, current_user, roles_required
from console.web.audit import record
from console.web.items import phone_query
from console.web.paging import Page
from ivr import web
from models.base import utcnow
from models.optouts import OptOut, OptOutChannel, OptOutSource
from models.phones import mask_phone
from models.survey_ops import add_opt_out

bp = Blueprint("optouts", __name__, url_prefix="/optouts")


@bp.get("")
@roles_required(*STAFF)
def index() -> str:
    """List live opt-outs (or all, with removed ones), searched by full phone number."""
    q = request.args.get("q", "").strip()
    show_all = request.args.get("all") == "1"
    stmt = select(OptOut).order_by(OptOut.id.desc())
    if not show_all:
        stmt = stmt.where(OptOut.revoked_at.is_(None))
    if q:
        stmt = stmt.where(OptOut.phone_e164 == (phone_query(q) or "-"))
    page = Page.of(web.db_session(), stmt, request.args.get("page"))
    return render_template("optouts.html", page=page, q=q, show_all=show_all, channels=list(OptOutChannel))


@bp.post("")
@roles_required(*STAFF)
def add() -> ResponseReturnValue:
    """Record that a citizen must not be contacted (on one channel or all), with a reason."""
    session = web.db_session()
    phone = phone_query(request.form.get("phone", "").strip())
    channel = request.form.get("channel", OptOutChannel.ALL)
    reason = request.form.get("reason", "").strip()
    if phone is None or channel not in set(OptOutChannel) or not reason:
        flash(_("Give a valid phone number, a channel and a reason."), "error")
        return redirect(url_for("optouts.index"))
    user = current_user().username
    added = add_opt_out(
        session, phone, channel=channel, source=OptOutSource.STAFF, now=utcnow(), reason=reason[:500],
        created_by=user,
    )
    if added:
        record(session, user, "optout_added", "phone", mask_phone(phone), channel=channel, reason=reason)
        session.commit()
        flash(_("%(phone)s will not be contacted.", phone=mask_phone(phone)), "ok")
    else:
        flash(_("%(phone)s is opted out already.", phone=mask_phone(phone)), "ok")
    return redirect(url_for("optouts.index"))


@bp.post("/<int:optout_id>/remove")
@roles_required(*STAFF)
def remove(optout_id: int) -> ResponseReturnValue:
    """Revoke an opt-out (the row stays as history); the reason goes to the audit log."""
    session = web.db_session()
    optout = session.get(OptOut, optout_id)
    if optout is None:
        abort(404)
    reason = request.form.get("reason", "").strip()
    if not reason:
        flash(_("Removing an opt-out needs a reason."), "error")
        return redirect(url_for("optouts.index"))
    if optout.revoked_at is None:
        optout.revoked_at = utcnow()
        record(session, current_user().username, "optout_removed", "optout", optout.id,
               phone=mask_phone(optout.phone_e164), channel=optout.channel, reason=reason[:500])
        session.commit()
        flash(_("The opt-out of %(phone)s is removed.", phone=mask_phone(optout.phone_e164)), "ok")
    return redirect(url_for("optouts.index"))
