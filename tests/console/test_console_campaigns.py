"""Campaign pages: create and edit with the scheduler's validation, previews, pause and resume."""

from __future__ import annotations

from sqlalchemy import select

from models.campaigns import Campaign
from models.staff import AuditEvent

FORM = {
    "name": "2026 Q4 visits",
    "status": "active",
    "departments": "SWJ",
    "sampling_rate": "0.5",
    "channels": "voice sms",
    "delay": "2h",
    "max_age": "30d",
    "expire_after": "3d",
    "retry_voice": "30m 2h",
    "retry_sms": "",
    "windows": "09:00-12:00\n14:00-20:00",
    "working_days_only": "on",
    "script": "default",
    "language": "zh-CN",
    "sms_max_segments": "3",
    "sms_text_zh-CN": "您好，{org}回访：您在{department}办理了{matter}，请回复1-5评价。回复TD退订",
    "action": "save",
}


def test_admin_creates_a_campaign_through_the_scheduler_validation(admin, departments, session):
    response = admin.post("/campaigns/new", FORM)
    assert response.status_code == 302, response.get_data(as_text=True)
    campaign = session.scalars(select(Campaign).where(Campaign.name == "2026 Q4 visits")).one()
    assert campaign.status == "active" and campaign.config["departments"] == ["SWJ"]
    assert campaign.config["sampling_rate"] == 0.5
    assert campaign.config["retry"] == {"voice": "30m 2h", "sms": ""}
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign_created")).one()
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "2026 Q4 visits" in page and 'id="previews"' in page


def test_invalid_fields_are_named_and_nothing_is_saved(admin, departments, session):
    bad = {
        **FORM,
        "windows": "09:00-12:00\n20:00-14:00",
        "departments": "NOPE",
        "sampling_rate": "2",
        "delay": "soon",
        "sms_text_en-US": "Dear {citizen}",
    }
    response = admin.post("/campaigns/new", bad)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    for key in ("windows[1]", "sampling_rate", "delay", "sms_text.en-US"):
        assert key in page, key
    assert session.scalars(select(Campaign)).first() is None


def test_a_file_that_is_no_script_and_a_formatted_placeholder_are_named_and_nothing_is_saved(
    admin, departments, session, tmp_path
):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    for action in ("preview", "save"):
        bad = {**FORM, "script": str(passwd), "sms_text_zh-CN": "{org!r:>99999999999}回复TD退订",
               "action": action}
        response = admin.post("/campaigns/new", bad)
        page = response.get_data(as_text=True)
        assert response.status_code == 422
        assert f"script: script file {passwd} is not a usable script" in page
        assert "sms_text.zh-CN: placeholder(s) org may not have a format or conversion" in page
    assert session.scalars(select(Campaign)).first() is None


def test_preview_shows_voice_script_and_sms_text_per_language_without_saving(admin, departments, session):
    response = admin.post("/campaigns/new", {**FORM, "action": "preview"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'lang="zh-CN"' in page and 'lang="en-US"' in page
    assert "非常满意请按1" in page and "Very satisfied, press 1" in page
    assert "税务局" in page and "回复TD退订" in page and "条短信计费" in page
    assert session.scalars(select(Campaign)).first() is None


def test_preview_warns_when_the_scripts_own_text_is_over_the_segment_limit(admin, departments):
    # No English text of the campaign's own: the script's invitation is sent, and it is long.
    form = {**FORM, "action": "preview", "sms_max_segments": "1"}
    page = admin.post("/campaigns/new", form).get_data(as_text=True)
    english = page.split('lang="en-US"', 1)[1]
    assert "sms-over" in english and "超过 1 条短信的上限" in english
    relaxed = admin.post("/campaigns/new", {**form, "sms_max_segments": "10"}).get_data(as_text=True)
    assert "sms-over" not in relaxed


def test_edit_keeps_the_name_and_pause_resume_change_the_status(admin, departments, session):
    admin.post("/campaigns/new", FORM)
    campaign = session.scalars(select(Campaign)).one()
    assert admin.get(f"/campaigns/{campaign.id}/edit").status_code == 200
    changed = {**FORM, "name": "renamed", "sampling_rate": "0.2", "status": ""}
    response = admin.post(f"/campaigns/{campaign.id}/edit", changed)
    assert response.status_code == 302
    session.refresh(campaign)
    assert campaign.name == "2026 Q4 visits" and campaign.config["sampling_rate"] == 0.2
    admin.post(f"/campaigns/{campaign.id}/pause")
    session.refresh(campaign)
    assert campaign.status == "paused"
    admin.post(f"/campaigns/{campaign.id}/resume")
    session.refresh(campaign)
    assert campaign.status == "active"
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "campaign")).all()
    assert {"campaign_created", "campaign_changed", "campaign_pause", "campaign_resume"} <= set(actions)
    assert admin.post(f"/campaigns/{campaign.id}/explode").status_code == 404


def test_a_second_campaign_with_the_same_name_is_refused(admin, departments, session):
    admin.post("/campaigns/new", FORM)
    response = admin.post("/campaigns/new", {**FORM, "sampling_rate": "0.1"})
    assert response.status_code == 422
    assert session.scalars(select(Campaign)).one().config["sampling_rate"] == 0.5


