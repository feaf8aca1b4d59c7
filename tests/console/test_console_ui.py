"""What the console shows: codes in the user's language, plain masked numbers, only the actions that
can succeed, charts whose labels fit, a favicon, and department codes that are checked."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from models.departments import Department
from models.optouts import OptOut
from models.surveys import Attempt

ENGLISH = {"Accept-Language": "en"}


def test_masked_numbers_are_plain_text_and_only_the_simulator_has_phone_panes(admin, make_result, session):
    survey = make_result("SWJ", phone="+8613900139000")
    for url in (f"/results/{survey.id}", f"/items/{survey.item_id}", "/results", "/items"):
        page = admin.get(url).get_data(as_text=True)
        assert re.search(r'class="masked-phone">\s*139\*\*\*\*9000<', page), url
        assert 'class="phone"' not in page and "phone-pane" not in page, url
    assert admin.get("/simulator").get_data(as_text=True).count('class="phone-pane"') == 2


def test_answers_attempts_and_phone_kinds_are_named_in_chinese(admin, make_result, session):
    survey = make_result("SWJ", grade="dissatisfied", categories="delay", comment="太慢了")
    session.execute(update(Attempt).where(Attempt.survey_id == survey.id).values(
        status="no_answer", answered_by="machine_end_beep", duration_seconds=42))
    session.flush()
    page = admin.get(f"/results/{survey.id}").get_data(as_text=True)
    assert "满意度评价" in page and "不满意原因" in page and "意见留言" in page
    assert "无人接听" in page and "语音信箱（提示音后）" in page and "42 秒" in page
    for code in (">rating<", ">categories<", ">comment<", ">no_answer<", "machine_end_beep"):
        assert code not in page
    assert "(手机)" in admin.get(f"/items/{survey.item_id}").get_data(as_text=True)
    english = admin.get(f"/results/{survey.id}", headers=ENGLISH).get_data(as_text=True)
    assert "42 s<" in english and "answering machine (after the beep)" in english


def test_a_case_names_its_questions_verdict_and_automatic_actors(supervisor, make_case, session):
    case = make_case("SWJ")
    case.state, case.verification_result = "answered", "unverified"
    session.flush()
    page = supervisor.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "满意度评价:" in page and "核实回访未获答复" in page
    history = page[page.index('id="history"'):]
    assert "<td>系统</td>" in history and "<td>system</td>" not in history


def test_the_dashboard_names_attempt_statuses_and_counts_cases_not_closed(admin, create_item, create_survey,
                                                                          departments, session):
    _survey, attempt = create_survey(item=create_item(department_id=departments["SWJ"].id))
    attempt.status = "busy"
    session.flush()
    page = admin.get("/").get_data(as_text=True)
    assert "<td>占线</td>" in page and "<td>busy</td>" not in page
    assert admin.get("/api/dashboard").get_json()["live"][0]["status"] == "占线"
    english = admin.get("/", headers=ENGLISH).get_data(as_text=True)
    assert "Cases not closed" in english and "Cases open" not in english


def test_audit_actions_and_optout_sources_are_named_but_filter_by_code(admin, supervisor, session):
    supervisor.post("/optouts", {"phone": "13800138000", "channel": "all", "reason": "投诉电话骚扰"})
    session.add(OptOut(phone_e164="+8613800138001", channel="sms", source="sms_keyword"))
    session.flush()
    optouts = supervisor.get("/optouts").get_data(as_text=True)
    assert "工作人员录入" in optouts and "短信回复退订" in optouts and ">sms_keyword<" not in optouts
    page = admin.get("/audit").get_data(as_text=True)
    assert '<option value="optout_added" >添加退订</option>' in page
    assert "<td>添加退订</td>" in page and "<td>登录</td>" in page and "<td>login</td>" not in page
    filtered = admin.get("/audit?action=optout_added").get_data(as_text=True)
    assert "<td>添加退订</td>" in filtered and "<td>登录</td>" not in filtered


def test_campaign_channels_and_status_choice_read_as_words(admin, create_campaign):
    new = admin.get("/campaigns/new").get_data(as_text=True)
    assert "语音 → 短信</option>" in new and ">voice sms<" not in new
    assert "unchanged" not in new and "不变" not in new
    campaign = create_campaign(status="paused")
    edit = admin.get(f"/campaigns/{campaign.id}/edit").get_data(as_text=True)
    assert '<option value="">保持当前状态（已暂停）</option>' in edit


@pytest.mark.parametrize(("status", "shown"), [
    ("draft", {"archive"}),
    ("active", {"pause", "archive"}),
    ("paused", {"resume", "archive"}),
    ("archived", set()),
])
def test_a_campaign_offers_only_the_status_changes_it_allows(admin, create_campaign, status, shown):
    campaign = create_campaign(status=status)
    page = admin.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert set(re.findall(r'id="campaign-(pause|resume|archive)"', page)) == shown


def test_verify_and_close_is_offered_only_when_closing_can_succeed(supervisor, officer, make_case, session):
    open_case = make_case("SWJ")
    assert 'id="close-form"' not in supervisor.get(f"/cases/{open_case.id}").get_data(as_text=True)
    officer.post(f"/cases/{open_case.id}/answer", {"feedback": "已整改"})
    waiting = supervisor.get(f"/cases/{open_case.id}").get_data(as_text=True)
    assert 'id="close-form"' not in waiting and 'id="close-waits"' in waiting
    unverified = make_case("SWJ")
    unverified.state, unverified.verification_result = "answered", "unverified"
    session.flush()
    assert 'id="close-form"' in supervisor.get(f"/cases/{unverified.id}").get_data(as_text=True)
    escalated = make_case("SCJ")
    supervisor.post(f"/cases/{escalated.id}/escalate", {"escalation": "interview", "reason": "逾期未整改"})
    assert 'id="close-form"' in supervisor.get(f"/cases/{escalated.id}").get_data(as_text=True)
    supervisor.post(f"/cases/{escalated.id}/close", {"note": "已约谈"})
    session.refresh(escalated)
    assert escalated.state == "closed"


def test_only_an_ended_quarter_offers_to_be_closed(supervisor, make_result):
    make_result("SWJ", quarter="2025Q1")
    assert 'id="close-quarter"' in supervisor.get("/quarter?q=2025Q1").get_data(as_text=True)
    assert 'id="close-quarter"' not in supervisor.get("/quarter?q=2099Q1").get_data(as_text=True)


def test_the_simulator_draws_no_emoji(admin, create_item, departments):
    emoji = re.compile("[\U0001f300-\U0001faff]")
    create_item(department_id=departments["SWJ"].id, external_id="SIM-1")
    page = admin.post("/simulator/call", {"item": "SIM-1", "language": "zh-CN"}).get_data(as_text=True)
    assert 'id="said"' in page and '<svg class="icon"' in page and not emoji.search(page)
    admin.post("/simulator/call/keys", {"keys": "4"})
    admin.post("/simulator/call/keys", {"silence": "1"})
    page = admin.post("/simulator/call/keys", {"keys": "35#"}).get_data(as_text=True)
    page = admin.post("/simulator/call/record", {"seconds": "7"}).get_data(as_text=True)
    assert "4 · 不按键 · 35# · 说话 7s</span>" in page and not emoji.search(page)


def test_every_page_names_a_favicon_that_is_served(client, admin):
    icon_link = re.compile(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)"')
    for page in (client.get("/login"), admin.get("/")):
        link = icon_link.search(page.get_data(as_text=True))
        assert link, "no favicon link"
    icon = client.get(link.group(1))
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.get_data().startswith(b"<svg")
    icon.close()


def test_chart_labels_are_whole_and_a_very_long_one_is_shortened_with_its_full_text_kept():
    from console.web.charts import WIDTH, bar_chart, text_width

    labels = ["basically satisfied", "chaotic (improper procedure)", "城市管理综合行政执法局"]
    svg = str(bar_chart([(label, 1.0) for label in labels], title="t"))
    for label in labels:
        assert f">{label}</text>" in svg
    assert text_width("城市管理综合行政执法局") < WIDTH
    long = "住房和城乡建设局" * 4
    svg = str(bar_chart([(long, 2.0), ("短", None)], title="t"))
    assert f"<title>{long}</title>" in svg and "…</text>" in svg
    assert re.search(r'<svg class="chart " role="img" viewBox="0 0 320 \d+" width="320"', svg)


def test_a_new_department_code_is_letters_digits_dash_or_underscore(admin, departments, session):
    for bad in ("bad code!", "税务", "a/b", "x" * 65):
        response = admin.post("/departments", {"code": bad, "name": "某局", "kind": "service"})
        assert response.status_code == 302
        page = admin.get("/departments").get_data(as_text=True)
        assert "不可用" in page, bad
    assert session.scalars(select(Department.code).where(Department.name == "某局")).all() == []
    admin.post("/departments", {"code": "GA-J_2", "name": "公安局", "kind": "enforcement"})
    assert session.scalars(select(Department).where(Department.code == "GA-J_2")).one().name == "公安局"


def test_an_imported_department_with_an_odd_code_can_still_be_renamed(admin, create_department, session):
    odd = create_department(code="市 局", name="旧名")
    admin.post("/departments", {"code": "市 局", "name": "新名", "kind": "service"})
    session.refresh(odd)
    assert odd.name == "新名"


def test_survey_kinds_and_statuses_have_labels_for_every_code():
    from console.web.i18n import STATE_LABELS
    from models.surveys import AttemptStatus, SurveyKind

    assert {s.value for s in AttemptStatus} <= set(STATE_LABELS)
    assert {k.value for k in SurveyKind} <= set(STATE_LABELS)
