"""Console security, enumerated from the app's url_map so a new route cannot slip through.

* Roles: every route is in ACCESS with the roles that may use it; each role is tried on each route.
* Department scoping: an officer sees nothing of another department on any page, export or API, and
  gets 404 for another department's row.
* CSRF: every POST form a page renders carries the token (the POST routes refusing a missing one are
  in test_console_access.py).
* Login throttling: failures count per account, across clients and spellings of the name.
* Exports neutralise formulas (=, +, -, @ and friends) in every CSV and XLSX download.
* SQL-injection strings in every search and filter field give normal answers: 200, no error, and the
  same rows as a harmless value that matches nothing.
"""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from models.cases import Case
from models.optouts import OptOut
from models.staff import StaffUser

ALL = frozenset({"admin", "supervisor", "officer"})
STAFF = frozenset({"admin", "supervisor"})
ADMIN = frozenset({"admin"})
PUBLIC = None  # answers without a login

# Every console route (endpoint, method) and the roles that may use it. A route missing here fails
# test_every_console_route_has_declared_roles: decide who may use it, then add it.
ACCESS: dict[tuple[str, str], frozenset[str] | None] = {
    ("auth.login", "GET"): PUBLIC,
    ("auth.login", "POST"): PUBLIC,
    ("auth.language", "POST"): PUBLIC,
    ("auth.logout", "POST"): ALL,
    ("health.healthz", "GET"): PUBLIC,
    ("health.readyz", "GET"): PUBLIC,
    ("store_metrics.metrics", "GET"): PUBLIC,  # guarded by metrics.allow_networks instead
    ("dashboard.index", "GET"): ALL,
    ("dashboard.api", "GET"): ALL,
    ("departments.index", "GET"): STAFF,
    ("departments.save", "POST"): ADMIN,
    ("items.index", "GET"): ALL,
    ("items.detail", "GET"): ALL,
    ("items.reveal", "POST"): STAFF,
    ("items.upload", "GET"): STAFF,
    ("items.upload", "POST"): STAFF,
    ("campaigns.index", "GET"): STAFF,
    ("campaigns.detail", "GET"): STAFF,
    ("campaigns.new", "GET"): ADMIN,
    ("campaigns.create", "POST"): ADMIN,
    ("campaigns.edit", "GET"): ADMIN,
    ("campaigns.update", "POST"): ADMIN,
    ("campaigns.change", "POST"): ADMIN,
    ("campaigns.test_contact", "POST"): ADMIN,
    ("results.index", "GET"): ALL,
    ("results.export", "GET"): ALL,
    ("results.detail", "GET"): ALL,
    ("cases.index", "GET"): ALL,
    ("cases.export", "GET"): ALL,
    ("cases.detail", "GET"): ALL,
    ("cases.answer", "POST"): ALL,
    ("cases.escalate", "POST"): STAFF,
    ("cases.close", "POST"): STAFF,
    ("quarter.index", "GET"): ALL,
    ("quarter.close", "POST"): STAFF,
    ("quarter.figures_csv", "GET"): ALL,
    ("quarter.report", "GET"): ALL,
    ("quarter.letter", "GET"): ALL,
    ("optouts.index", "GET"): STAFF,
    ("optouts.add", "POST"): STAFF,
    ("optouts.remove", "POST"): STAFF,
    ("audit.index", "GET"): ADMIN,
    ("simulator.index", "GET"): STAFF,
    ("simulator.call_start", "POST"): STAFF,
    ("simulator.call_keys", "POST"): STAFF,
    ("simulator.call_record", "POST"): STAFF,
    ("simulator.call_hangup", "POST"): STAFF,
    ("simulator.call_clear", "POST"): STAFF,
    ("simulator.sms_start", "POST"): STAFF,
    ("simulator.sms_reply", "POST"): STAFF,
    ("simulator.sms_clear", "POST"): STAFF,
    ("simulator.recording", "GET"): ALL,  # a generated tone: no citizen's data
}
USERS = {"admin": "admin", "supervisor": "super", "officer": "swj"}  # the staff fixture's names
# What only SCJ's rows show; never on a page of an SWJ officer (queries may echo "OTHER-1" itself).
OTHER_MARKERS = ("市场监督管理局", "OTHER-MATTER", "other department comment")


def _methods(rule) -> set[str]:
    return set(rule.methods) - {"HEAD", "OPTIONS"}


def _routes(app) -> dict[tuple[str, str], object]:
    return {
        (rule.endpoint, method): rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in _methods(rule)
    }