def test_supervisor_sees_campaigns_but_cannot_change_them(admin, supervisor, departments, session):
    admin.post("/campaigns/new", FORM)
    campaign = session.scalars(select(Campaign)).one()
    assert "2026 Q4 visits" in supervisor.get("/campaigns").get_data(as_text=True)
    assert supervisor.get(f"/campaigns/{campaign.id}").status_code == 200
    assert supervisor.post(f"/campaigns/{campaign.id}/pause").status_code == 403
    assert supervisor.get(f"/campaigns/{campaign.id}/edit").status_code == 403
    assert admin.get("/campaigns/999999").status_code == 404


class RecordingGateway:
    """Stands in for Twilio: records what it was asked and checks the attempt row was committed first."""

    name = "recording"

    def __init__(self, session_factory, fail_code=None):
        self.requests = []
        self.session_factory = session_factory
        self.fail_code = fail_code

    def _accept(self, request, prefix):
        from scheduler.gateway import GatewayError, GatewayResult

        with self.session_factory() as other:
            from models.surveys import Attempt

            assert other.get(Attempt, request.attempt_id) is not None
        self.requests.append(request)
        if self.fail_code:
            raise GatewayError("refused", code=self.fail_code, retryable=False)
        return GatewayResult(provider_id=f"{prefix}{len(self.requests):032d}", status="queued")

    def place_call(self, request):
        return self._accept(request, "CA")

    def send_sms(self, request):
        return self._accept(request, "SM")


def test_admin_places_a_test_call_and_a_test_text_to_a_staff_number(
    admin, console_app, departments, session, session_factory
):
    from models.surveys import Attempt, Survey

    admin.post("/campaigns/new", FORM)
    campaign = session.scalars(select(Campaign).where(Campaign.name == "2026 Q4 visits")).one()
    gateway = RecordingGateway(session_factory)
    console_app.extensions["returnvisit.gateway"] = gateway
    call = admin.post(
        f"/campaigns/{campaign.id}/test-contact", {"phone": "138 0013 8000", "channel": "voice"}
    )
    text = admin.post(f"/campaigns/{campaign.id}/test-contact", {"phone": "13800138000", "channel": "sms"})
    assert call.status_code == text.status_code == 302
    assert [r.to for r in gateway.requests] == ["+8613800138000", "+8613800138000"]
    assert "税务局" in gateway.requests[1].body and "回复TD退订" in gateway.requests[1].body
    session.expire_all()
    attempts = session.scalars(select(Attempt).order_by(Attempt.id)).all()
    assert [(a.channel, a.status, a.provider_id[:2]) for a in attempts] == [
        ("voice", "queued", "CA"),
        ("sms", "queued", "SM"),
    ]
    surveys = session.scalars(select(Survey)).all()
    assert {s.kind for s in surveys} == {"test"}  # never in the figures, never a case
    audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "campaign_test_contact")).all()
    assert len(audit) == 2 and "13800138000" not in str(audit[0].detail)


def test_test_contact_refuses_bad_numbers_landline_texts_and_officers(
    admin, officer, console_app, departments, session, session_factory
):
    admin.post("/campaigns/new", FORM)
    campaign = session.scalars(select(Campaign).where(Campaign.name == "2026 Q4 visits")).one()
    gateway = RecordingGateway(session_factory)
    console_app.extensions["returnvisit.gateway"] = gateway
    bad = admin.post(
        f"/campaigns/{campaign.id}/test-contact",
        {"phone": "12345", "channel": "voice"},
        follow_redirects=True,
    )
    assert "12345" in bad.get_data(as_text=True)
    landline = admin.post(
        f"/campaigns/{campaign.id}/test-contact",
        {"phone": "023-68881234", "channel": "sms"},
        follow_redirects=True,
    )
    assert "不是手机号码：无法接收短信" in landline.get_data(as_text=True)
    denied = officer.post(
        f"/campaigns/{campaign.id}/test-contact", {"phone": "13800138000", "channel": "voice"}
    )
    assert denied.status_code == 403
    assert gateway.requests == []
    failing = RecordingGateway(session_factory, fail_code="21211")
    console_app.extensions["returnvisit.gateway"] = failing
    refused = admin.post(
        f"/campaigns/{campaign.id}/test-contact",
        {"phone": "13800138000", "channel": "voice"},
        follow_redirects=True,
    )
    assert "21211" in refused.get_data(as_text=True)


def test_the_campaigns_page_names_why_items_were_skipped(admin, departments, session, create_item):
    from models.picks import PickSkip

    admin.post("/campaigns/new", FORM)
    campaign = session.scalars(select(Campaign)).one()
    for reason in ("quota_full", "contact_cap", "contact_cap"):
        item = create_item(department_id=departments["SWJ"].id)
        session.add(PickSkip(campaign_id=campaign.id, item_id=item.id, department_id=item.department_id,
                             reason=reason))
    session.flush()
    page = admin.get("/campaigns").get_data(as_text=True)
    assert "近期已回访 2" in page and "配额已满 1" in page and "quota_full" not in page
