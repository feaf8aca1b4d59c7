"""Quarterly reports: HTML with SVG charts, XLSX, CSV, letters, and the cycle's CLI commands."""

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from test_metrics import add_survey, dataset  # noqa: F401 - fixtures

from console.reports import build_report
from console.reports.csv import write_csv
from console.reports.html import render_html
from console.reports.letters import render_letter, write_letters
from console.reports.tables import neutralise
from console.reports.xlsx import write_xlsx
from models.cases import Case, CaseState
from models.quarter_ops import close_quarter

NOW = datetime(2026, 10, 20, 2, 0, tzinfo=UTC)
SHEETS = ["Report", "Figures", "Categories", "Response rates", "Case figures", "Cases", "Trend"]


class Tags(HTMLParser):
    """Collect the elements of a document with their attributes and their parent chain."""

    def __init__(self):
        super().__init__()
        self.elements = []
        self.stack = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), tuple(t for t, _ in self.stack)))
        if tag not in {"meta", "br", "link", "img", "input"}:
            self.stack.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), tuple(t for t, _ in self.stack)))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.text.append(data)

    def inside(self, element_id):
        """Return the tags of the elements inside the element with this id."""
        found = []
        depth = None
        for tag, attrs, parents in self.elements:
            if attrs.get("id") == element_id:
                depth = len(parents)
                continue
            if depth is not None:
                if len(parents) <= depth:
                    break
                found.append(tag)
        return found


@pytest.fixture
def small_settings(tmp_path):
    """Settings that rank departments from 3 ratings on (the dataset is small)."""
    from models.settings import load_settings

    return load_settings(env={}, overrides={"cases": {"min_ratings_to_rank": 3}})


@pytest.fixture
def report_data(session, small_settings, dataset):  # noqa: F811
    a, b, _ = dataset
    b.name = "=cmd|' /C calc'!A0"  # a department name that a spreadsheet would run
    case = session.query(Case).filter_by(department_id=a.id).order_by(Case.id).first()
    case.comment = "@SUM(1+1) 办事太慢"
    case.feedback = "<script>alert(1)</script>已整改"
    session.flush()
    return build_report(session, "2026Q3", small_settings, NOW)


def parse(document):
    parser = Tags()
    parser.feed(document)
    parser.close()
    return parser


def test_the_html_report_parses_and_holds_its_three_charts(report_data):
    document = render_html(report_data, min_ratings=3)
    parsed = parse(document)
    tags = [tag for tag, _, _ in parsed.elements]
    assert tags.count("svg") == 3
    for chart in ("chart-trend", "chart-ranking", "chart-categories"):
        assert "svg" in parsed.inside(chart), chart
    assert "script" not in tags  # nothing runs in a printed report
    assert "@page" in document and "size: A4" in document
    text = "".join(parsed.text)
    assert "税务局" in text and "66.7%" in text and "2026Q3" in text
    assert "provisional" in text


def test_the_trend_chart_has_a_line_per_department_over_eight_quarters(report_data):
    from console.reports.charts import trend_chart

    assert report_data.trend_quarters[0] == "2024Q4" and report_data.trend_quarters[-1] == "2026Q3"
    rates = report_data.trend_rates["A-SWJ"]
    assert rates[-2:] == [0.5, pytest.approx(4 / 6)] and rates[0] is None
    names = {f.department_code: f.department_name for f in report_data.figures}
    svg = trend_chart(report_data.trend_quarters, report_data.trend_rates, names)
    assert "2024Q4" in svg and "税务局" in svg and svg.count('class="series ') >= 3


def test_user_text_is_escaped_in_the_html(report_data):
    document = render_html(report_data, min_ratings=3)
    assert "<script>alert" not in document
    letter = render_letter(report_data, report_data.figures[0], 3)
    assert "<script>alert" not in letter and "&lt;script&gt;alert(1)" in letter