def test_every_console_route_has_declared_roles(console_app):
    routes = _routes(console_app)
    undeclared = sorted(set(routes) - set(ACCESS))
    assert not undeclared, f"console routes without declared roles (add them to ACCESS): {undeclared}"
    gone = sorted(set(ACCESS) - set(routes))
    assert not gone, f"ACCESS names routes that no longer exist: {gone}"
    views = console_app.view_functions
    exempt = {endpoint for endpoint, _ in routes if getattr(views[endpoint], "login_exempt", False)}
    assert exempt == {endpoint for (endpoint, _), roles in ACCESS.items() if roles is PUBLIC}


@pytest.fixture
def rows(session, departments, create_item, make_result, make_case, create_campaign, now):
    """One row of every kind in each department (SWJ: the officer's own; SCJ: another's)."""
    own_item = create_item(department_id=departments["SWJ"].id, external_id="OWN-1")
    create_item(department_id=departments["SCJ"].id, external_id="OTHER-1", matter="OTHER-MATTER")
    own_result = make_result("SWJ", comment="own department comment")
    other_result = make_result("SCJ", comment="other department comment")
    own_case, other_case = make_case("SWJ"), make_case("SCJ")
    campaign = create_campaign()
    optout = OptOut(
        phone_e164="+8613800138000", channel="all", source="staff", reason="asked", created_at=now
    )
    session.add(optout)
    session.flush()
    own = {
        "item_id": own_item.id,
        "survey_id": own_result.id,
        "case_id": own_case.id,
        "campaign_id": campaign.id,
        "optout_id": optout.id,
        "q": "2026Q4",
        "code": "SWJ",
        "fmt": "csv",
        "sid": "RE" + "0" * 32,
        "operation": "pause",
    }
    other = {
        **own,
        "item_id": own_item.id + 1,
        "survey_id": other_result.id,
        "case_id": other_case.id,
        "code": "SCJ",
    }
    return own, other


def _url(rule, values: dict) -> str:
    _domain, path = rule.build({name: values[name] for name in rule.arguments}, append_unknown=False)
    return path


def _as(login_as, role: str):
    return login_as(USERS[role])


@pytest.mark.parametrize(("endpoint", "method"), sorted(k for k, v in ACCESS.items() if v is not PUBLIC))
def test_each_role_reaches_exactly_the_routes_declared_for_it(console_app, login_as, rows, endpoint, method):
    rule = _routes(console_app)[(endpoint, method)]
    url = _url(rule, rows[0])
    allowed = ACCESS[(endpoint, method)]
    # Refused roles first, so an allowed POST cannot change what they would have been refused.
    for role in sorted(ALL - allowed) + sorted(allowed):
        client = _as(login_as, role)
        response = client.get(url) if method == "GET" else client.post(url, {})
        if role in allowed:
            assert response.status_code not in (401, 403), (role, url, response.status_code)
            assert response.status_code < 500, (role, url, response.status_code)
            if method == "GET":
                assert response.status_code == 200, (role, url, response.status_code)
        else:
            assert response.status_code == 403, (role, url, response.status_code)


OFFICER_GETS = sorted(
    endpoint
    for (endpoint, method), roles in ACCESS.items()
    if method == "GET" and roles is not PUBLIC and "officer" in roles
)


@pytest.mark.parametrize("endpoint", OFFICER_GETS)
def test_an_officer_sees_nothing_of_another_department_anywhere(console_app, officer, rows, endpoint):
    rule = _routes(console_app)[(endpoint, "GET")]
    own, other = rows
    for query in ("", "?department=SCJ", "?q=OTHER-1", "?state=all"):
        response = officer.get(_url(rule, own) + query)
        if response.status_code == 404 and query:
            continue  # refusing another department (or an unknown quarter) outright is fine too
        assert response.status_code == 200, (endpoint, query, response.status_code)
        assert not any(marker in _text_of(response) for marker in OTHER_MARKERS), (endpoint, query)
    if set(rule.arguments) & {"item_id", "survey_id", "case_id", "code"}:
        assert officer.get(_url(rule, other)).status_code == 404, endpoint


def _text_of(response) -> str:
    if response.mimetype.endswith("spreadsheetml.sheet"):
        book = load_workbook(io.BytesIO(response.get_data()))
        return "\n".join(str(c.value) for sheet in book for row in sheet.iter_rows() for c in row if c.value)
    if response.mimetype.startswith("audio/"):
        return ""
    return response.get_data(as_text=True)


def test_an_officer_cannot_act_on_another_departments_case(officer, rows, session):
    _own, other = rows
    response = officer.post(f"/cases/{other['case_id']}/answer", {"feedback": "整改完毕"})
    assert response.status_code == 404
    session.expire_all()
    assert session.get(Case, other["case_id"]).state == "open"


def test_an_officer_cannot_get_another_departments_report(officer, rows):
    for fmt in ("html", "csv", "xlsx"):
        assert officer.get(f"/quarter/2026Q4/report.{fmt}?department=SCJ").status_code == 404


