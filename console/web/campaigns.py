"""Campaigns: list, create and edit with the scheduler's validation, previews, pause and resume."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from console.web.access import STAFF, current_user, roles_required
from console.web.audit import record
from console.web.campaign_forms import (
    CHANNEL_ORDERS,
    definition_to_form,
    form_to_data,
    form_values,
    previews,
    problems_by_field,
)
from console.web.i18n import STATE_LABELS, translated
from ivr import web
from ivr.script import load_script
from ivr.sms_text import count_segments
from models.base import utcnow
from models.campaigns import Campaign, CampaignStatus
from models.departments import Department
from models.items import ServiceItem
from models.staff import Role
from scheduler.campaigns import (
    LANGUAGES,
    CampaignDefinition,
    CampaignError,
    apply_campaign,
    campaign_summaries,
    change_status,
    definition_of,
    department_names,
    parse_definition,
)

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")
OPERATIONS = ("pause", "resume", "archive")


@bp.get("")
@roles_required(*STAFF)
def index() -> str:
    """List the campaigns with their surveys by state and skipped items by reason."""
    session = web.db_session()
    summaries = campaign_summaries(session)
    ids = dict(session.execute(select(Campaign.name, Campaign.id)).all())
    return render_template("campaigns.html", summaries=summaries, ids=ids)


def _campaign(campaign_id: int) -> Campaign:
    campaign = web.db_session().get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


def _sample(definition: CampaignDefinition) -> tuple[str, str | None]:
    """Return a department name and matter to fill the previews with (the campaign's own if it has)."""
    session = web.db_session()
    stmt = select(Department.name, ServiceItem.matter).join(
        ServiceItem, ServiceItem.department_id == Department.id
    )
    if definition.departments:
        stmt = stmt.where(Department.code.in_(definition.departments))
    if definition.matters:
        stmt = stmt.where(ServiceItem.matter.in_(definition.matters))
    row = session.execute(stmt.order_by(ServiceItem.id.desc()).limit(1)).first()
    if row is not None:
        return row[0], row[1]
    name = session.scalar(select(Department.name).order_by(Department.code).limit(1))
    return name or _("Market Supervision Bureau"), None


def _previews(definition: CampaignDefinition) -> list:  # type: ignore[type-arg]
    department, matter = _sample(definition)
    return previews(definition, web.settings().app.org, department, matter)


@bp.get("/<int:campaign_id>")
@roles_required(*STAFF)
def detail(campaign_id: int) -> str:
    """Show a campaign's definition and the voice script and survey text in each language."""
    campaign = _campaign(campaign_id)
    definition = definition_of(campaign)
    return render_template(
        "campaign.html", campaign=campaign, definition=definition, previews=_previews(definition)
    )


def _departments() -> list[Department]:
    return list(web.db_session().scalars(select(Department).order_by(Department.code)))


def _form(values: dict, problems: list[str], campaign: Campaign | None, shown_previews=None) -> str:  # type: ignore[no-untyped-def,type-arg]
    return render_template(
        "campaign_form.html",
        values=values,
        problems=problems,
        by_field=problems_by_field(problems),
        campaign=campaign,
        departments=_departments(),
        channel_orders=CHANNEL_ORDERS,
        languages=LANGUAGES,
        statuses=list(CampaignStatus),
        previews=shown_previews,
    ), (422 if problems else 200)


@bp.get("/new")
@roles_required(Role.ADMIN)
def new() -> ResponseReturnValue:
    """Show an empty campaign form with the defaults."""
    return _form(definition_to_form(None), [], None)


@bp.get("/<int:campaign_id>/edit")
@roles_required(Role.ADMIN)
def edit(campaign_id: int) -> ResponseReturnValue:
    """Show the form of an existing campaign."""
    campaign = _campaign(campaign_id)
    values = definition_to_form(definition_of(campaign))
    values["status"] = ""
    return _form(values, [], campaign)


@bp.post("/new")
@roles_required(Role.ADMIN)
def create() -> ResponseReturnValue:
    """Validate and create a campaign (or only preview it)."""
    return _save(None)


@bp.post("/<int:campaign_id>/edit")
@roles_required(Role.ADMIN)
def update(campaign_id: int) -> ResponseReturnValue:
    """Validate and update a campaign (its name stays), or only preview it."""
    return _save(_campaign(campaign_id))


def _save(campaign: Campaign | None) -> ResponseReturnValue:
    session, settings, now = web.db_session(), web.settings(), utcnow()
    data = form_to_data(request.form)
    if campaign is not None:
        data["name"] = campaign.name  # renaming would create another campaign
    values = form_values(request.form)
    try:
        definition = parse_definition(
            data,
            departments=department_names(session),
            segment_counter=lambda text: count_segments(text).segments,
            script_loader=load_script,
            org=settings.app.org,
        )
    except CampaignError as exc:
        return _form(values, exc.problems, campaign)
    if campaign is None and session.scalar(select(Campaign.id).where(Campaign.name == definition.name)):
        taken = _("name: a campaign named %(name)s exists already", name=definition.name)
        return _form(values, [taken], None)
    if request.form.get("action") == "preview":
        return _form(values, [], campaign, _previews(definition))
    saved, created = apply_campaign(session, definition, now)
    record(
        session,
        current_user().username,
        "campaign_created" if created else "campaign_changed",
        "campaign",
        saved.id,
        name=saved.name,
        config=saved.config,
        status=saved.status,
    )
    session.commit()
    flash(_("Campaign %(name)s saved.", name=saved.name), "ok")
    return redirect(url_for("campaigns.detail", campaign_id=saved.id))


@bp.post("/<int:campaign_id>/<operation>")
@roles_required(Role.ADMIN)
def change(campaign_id: int, operation: str) -> ResponseReturnValue:
    """Pause, resume or archive a campaign."""
    if operation not in OPERATIONS:
        abort(404)
    session = web.db_session()
    campaign = _campaign(campaign_id)
    before = campaign.status
    try:
        change_status(session, campaign.name, operation, utcnow())
    except CampaignError as exc:
        flash("; ".join(translated(problem) for problem in exc.problems), "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
    record(
        session,
        current_user().username,
        f"campaign_{operation}",
        "campaign",
        campaign.id,
        name=campaign.name,
        before=before,
        after=campaign.status,
    )
    session.commit()
    status = str(STATE_LABELS.get(campaign.status, campaign.status))
    flash(_("Campaign %(name)s is now %(status)s.", name=campaign.name, status=status), "ok")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))


