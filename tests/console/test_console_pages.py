"""The pages of the console: dashboard, departments, items, results, opt-outs, audit log."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from models.optouts import OptOut
from models.staff import AuditEvent


def test_dashboard_counts_today_and_lists_live_calls(admin, make_result, create_survey, create_item,
                                                     departments, session):
    from models.base import utcnow

    survey = make_result("SWJ")
    survey.finished_at = utcnow()
    item = create_item(department_id=departments["SCJ"].id, phone_e164="+8613900139000")
    create_survey(item=item)
    session.flush()
    page = admin.get("/").get_data(as_text=True)
    assert 'id="today-completed">1<' in page
    assert "139****9000" in page and "+8613900139000" not in page
    data = admin.get("/api/dashboard").get_json()
    assert data["today"]["completed"] == 1 and data["today"]["placed"] == 2
    assert {row["phone"] for row in data["live"]} >= {"139****9000"}
    assert "<svg" in page  # the quarter's charts are drawn on the server


def test_departments_page_and_admin_adds_one(admin, departments, session):
    assert "税务局" in admin.get("/departments").get_data(as_text=True)
    response = admin.post("/departments", {"code": "GAJ", "name": "公安局", "kind": "enforcement"})
    assert response.status_code == 302
    assert "公安局" in admin.get("/departments").get_data(as_text=True)
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "department_created")).first()


def test_items_search_by_full_phone_only_and_show_it_masked(supervisor, create_item, departments):
    item = create_item(department_id=departments["SWJ"].id, phone_e164="+8613812345678",
                       phone_raw="138 1234 5678", external_id="BIZ-9")
    page = supervisor.get("/items?q=138-1234-5678").get_data(as_text=True)
    assert f"/items/{item.id}" in page and "138****5678" in page
    assert "13812345678" not in page.replace("q=138", "")
    assert f"/items/{item.id}" not in supervisor.get("/items?q=1381234").get_data(as_text=True)
    assert f"/items/{item.id}" in supervisor.get("/items?q=BIZ-9").get_data(as_text=True)
    detail = supervisor.get(f"/items/{item.id}").get_data(as_text=True)
    assert "138****5678" in detail and "+8613812345678" not in detail


def test_a_list_longer_than_a_page_links_its_pages_keeping_the_filter(supervisor, create_item, departments):
    for n in range(51):
        create_item(department_id=departments["SWJ"].id, external_id=f"LONG-{n}")
    first = supervisor.get("/items?department=SWJ")
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    assert "department=SWJ&amp;page=2" in page
    second = supervisor.get("/items?department=SWJ&page=2")
    assert second.status_code == 200 and "page=1" in second.get_data(as_text=True)


def test_viewing_a_full_number_is_audited_and_needs_a_role(supervisor, officer, create_item, departments,
                                                           session):
    item = create_item(department_id=departments["SWJ"].id, phone_e164="+8613812345678")
    assert officer.post(f"/items/{item.id}/reveal", {"reason": "x"}).status_code == 403
    page = supervisor.post(f"/items/{item.id}/reveal", {"reason": "citizen called back"})
    assert "+8613812345678" in page.get_data(as_text=True)
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "phone_viewed")).one()
    assert event.actor == "super" and event.target_id == str(item.id)
    assert event.detail["reason"] == "citizen called back"


@pytest.mark.parametrize("reason", ["", "   ", "\u200b"], ids=["empty", "spaces", "zero-width"])
def test_the_full_number_is_shown_only_with_a_reason(supervisor, create_item, departments, session, reason):
    item = create_item(department_id=departments["SWJ"].id, phone_e164="+8613812345678")
    page = supervisor.post(f"/items/{item.id}/reveal", {"reason": reason})
    assert page.status_code == 400
    body = page.get_data(as_text=True)
    assert "+8613812345678" not in body and "138****5678" in body
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "phone_viewed")).first() is None


def test_import_upload_shows_the_rejected_rows(admin, departments, session):
    csv = (
        "办件编号,部门编码,部门名称,事项名称,手机号码,办结时间\n"
        "A-1,SWJ,税务局,契税申报,13800138001,2026-11-10 10:00\n"
        "A-2,SWJ,税务局,契税申报,12345,2026-11-10 10:00\n"
        "A-3,SWJ,税务局,,13800138003,2026-11-10 10:00\n"
    ).encode()
    response = admin.post("/items/import", {"file": (io.BytesIO(csv), "items.csv"), "source": "hall"},
                          content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert 'id="import-summary"' in page and 'id="import-errors"' in page
    errors = page.split('id="import-errors"', 1)[1]
    assert "<td>3</td><td>A-2</td>" in errors and "<td>4</td><td>A-3</td>" in errors
    assert "A-1" not in errors
    from models.items import ServiceItem

    assert session.scalars(select(ServiceItem).where(ServiceItem.external_id == "A-1")).first() is not None
    assert session.scalars(select(AuditEvent).where(AuditEvent.action == "items_imported")).first()


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("items.pdf", b"x", "pdf"),
        ("items.xlsx", "办件编号,部门\n1,SWJ\n".encode(), "not an XLSX workbook"),
        ("items.csv", bytes(range(256)) * 40, "cannot be read as text"),
    ],
    ids=["unknown-format", "csv-named-xlsx", "binary-csv"],
)
def test_import_of_an_unreadable_file_says_why(admin, departments, name, content, says):
    response = admin.post("/items/import", {"file": (io.BytesIO(content), name)},
                          content_type="multipart/form-data")
    assert response.status_code == 200
    assert says in response.get_data(as_text=True)


def test_results_filter_by_grade_and_category_and_play_a_recording(admin, make_result):
    make_result("SWJ", grade="satisfied", comment="很好")
    bad = make_result("SWJ", grade="very_dissatisfied", categories="delay,cold",
                      recording="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1")
    make_result("SCJ", grade="dissatisfied", categories="stuck")
    page = admin.get("/results?grade=very_dissatisfied").get_data(as_text=True)
    assert f"/results/{bad.id}" in page and "很好" not in page
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    assert f'<audio controls preload="none" src="{url}"' in page
    assert f"/results/{bad.id}" in admin.get("/results?category=cold").get_data(as_text=True)
    assert f"/results/{bad.id}" not in admin.get("/results?category=stuck").get_data(as_text=True)
    assert f"/results/{bad.id}" not in admin.get("/results?department=SCJ").get_data(as_text=True)
    assert f"/results/{bad.id}" not in admin.get("/results?quarter=2026Q3").get_data(as_text=True)
    detail = admin.get(f"/results/{bad.id}").get_data(as_text=True)
    assert "<audio" in detail


def test_results_export_neutralises_formulas_and_masks_numbers(admin, make_result):
    make_result("SWJ", grade="dissatisfied", comment='=HYPERLINK("http://x","y")', phone="+8613812345678")
    make_result("SWJ", grade="dissatisfied", comment="@SUM(A1)")
    response = admin.get("/results/export.csv")
    text = response.get_data(as_text=True)
    assert response.mimetype == "text/csv" and text.startswith("\ufeff")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and '"=HYPERLINK' not in text
    assert "'@SUM(A1)" in text
    assert "138****5678" in text and "13812345678" not in text


def test_safe_cell_neutralises_every_formula_start():
    from console.web.exports import safe_cell

    for start in ["=", "+", "-", "@", "\t", "\r", "＝"]:
        assert safe_cell(start + "1+1") == "'" + start + "1+1"
    assert safe_cell("普通文本") == "普通文本" and safe_cell(12) == 12


def test_optouts_add_list_masked_and_remove_with_a_reason(supervisor, session):
    form = {"phone": "138 0013 8000", "channel": "all", "reason": "投诉电话骚扰"}
    response = supervisor.post("/optouts", form)
    assert response.status_code == 302
    optout = session.scalars(select(OptOut)).one()
    assert optout.phone_e164 == "+8613800138000" and optout.source == "staff" and optout.created_by == "super"
    page = supervisor.get("/optouts").get_data(as_text=True)
    assert "138****8000" in page and "13800138000" not in page
    assert supervisor.get("/optouts?q=13800138000").get_data(as_text=True).count("138****8000") == 1
    assert supervisor.post(f"/optouts/{optout.id}/remove", {"reason": ""}).status_code == 302
    session.refresh(optout)
    assert optout.revoked_at is None
    supervisor.post(f"/optouts/{optout.id}/remove", {"reason": "市民要求恢复回访"})
    session.refresh(optout)
    assert optout.revoked_at is not None
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "optout_removed")).one()
    assert event.detail["reason"] == "市民要求恢复回访" and "13800138000" not in str(event.detail)


def test_optout_needs_a_number_and_a_reason(supervisor, session):
    supervisor.post("/optouts", {"phone": "12", "channel": "all", "reason": "x"})
    supervisor.post("/optouts", {"phone": "13800138000", "channel": "all", "reason": ""})
    assert session.scalars(select(OptOut)).first() is None


def test_audit_log_shows_who_viewed_and_changed_what(admin, supervisor, create_item, departments):
    item = create_item(department_id=departments["SWJ"].id)
    supervisor.post(f"/items/{item.id}/reveal", {"reason": "check"})
    page = admin.get("/audit?action=phone_viewed").get_data(as_text=True)
    assert "phone_viewed" in page and "super" in page
    assert "login" in admin.get("/audit").get_data(as_text=True)


def test_dates_follow_the_users_locale(console_app):
    from flask_babel import force_locale

    from console.web.i18n import format_dt, format_number

    when = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
    with console_app.test_request_context("/"):
        with force_locale("en"):
            english = format_dt(when, "medium"), format_number(1234567)
        with force_locale("zh_CN"):
            chinese = format_dt(when, "medium"), format_number(1234567)
    assert "Nov" in english[0] and "10:00" in english[0]  # Asia/Shanghai
    assert "2026年11月16日" in chinese[0] and "10:00" in chinese[0]
    assert english[1] == chinese[1] == "1,234,567"
