"""Errors of the model and scheduler layers read in the user's language in the console; the CLI and
the logs keep their English text."""

from __future__ import annotations

import ast
import html
import io
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from models.cases import Case

ROOT = Path(__file__).resolve().parents[2]
# The modules whose errors the console shows, and the error classes whose first text is a template.
ERROR_MODULES = ("models/cases_ops.py", "models/quarter_ops.py", "models/intake.py", "scheduler/campaigns.py",
                 "console/test_contact.py")
TEMPLATE_ARGUMENT = {"CaseError": 0, "QuarterError": 0, "TestContactError": 0, "Translatable": 0,
                     "RowError": 1}


def shown(response) -> str:
    """The page's text with entities decoded (a quoted name arrives as &#39;)."""
    return html.unescape(response.get_data(as_text=True))


def english(console) -> None:
    console.post("/language", {"lang": "en", "next": "/"})


def test_a_refused_case_transition_names_the_states_in_chinese(supervisor, make_case):
    case = make_case("SWJ")
    page = shown(supervisor.post(f"/cases/{case.id}/close", {"note": "已核实"}, follow_redirects=True))
    assert f"工单 {case.id} 状态为“待答复”，不能变为“已办结”（可变为：已答复、已督办）" in page


def test_the_english_ui_shows_a_refused_transition_as_the_cli_does(supervisor, make_case):
    case = make_case("SWJ")
    english(supervisor)
    page = shown(supervisor.post(f"/cases/{case.id}/close", {"note": "checked"}, follow_redirects=True))
    assert f"case {case.id} is open: it cannot become closed (allowed: answered, escalated)" in page


def test_case_feedback_reason_and_waiting_visit_errors_read_in_chinese(
    officer, supervisor, make_case, session
):
    case = make_case("SWJ")
    page = shown(officer.post(f"/cases/{case.id}/answer", {"feedback": "  "}, follow_redirects=True))
    assert f"工单 {case.id}：整改答复须说明投诉是如何处理的" in page
    page = shown(supervisor.post(f"/cases/{case.id}/escalate", {"escalation": "interview", "reason": " "},
                                 follow_redirects=True))
    assert f"工单 {case.id}：督办须填写原因" in page
    page = shown(supervisor.post(f"/cases/{case.id}/close", {"note": " "}, follow_redirects=True))
    assert f"工单 {case.id}：手动办结须填写备注" in page
    officer.post(f"/cases/{case.id}/answer", {"feedback": "已整改"})
    page = shown(supervisor.post(f"/cases/{case.id}/close", {"note": "已核实"}, follow_redirects=True))
    assert f"工单 {case.id} 正在等待核实回访：市民答复后才能办结" in page
    session.expire_all()
    assert session.scalars(select(Case.state).where(Case.id == case.id)).one() == "answered"


def test_quarter_close_errors_read_in_chinese_and_in_english(supervisor, make_result):
    make_result("SWJ", grade="satisfied", quarter="2025Q1")
    page = shown(supervisor.post("/quarter/close", {"q": "2099Q1"}, follow_redirects=True))
    assert "2099Q1 季度尚未结束（结束于 2099-04-01 00:00 Asia/Shanghai）" in page
    supervisor.post("/quarter/close", {"q": "2025Q1"})
    page = shown(supervisor.post("/quarter/close", {"q": "2025Q1"}, follow_redirects=True))
    assert "2025Q1 季度已于 " in page and " 由 super 结账：已发布的数据不能更改" in page
    english(supervisor)
    page = shown(supervisor.post("/quarter/close", {"q": "2025Q1"}, follow_redirects=True))
    assert "quarter 2025Q1 was already closed on " in page and "by super: its published figures" in page


def test_a_refused_campaign_status_change_reads_in_chinese(admin, create_campaign):
    campaign = create_campaign(name="Q4", status="archived")
    page = shown(admin.post(f"/campaigns/{campaign.id}/resume", follow_redirects=True))
    assert "无法恢复回访任务 'Q4'：其状态为“已归档”" in page
    english(admin)
    page = shown(admin.post(f"/campaigns/{campaign.id}/resume", follow_redirects=True))
    assert "cannot resume campaign 'Q4': it is archived" in page


def test_a_test_contact_to_a_bad_number_says_why_in_chinese(admin, console_app, create_campaign, departments):
    campaign = create_campaign()
    console_app.extensions["returnvisit.gateway"] = object()  # never reached: the number is refused first
    url = f"/campaigns/{campaign.id}/test-contact"
    page = shown(admin.post(url, {"phone": "abc", "channel": "voice"}, follow_redirects=True))
    assert "号码 'abc'：没有数字" in page
    page = shown(admin.post(url, {"phone": "1380013800", "channel": "voice"}, follow_redirects=True))
    assert "号码 '1380013800'：位数不足：手机号码应为 11 位，而不是 10 位" in page
    page = shown(admin.post(url, {"phone": "023-68881234", "channel": "sms"}, follow_redirects=True))
    assert "号码 '023-68881234' 不是手机号码：无法接收短信" in page
    english(admin)
    page = shown(admin.post(url, {"phone": "abc", "channel": "voice"}, follow_redirects=True))
    assert "phone 'abc': no digits" in page