# --- CSRF on every form a page renders ------------------------------------------------------------


class _Forms(HTMLParser):
    """Collect each form's method, action and the names of its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "form":
            self.forms.append(
                {
                    "method": (values.get("method") or "get").lower(),
                    "action": values.get("action"),
                    "inputs": set(),
                }
            )
        elif tag in ("input", "button", "select", "textarea") and self.forms:
            self.forms[-1]["inputs"].add(values.get("name"))


def test_every_post_form_on_every_page_carries_the_csrf_token(console_app, admin, rows):
    seen = 0
    for (endpoint, method), rule in _routes(console_app).items():
        if method != "GET":
            continue
        response = admin.get(_url(rule, rows[0]))
        if response.mimetype != "text/html":
            continue
        parser = _Forms()
        parser.feed(response.get_data(as_text=True))
        for form in parser.forms:
            if form["method"] == "post":
                seen += 1
                assert "csrf_token" in form["inputs"], (endpoint, form["action"])
    assert seen > 15  # the pages really have forms: login, logout, case actions, opt-outs, ...


# --- login throttling ------------------------------------------------------------------------------


def test_failures_count_per_account_across_clients_and_spellings(client, console_app, staff, session):
    def fresh_client(app):
        return type(client)(app)  # a new browser: its own cookies and CSRF token

    for name in ("swj", "SWJ", " swj ", "Swj", "sWj"):  # five clients, five spellings, one account
        assert fresh_client(console_app).login(name, "wrong-password").status_code == 401
    session.expire_all()
    assert session.get(StaffUser, staff["swj"].id).locked_until is not None
    assert fresh_client(console_app).login("swj").status_code == 401  # the right password, locked
    assert fresh_client(console_app).login("scj").status_code == 302  # other accounts unaffected


def test_an_unknown_name_is_answered_like_a_wrong_password(client, staff, console_app, monkeypatch):
    slept = []
    monkeypatch.setattr("console.web.auth.time.sleep", slept.append)
    console_app.config["LOGIN_FAILURE_DELAY"] = 1.0
    unknown = client.login("nobody", "x")
    wrong = client.login("admin", "x")
    assert unknown.status_code == wrong.status_code == 401 and slept == [1.0, 1.0]
    assert _flash(unknown) == _flash(wrong)


def _flash(response) -> str:
    return re.sub(
        r"\s+",
        " ",
        re.search(r'class="flash[^"]*"[^>]*>(.*?)<', response.get_data(as_text=True), re.S).group(1),
    )


# --- exports neutralise formulas -------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1", "＝1+1"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


@pytest.fixture
def formula_rows(session, create_department, create_item, create_survey, now):
    """A department, item, result and case whose every text a citizen or source system wrote is a formula."""
    from datetime import timedelta

    from models.cases import CaseEvent
    from models.surveys import Answer

    department = create_department(code="=cmd|' /C calc'!A0", name=FORMULAS[0])
    rows = []
    for n, text in enumerate(FORMULAS):
        item = create_item(
            department_id=department.id, external_id=f"{text}#{n}", matter=text, citizen_name=text
        )
        survey, _ = create_survey(item=item, quarter="2026Q4")
        survey.state, survey.disposition = "done", "complete"
        session.add_all(
            [
                Answer(survey_id=survey.id, question="rating", value="dissatisfied", channel="sms"),
                Answer(survey_id=survey.id, question="comment", value=text, channel="sms"),
            ]
        )
        case = Case(
            survey_id=survey.id,
            department_id=department.id,
            quarter="2026Q4",
            grade="dissatisfied",
            categories=["delay"],
            comment=text,
            feedback=text,
            state="answered",
            opened_at=now,
            due_at=now + timedelta(days=21),
            escalation_reason=text,
        )
        session.add(case)
        session.flush()
        session.add(CaseEvent(case_id=case.id, at=now, actor="system", from_state=None, to_state="open"))
        rows.append(case)
    session.flush()
    return department


def _csv_cells(response) -> list[str]:
    text = response.get_data(as_text=True).lstrip("\ufeff")
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "url",
    [
        "/results/export.csv",
        "/cases/export.csv?state=all",
        "/quarter/2026Q4/figures.csv",
        "/quarter/2026Q4/report.csv",
    ],
)
def test_csv_exports_neutralise_formulas(admin, formula_rows, url):
    response = admin.get(url)
    assert response.status_code == 200
    cells = _csv_cells(response)
    dangerous = [c for c in cells if c.startswith(FORMULA_STARTS) and not _is_number(c)]
    assert not dangerous, (url, dangerous)
    assert any(c.startswith("'=HYPERLINK") for c in cells), url  # the data really is in the export


def test_xlsx_report_neutralises_formulas(admin, formula_rows):
    response = admin.get("/quarter/2026Q4/report.xlsx")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.get_data()))
    cells = [cell for sheet in book for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert not [t for t in texts if t.startswith(FORMULA_STARTS)]
    assert "'" + FORMULAS[0] in texts and "'@SUM(A1:A9)" in texts


# --- SQL injection in every search and filter field ------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "1; DROP TABLE service_items; --",
    "%' OR '%'='",
    "') OR ('a'='a",
    "1 UNION SELECT username, password_hash FROM staff_users --",
    "%",
    "_",
    "*",
    "\\",
    "'; SELECT pg_sleep(5); --",
    "OWN-1' --",
    "2026Q4' OR 'x'='x",
    "9" * 30,
    "-1",
    "1e9",
    "２",
]
# (page, field) for every search and filter field of the console; None: the quarter is in the path.
FIELDS = [
    ("/items", "q"),
    ("/items", "department"),
    ("/items", "page"),
    ("/results", "department"),
    ("/results", "quarter"),
    ("/results", "grade"),
    ("/results", "category"),
    ("/results", "page"),
    ("/results/export.csv", "department"),
    ("/results/export.csv", "quarter"),
    ("/cases", "department"),
    ("/cases", "state"),
    ("/cases", "page"),
    ("/cases/export.csv", "department"),
    ("/cases/export.csv", "state"),
    ("/audit", "action"),
    ("/audit", "actor"),
    ("/audit", "page"),
    ("/optouts", "q"),
    ("/optouts", "all"),
    ("/optouts", "page"),
    ("/quarter", "q"),
    ("/quarter/2026Q4/report.csv", "department"),
    ("/login", "next"),
]


def _row_count(response) -> int:
    if response.mimetype == "text/csv":
        return len(response.get_data(as_text=True).strip().splitlines())
    return response.get_data(as_text=True).count("<tr")


@pytest.mark.parametrize(("page", "field"), FIELDS, ids=[f"{p}?{f}" for p, f in FIELDS])
def test_injection_strings_in_search_and_filter_fields_give_normal_answers(admin, rows, page, field):
    harmless = admin.get(page, query_string={field: "zz-matches-nothing"})
    assert harmless.status_code in (200, 404)
    for text in INJECTIONS:
        response = admin.get(page, query_string={field: text})
        body = response.get_data(as_text=True)
        assert response.status_code == harmless.status_code, (page, field, text, response.status_code)
        assert "Traceback" not in body and "SQL" not in body and "syntax" not in body.lower()
        assert _row_count(response) == _row_count(harmless), (page, field, text)


@pytest.mark.parametrize(("page", "field"), FIELDS, ids=[f"{p}?{f}" for p, f in FIELDS])
def test_a_nul_in_any_field_is_refused_with_a_clear_error(admin, rows, page, field):
    response = admin.get(page, query_string={field: "OWN\x001"})
    assert response.status_code == 400
    assert "无法处理此请求" in response.get_data(as_text=True)


def test_a_nul_in_a_path_part_or_a_form_is_refused_too(admin, rows):
    assert admin.get("/quarter/2026Q4/letter/SWJ%00.html").status_code == 400
    assert (
        admin.post("/optouts", {"phone": "13800138000", "channel": "all", "reason": "a\x00b"}).status_code
        == 400
    )


def test_injection_strings_in_path_parts_give_not_found(admin, rows):
    for text in ("2026Q4' OR '1'='1", "2026Q4;--", "%27"):
        assert admin.get(f"/quarter/{text}/figures.csv").status_code == 404
    response = admin.get("/quarter/2026Q4/letter/SWJ' OR '1'='1.html")
    assert response.status_code == 404


def test_injection_strings_leave_the_store_as_it_was(admin, rows, session):
    before = session.scalars(select(StaffUser.username).order_by(StaffUser.id)).all()
    for text in INJECTIONS:
        admin.get("/items", query_string={"q": text})
    session.expire_all()
    assert session.scalars(select(StaffUser.username).order_by(StaffUser.id)).all() == before


HUGE = "99999999999999999999"  # beyond any database integer


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/cases/{HUGE}"),
        ("post", f"/cases/{HUGE}/answer"),
        ("post", f"/cases/{HUGE}/escalate"),
        ("post", f"/cases/{HUGE}/close"),
        ("get", f"/campaigns/{HUGE}"),
        ("get", f"/items/{HUGE}"),
        ("post", f"/items/{HUGE}/reveal"),
        ("get", f"/results/{HUGE}"),
        ("post", f"/optouts/{HUGE}/remove"),
    ],
)
def test_an_id_beyond_the_databases_integers_is_not_found(admin, method, path):
    response = admin.get(path) if method == "get" else admin.post(path, {"reason": "x", "feedback": "x"})
    assert response.status_code == 404, (path, response.status_code)