def test_the_xlsx_opens_with_its_sheets_and_figures(report_data):
    out = io.BytesIO()
    write_xlsx(report_data, out)
    book = load_workbook(io.BytesIO(out.getvalue()))
    assert book.sheetnames == SHEETS
    sheet = book["Figures"]
    headers = [cell.value for cell in sheet[1]]
    rows = {
        row[0]: dict(zip(headers, row, strict=True)) for row in sheet.iter_rows(min_row=2, values_only=True)
    }
    a = rows["A-SWJ"]
    assert a["评价 ratings"] == 6 and a["回访 surveys"] == 14 and a["呼叫/短信 attempts"] == 16
    assert a["满意率 satisfaction rate"] == pytest.approx(4 / 6)
    assert a["95%下限 Wilson low"] == pytest.approx(0.29999, abs=1e-4)
    assert a["满意度指数 satisfaction index"] == pytest.approx(350 / 6)
    assert a["排名 rank"] == 2 and rows["B-SCJ"]["排名 rank"] is None
    rates = {row[0]: row for row in book["Response rates"].iter_rows(min_row=2, values_only=True)}
    assert rates["A-SWJ"][-5:] == pytest.approx((5 / 12, 6 / 12, 5 / 8, 2 / 12, 8 / 12))
    categories = {row[0]: row for row in book["Categories"].iter_rows(min_row=2, values_only=True)}
    assert categories["A-SWJ"][2:] == (0, 0, 2, 0, 1, 0, 2)
    assert book["Cases"].max_row == 1 + 3
    assert book["Report"]["B2"].value == "2026Q3"


def test_csv_and_xlsx_neutralise_formulas(report_data):
    out = io.StringIO()
    write_csv(report_data, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    names = [row[1] for row in rows[1:]]
    assert "'=cmd|' /C calc'!A0" in names
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)

    buffer = io.BytesIO()
    write_xlsx(report_data, buffer)
    book = load_workbook(io.BytesIO(buffer.getvalue()))
    for sheet in book:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
    comments = [row[5] for row in book["Cases"].iter_rows(min_row=2, values_only=True)]
    assert "'@SUM(1+1) 办事太慢" in comments


def test_the_xlsx_drops_control_characters_a_worksheet_cannot_hold(report_data):
    report_data.cases[0] = replace(report_data.cases[0], feedback="已整改\x0b窗口增加人手")
    buffer = io.BytesIO()
    write_xlsx(report_data, buffer)
    feedback = [row[10] for row in load_workbook(buffer)["Cases"].iter_rows(min_row=2, values_only=True)]
    assert feedback[0] == "已整改窗口增加人手"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+8613800138000", "'+8613800138000"),
        ("-2", "'-2"),
        ("@cmd", "'@cmd"),
        ("\t=x", "'\t=x"),
        ("已整改\x0b窗口增加人手\x1b", "已整改窗口增加人手"),  # a worksheet cannot hold these
        ("\x0b=1+1", "'=1+1"),
        ("税务局", "税务局"),
        (-0.25, -0.25),
        (3, 3),
        (None, None),
    ],
)
def test_neutralise_only_touches_text_that_a_spreadsheet_would_evaluate(value, expected):
    assert neutralise(value) == expected


def test_a_quarter_without_figures_has_a_report_whose_charts_say_so(session, settings):
    data = build_report(session, "2020Q1", settings, NOW)
    assert data.figures == [] and data.trend_rates == {}
    assert "无数据 no data" in "".join(parse(render_html(data, 30)).text)


def test_a_published_report_shows_the_snapshot(session, settings, dataset):  # noqa: F811
    close_quarter(session, "2026Q3", "boss", settings, NOW)
    data = build_report(session, "2026Q3", settings, NOW + timedelta(days=1))
    assert data.published and data.closed_by == "boss"
    assert "published" in "".join(parse(render_html(data, 30)).text)


def test_a_department_report_keeps_its_rank_among_all(session, settings, dataset):  # noqa: F811
    data = build_report(session, "2026Q3", settings, NOW, department_code="A-SWJ")
    assert [f.department_code for f in data.figures] == ["A-SWJ"]
    assert set(data.trend_rates) == {"A-SWJ"}
    assert all(row.department_code == "A-SWJ" for row in data.cases)


def test_letters_name_the_department_its_figures_cases_and_change(report_data, tmp_path):
    written = write_letters(report_data, tmp_path, min_ratings=3)
    assert sorted(p.name for p in written) == ["2026Q3-A-SWJ.html", "2026Q3-B-SCJ.html", "2026Q3-C-GAJ.html"]
    letter = (tmp_path / "2026Q3-A-SWJ.html").read_text(encoding="utf-8")
    text = "".join(parse(letter).text)
    assert "税务局" in text and "66.7%" in text and "50.0%" in text and "+16.7 pp" in text
    assert "本季立案 3 件" in text and "@SUM(1+1) 办事太慢" in text
    assert "公安局" not in text