IMPORT = (
    "办件编号,部门编码,部门名称,事项名称,手机号码,办结时间\n"
    "A-1,SWJ,税务局,契税申报,13800138001,2026-11-10 10:00\n"
    "A-2,SWJ,税务局,契税申报,12345,2026-11-10 10:00\n"
    "A-3,SWJ,税务局,,13800138003,2026-11-10 10:00\n"
    "A-4,SWJ,税务局,契税申报,13800138004,昨天\n"
    ",SWJ,税务局,契税申报,13800138005,2026-11-10 10:00\n"
).encode()


def test_the_import_page_lists_rejected_rows_in_chinese_and_in_english(admin, departments):
    def upload() -> str:
        response = admin.post("/items/import", {"file": (io.BytesIO(IMPORT), "items.csv")},
                              content_type="multipart/form-data")
        assert response.status_code == 200
        return shown(response).split('id="import-errors"', 1)[1]

    errors = upload()
    assert "号码 '***45'：短号码" in errors
    assert "缺少 matter" in errors and "缺少 external_id" in errors
    assert "completed_at（办结时间）'昨天' 不是有效的日期时间" in errors
    english(admin)
    errors = upload()
    assert "phone '***45': short code" in errors and "missing matter" in errors
    assert "completed_at '昨天' is not a date and time" in errors and "missing external_id" in errors


def test_unreadable_json_lines_are_named_in_chinese(admin, departments):
    lines = b'{"external_id": "J-1", "department": "SWJ"\n[1, 2]\n'
    response = admin.post("/items/import", {"file": (io.BytesIO(lines), "items.jsonl")},
                          content_type="multipart/form-data")
    errors = shown(response).split('id="import-errors"', 1)[1]
    assert "不是有效的 JSON（" in errors and "不是 JSON 对象" in errors


@pytest.mark.parametrize("raw", ["", "abc", "12345", "1380013800", "138001380001", "4008123123", "+999 1234",
                                 "转123", "023-1234"])
def test_every_phone_reason_has_a_chinese_name(console_app, raw):
    from console.web.i18n import phone_reason_label
    from models.phones import normalize_phone

    reason = normalize_phone(raw, region="CN").reason
    assert reason is not None
    with console_app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        label = phone_reason_label(reason)
    assert label != reason and not any("a" <= ch.lower() <= "z" for ch in label)


def _templates_raised(path: Path) -> list[ast.expr]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            index = TEMPLATE_ARGUMENT.get(node.func.id)
            if index is not None and len(node.args) > index:
                found.append(node.args[index])
    return found


@pytest.mark.parametrize("module", ERROR_MODULES)
def test_every_error_template_the_console_shows_is_listed_for_translation(module):
    from console.web.i18n import MESSAGE_TEMPLATES

    templates = _templates_raised(ROOT / module)
    assert templates
    for template in templates:
        where = f"{module}:{template.lineno}"
        assert not isinstance(template, ast.JoinedStr), f"{where}: an f-string cannot be translated"
        if isinstance(template, ast.Constant):
            assert template.value in MESSAGE_TEMPLATES, f"{where}: add it to MESSAGE_TEMPLATES"


def test_a_rejected_rows_message_keeps_its_template_across_processes():
    from zoneinfo import ZoneInfo

    from models.intake import IntakeOptions, RowError, validate_rows

    options = IntakeOptions(tz=ZoneInfo("Asia/Shanghai"))
    row = {"external_id": "A-1", "department": "SWJ", "matter": "m", "phone": "12345",
           "completed_at": "2026-11-10 10:00"}
    (rejected,) = validate_rows([(2, row)], options, datetime(2026, 11, 11, tzinfo=UTC))
    copy = pickle.loads(pickle.dumps(rejected))
    assert copy == rejected and copy.message == "phone '***45': short code"
    assert copy.message.template == "phone %(phone)r: %(reason)s"
    assert copy.message.params == {"phone": "***45", "reason": "short code"}
    error = RowError("bad completed_at", "completed_at %(value)r is not a date and time", value="x")
    error = pickle.loads(pickle.dumps(error))
    assert error.kind == "bad completed_at" and str(error) == "completed_at 'x' is not a date and time"
    assert error.message.params == {"value": "x"}