def _gateway():  # type: ignore[no-untyped-def]
    """Return the app's gateway (built on first use from gateway.kind)."""
    from flask import current_app

    from console.cli_scheduler import make_gateway

    if "returnvisit.gateway" not in current_app.extensions:
        current_app.extensions["returnvisit.gateway"] = make_gateway(web.settings())
    return current_app.extensions["returnvisit.gateway"]


@bp.post("/<int:campaign_id>/test-contact")
@roles_required(Role.ADMIN)
def test_contact(campaign_id: int) -> ResponseReturnValue:
    """Call or text a staff number with this campaign's script, through the gateway."""
    from console.test_contact import TestContactError, send_test_contact
    from models.phones import mask_phone

    session = web.db_session()
    campaign = _campaign(campaign_id)
    phone = request.form.get("phone", "").strip()
    channel = request.form.get("channel", "voice")
    try:
        attempt = send_test_contact(session, web.settings(), campaign, phone, channel, _gateway(), utcnow())
    except TestContactError as exc:
        session.rollback()
        flash(translated(exc), "error")
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
    record(
        session,
        current_user().username,
        "campaign_test_contact",
        "campaign",
        campaign.id,
        channel=channel,
        phone=mask_phone(phone),
        attempt=attempt.id,
    )
    session.commit()
    flash(_("Test %(channel)s to %(phone)s placed.", channel=channel, phone=mask_phone(phone)), "ok")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