# --- the CLI, against a real database -------------------------------------------------------------


@pytest.fixture
def cli_db(fresh_db_url, settings):
    """A migrated database with a bad review (and its case) in 2026Q3, committed."""
    from models import migrate
    from models.campaigns import Campaign
    from models.cases_ops import open_case_for
    from models.db import make_engine, make_sessionmaker
    from models.departments import Department
    from models.items import ServiceItem
    from models.survey_ops import finish_survey, record_answer
    from models.surveys import Survey

    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    at = datetime(2026, 9, 18, 2, 0, tzinfo=UTC)
    with make_sessionmaker(engine)() as session:
        department = Department(code="SWJ", name="税务局")
        campaign = Campaign(name="c", status="active", seed="s", config={})
        session.add_all([department, campaign])
        session.flush()
        for n, grade in enumerate(["dissatisfied", "satisfied", "very_satisfied"]):
            item = ServiceItem(
                source="t", external_id=f"E{n}", department_id=department.id, matter="契税申报",
                phone_kind="mobile", phone_e164=f"+8613800138{n:03d}", completed_at=at,
            )
            session.add(item)
            session.flush()
            survey = Survey(
                campaign_id=campaign.id, item_id=item.id, token=f"tok{n}", department_id=department.id,
                quarter="2026Q3", language="zh-CN", channel="voice",
            )
            session.add(survey)
            session.flush()
            record_answer(session, survey, "rating", grade, channel="voice", now=at)
            finish_survey(session, survey, "complete", at)
            open_case_for(session, survey, settings, at)
        session.commit()
    engine.dispose()
    return fresh_db_url


def run(db_url, *args):
    """Invoke `returnvisit` with the cycle's commands registered (as console.cli will register them)."""
    from console.cli import main
    from console.cli_cycle import COMMANDS

    registered = dict(main.commands)
    for command in COMMANDS:
        main.add_command(command)
    try:
        return CliRunner().invoke(main, list(args), env={"RETURNVISIT_DATABASE_URL": db_url})
    finally:
        main.commands.clear()
        main.commands.update(registered)


def test_cli_cases_list_show_answer_escalate(cli_db):
    listed = run(cli_db, "cases", "list", "--quarter", "2026q3", "--json")
    assert listed.exit_code == 0, listed.output
    (case,) = [json.loads(line) for line in listed.output.splitlines()]
    assert (case["department"], case["state"], case["grade"]) == ("SWJ", "open", "dissatisfied")

    answered = run(cli_db, "cases", "answer", str(case["id"]), "--feedback", "已整改", "--actor", "officer")
    assert answered.exit_code == 0, answered.output
    assert "verification visit" in answered.output
    again = run(cli_db, "cases", "answer", str(case["id"]), "--feedback", "x", "--actor", "officer")
    assert again.exit_code == 1 and "is answered: it cannot become answered" in again.output

    refused = run(cli_db, "cases", "escalate", str(case["id"]), "--to", "interview")
    assert refused.exit_code == 2
    escalated = run(
        cli_db, "cases", "escalate", str(case["id"]), "--to", "interview", "--reason", "态度差",
        "--actor", "boss",
    )
    assert escalated.exit_code == 0, escalated.output
    # The verification visit is still to come: the decision is kept and the citizen still asked.
    assert "interview recorded; it waits for its verification visit" in escalated.output
    shown = run(cli_db, "cases", "show", str(case["id"]))
    assert shown.exit_code == 0
    assert "open -> answered" in shown.output and "answered -> answered  interview: 态度差" in shown.output
    assert "state: answered" in shown.output
    assert run(cli_db, "cases", "show", "999").exit_code == 1
    sweep = run(cli_db, "cases", "escalate", "--overdue")
    assert sweep.exit_code == 0 and json.loads(sweep.output)["escalated"] == 0


