"""The audit trail: who viewed a full phone number, who changed what (admin only to read)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.web.access import roles_required
from console.web.paging import Page
from ivr import web
from models.base import utcnow
from models.staff import AuditEvent, Role

bp = Blueprint("audit", __name__, url_prefix="/audit")


def record(
    session: Session,
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: object = None,
    **detail: Any,
) -> AuditEvent:
    """Add one audit event (the caller's request commits it)."""
    event = AuditEvent(
        at=utcnow(),
        actor=actor[:64],
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id)[:64],
        detail=detail,
    )
    session.add(event)
    return event


@bp.get("")
@roles_required(Role.ADMIN)
def index() -> str:
    """List audit events, newest first, filtered by action or actor."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc())
    action = request.args.get("action", "").strip()
    actor = request.args.get("actor", "").strip()
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    page = Page.of(web.db_session(), stmt, request.args.get("page"))
    actions = web.db_session().scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
    return render_template(
        "audit.html", page=page, action=action, actor=actor, actions=list(actions)
    )
