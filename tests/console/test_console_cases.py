"""Case pages: the queue per department, a case's history, answer, verify (close) and escalate;
the quarter page: figures, charts, close and downloads."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from models.cases import CaseEvent
from models.quarters import QuarterClose
from models.staff import AuditEvent
from models.surveys import Answer


def test_the_queue_lists_a_departments_cases_soonest_due_first(supervisor, make_case):
    first = make_case("SWJ")
    second = make_case("SCJ")
    page = supervisor.get("/cases").get_data(as_text=True)
    assert f'/cases/{first.id}"' in page and f'/cases/{second.id}"' in page
    page = supervisor.get("/cases?department=SCJ").get_data(as_text=True)
    assert f'/cases/{first.id}"' not in page and f'/cases/{second.id}"' in page


def test_an_officer_answers_own_case_and_the_history_shows_it(officer, make_case, session):
    case = make_case("SWJ")
    response = officer.post(f"/cases/{case.id}/answer", {"feedback": "已约谈窗口人员并整改"})
    assert response.status_code == 302
    session.refresh(case)
    assert case.state == "answered" and case.feedback == "已约谈窗口人员并整改"
    assert case.verification_survey_id is not None
    page = officer.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "已约谈窗口人员并整改" in page and "swj" in page
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()
    assert [e.to_state for e in events] == ["open", "answered"]


def test_an_empty_answer_is_refused_with_the_reason(officer, make_case, session):
    case = make_case("SWJ")
    officer.post(f"/cases/{case.id}/answer", {"feedback": "  "})
    session.refresh(case)
    assert case.state == "open"


def test_only_supervisors_escalate_and_close(officer, supervisor, make_case, session):
    case = make_case("SWJ")
    escalation = {"escalation": "interview", "reason": "x"}
    assert officer.post(f"/cases/{case.id}/escalate", escalation).status_code == 403
    assert officer.post(f"/cases/{case.id}/close", {"note": "x"}).status_code == 403
    supervisor.post(f"/cases/{case.id}/escalate", {"escalation": "interview", "reason": "逾期未整改"})
    session.refresh(case)
    assert case.state == "escalated" and case.escalation == "interview"
    assert case.escalation_reason == "逾期未整改"
    supervisor.post(f"/cases/{case.id}/close", {"note": "回访核实已整改"})
    session.refresh(case)
    assert case.state == "closed"
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "case")).all()
    assert actions == ["case_escalated", "case_closed"]


def test_an_escalation_needs_a_known_kind_and_a_reason(supervisor, make_case, session):
    case = make_case("SWJ")
    supervisor.post(f"/cases/{case.id}/escalate", {"escalation": "jail", "reason": "x"})
    supervisor.post(f"/cases/{case.id}/escalate", {"escalation": "discipline", "reason": ""})
    session.refresh(case)
    assert case.state == "open"


def test_quarter_page_shows_figures_and_charts(supervisor, make_result):
    make_result("SWJ", grade="satisfied")
    make_result("SWJ", grade="dissatisfied", categories="delay")
    page = supervisor.get("/quarter?q=2026Q4").get_data(as_text=True)
    assert "税务局" in page and page.count("<svg") == 3 and 'id="figures"' in page


def test_a_running_quarter_cannot_be_closed_a_finished_one_can_once(supervisor, make_result, session):
    make_result("SWJ", grade="satisfied", quarter="2025Q1")
    supervisor.post("/quarter/close", {"q": "2099Q1"})
    assert session.scalars(select(QuarterClose)).first() is None
    assert supervisor.post("/quarter/close", {"q": "2025Q1"}).status_code == 302
    closing = session.scalars(select(QuarterClose)).one()
    assert closing.quarter == "2025Q1" and closing.closed_by == "super"
    supervisor.post("/quarter/close", {"q": "2025Q1"})
    assert len(session.scalars(select(QuarterClose)).all()) == 1
    page = supervisor.get("/quarter?q=2025Q1").get_data(as_text=True)
    assert 'id="close-quarter"' not in page and "super" in page


def test_officers_cannot_close_a_quarter_and_see_their_own_figures_only(officer, make_result):
    make_result("SWJ")
    assert officer.post("/quarter/close", {"q": "2025Q1"}).status_code == 403
    page = officer.get("/quarter?q=2026Q4").get_data(as_text=True)
    assert 'id="close-quarter"' not in page


def test_figures_download_is_a_safe_csv(supervisor, make_result):
    make_result("SWJ", grade="satisfied")
    response = supervisor.get("/quarter/2026q4/figures.csv")
    text = response.get_data(as_text=True)
    assert response.mimetype == "text/csv" and "2026Q4,SWJ,税务局" in text
    assert supervisor.get("/quarter/not-a-quarter/figures.csv").status_code == 404
    assert supervisor.get("/quarter?q=garbage").status_code == 404


def test_a_closed_quarter_shows_the_answers_that_arrived_after_its_close(supervisor, make_result, session):
    make_result("SWJ", grade="satisfied", quarter="2025Q1")
    assert supervisor.post("/quarter/close", {"q": "2025Q1"}).status_code == 302
    late = make_result("SWJ", grade="very_dissatisfied", quarter="2025Q1")
    session.execute(update(Answer).where(Answer.survey_id == late.id).values(late=True))  # as ivr marks it
    session.flush()
    text = supervisor.get("/quarter/2025Q1/figures.csv").get_data(as_text=True).lstrip("\ufeff")
    (row,) = csv.DictReader(io.StringIO(text))
    assert (row["rated"], row["late_answers"]) == ("1", "1")  # kept apart from the published figures
    page = supervisor.get("/quarter?q=2025Q1").get_data(as_text=True)
    assert "<td>1</td></tr>" in page


@pytest.mark.parametrize(
    ("url", "quarter"),
    [
        ("/quarter?q=0001Q1", "0001Q1"),
        ("/quarter/0001Q1/figures.csv", "0001Q1"),
        ("/quarter/0001Q1/report.html", "0001Q1"),
        ("/quarter/0001Q3/report.xlsx", "0001Q3"),
        ("/quarter/9999Q4/report.html", "9999Q4"),
        ("/quarter/1899Q4/letter/SWJ.html", "1899Q4"),
    ],
)
def test_a_quarter_out_of_range_is_not_found_and_the_page_says_why(supervisor, make_result, url, quarter):
    make_result("SWJ")
    response = supervisor.get(url)
    text = response.get_data(as_text=True)
    assert response.status_code == 404
    assert quarter in text and "1900" in text and "9998" in text


def test_the_first_and_last_quarters_in_range_are_shown(supervisor, make_result):
    make_result("SWJ")
    assert supervisor.get("/quarter/1900Q1/report.html").status_code == 200  # its trend reaches 1898
    assert supervisor.get("/quarter/9998Q4/figures.csv").status_code == 200


@pytest.mark.parametrize("quarter", ["0001Q1", "9999Q4"])
def test_closing_a_quarter_out_of_range_is_refused(supervisor, session, quarter):
    assert supervisor.post("/quarter/close", {"q": quarter}).status_code == 404
    assert session.scalars(select(QuarterClose)).first() is None


def test_dates_are_shown_in_the_service_centres_time_zone(supervisor, make_case, session):
    case = make_case("SWJ")
    case.opened_at = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
    session.flush()
    supervisor.post("/language", {"lang": "en", "next": "/"})
    page = supervisor.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "Nov 16, 2026, 10:00:00" in page.replace("\u202f", " ")


def test_report_downloads_in_every_format_scoped_for_officers(supervisor, officer, make_result):
    import io

    from openpyxl import load_workbook

    make_result("SWJ", grade="satisfied")
    make_result("SCJ", grade="dissatisfied", categories="cold")
    html = supervisor.get("/quarter/2026Q4/report.html")
    assert html.status_code == 200 and "<svg" in html.get_data(as_text=True)
    assert "税务局" in html.get_data(as_text=True) and "市场监督管理局" in html.get_data(as_text=True)
    xlsx = supervisor.get("/quarter/2026Q4/report.xlsx")
    assert xlsx.status_code == 200 and load_workbook(io.BytesIO(xlsx.data)).sheetnames
    assert "SCJ" in supervisor.get("/quarter/2026Q4/report.csv").get_data(as_text=True)
    own = officer.get("/quarter/2026Q4/report.csv").get_data(as_text=True)
    assert "SWJ" in own and "SCJ" not in own
    assert officer.get("/quarter/2026Q4/report.csv?department=SCJ").status_code == 404
    assert "市场监督管理局" not in officer.get("/quarter/2026Q4/report.html").get_data(as_text=True)
    assert supervisor.get("/quarter/2026Q4/report.pdf").status_code == 404


def test_notification_letters_are_scoped(supervisor, officer, make_result):
    make_result("SWJ", grade="satisfied")
    make_result("SCJ", grade="satisfied")
    assert "税务局" in supervisor.get("/quarter/2026Q4/letter/SWJ.html").get_data(as_text=True)
    assert officer.get("/quarter/2026Q4/letter/SWJ.html").status_code == 200
    assert officer.get("/quarter/2026Q4/letter/SCJ.html").status_code == 404
    assert supervisor.get("/quarter/2026Q4/letter/NOPE.html").status_code == 404