def test_cli_refuses_an_actor_longer_than_its_column_and_a_feedback_file_with_a_nul(cli_db, tmp_path):
    # PostgreSQL refuses both (SQLite stores them): a message naming the option, and nothing changes.
    (case,) = [json.loads(line) for line in run(cli_db, "cases", "list", "--json").output.splitlines()]
    long_actor = run(cli_db, "cases", "answer", str(case["id"]), "--feedback", "已整改", "--actor", "a" * 65)
    assert long_actor.exit_code == 2
    assert "--actor" in long_actor.output and "64 characters" in long_actor.output
    feedback = tmp_path / "feedback.txt"
    feedback.write_text("已整改\x00", encoding="utf-8")
    nul = run(cli_db, "cases", "answer", str(case["id"]), "--feedback-file", str(feedback), "--actor", "o")
    assert nul.exit_code == 1 and "feedback contains a NUL character" in nul.output
    closing = run(cli_db, "quarter", "close", "2026Q3", "--actor", "b" * 65)
    assert closing.exit_code == 2 and "--actor" in closing.output
    (after,) = [json.loads(line) for line in run(cli_db, "cases", "list", "--json").output.splitlines()]
    assert after["state"] == "open"
    answered = run(cli_db, "cases", "answer", str(case["id"]), "--feedback", "已整改", "--actor", "a" * 64)
    assert answered.exit_code == 0, answered.output
    assert run(cli_db, "quarter", "close", "2026Q3", "--actor", "b" * 64).exit_code == 0


def test_cli_quarter_close_reports_and_letters(cli_db, tmp_path):
    closed = run(cli_db, "quarter", "close", "2026Q3", "--actor", "boss")
    assert closed.exit_code == 0, closed.output
    assert "1 department snapshot(s)" in closed.output
    twice = run(cli_db, "quarter", "close", "2026Q3")
    assert twice.exit_code == 1 and "already closed" in twice.output
    assert run(cli_db, "quarter", "close", "2026Q9").exit_code == 1
    for odd in ("0001Q1", "9999Q4"):
        refused = run(cli_db, "quarter", "close", odd)
        assert refused.exit_code == 1 and f"quarter {odd} is out of range" in refused.output
        refused = run(cli_db, "report", odd, "--out", str(tmp_path / "odd.html"))
        assert refused.exit_code == 1 and "its year must be 1900 to 9998" in refused.output
    empty = run(cli_db, "report", "2020Q1", "--format", "html", "--out", str(tmp_path / "empty.html"))
    assert empty.exit_code == 0, empty.output
    assert "无数据 no data" in (tmp_path / "empty.html").read_text(encoding="utf-8")

    for fmt in ("html", "xlsx", "csv"):
        out = tmp_path / f"report.{fmt}"
        result = run(cli_db, "report", "2026Q3", "--format", fmt, "--department", "SWJ", "--out", str(out))
        assert result.exit_code == 0, result.output
        assert "published" in result.output and out.stat().st_size > 0
    assert parse((tmp_path / "report.html").read_text(encoding="utf-8")).elements
    assert load_workbook(tmp_path / "report.xlsx").sheetnames == SHEETS
    rows = list(csv.reader((tmp_path / "report.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert rows[1][:2] == ["SWJ", "税务局"]
    unknown = run(cli_db, "report", "2026Q3", "--department", "NOPE", "--out", str(tmp_path / "x"))
    assert unknown.exit_code == 1 and "no department" in unknown.output

    letters_dir = tmp_path / "letters"
    result = run(cli_db, "letters", "2026Q3", "--out", str(letters_dir))
    assert result.exit_code == 0, result.output
    assert [p.name for p in letters_dir.iterdir()] == ["2026Q3-SWJ.html"]


def test_case_state_values_match_the_labels():
    from console.reports.labels import CASE_STATE_LABELS

    assert set(CASE_STATE_LABELS) == {s.value for s in CaseState}


def test_the_trend_shows_published_figures_for_closed_quarters(session, settings, dataset):  # noqa: F811
    from sqlalchemy import select

    from models.surveys import Answer, Survey

    close_quarter(session, "2026Q2", "boss", settings, datetime(2026, 7, 2, tzinfo=UTC))
    satisfied = session.scalars(
        select(Survey).join(Answer, Answer.survey_id == Survey.id).where(
            Survey.quarter == "2026Q2", Answer.question == "rating", Answer.value == "satisfied"
        )
    ).one()
    satisfied.disposition = "not_eligible"  # changes the live figures of 2026Q2, not the published
    session.flush()
    data = build_report(session, "2026Q3", settings, NOW)
    assert data.trend_rates["A-SWJ"][-2:] == [0.5, pytest.approx(4 / 6)]
