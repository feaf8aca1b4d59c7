"""Every route needs a login, every POST a CSRF token; roles and departments are enforced on the server."""

from __future__ import annotations

import csv
import io

import pytest

from models.settings import load_settings

# The only views that answer without a login.
# Health, readiness and metrics are for the service manager and Prometheus (metrics: allow-listed networks).
LOGIN_EXEMPT = {
    "auth.login",
    "auth.language",
    "static",
    "health.healthz",
    "health.readyz",
    "store_metrics.metrics",
}


def _url(rule) -> str:
    values = {}
    for name in rule.arguments:
        converter = rule._converters[name].__class__.__name__
        numeric = converter in ("IntegerConverter", "RowIdConverter")  # the console's <int:> is a RowId
        values[name] = 1 if numeric else ("2026Q4" if name == "q" else "x")
    if rule.endpoint == "campaigns.change":
        values["operation"] = "pause"
    if rule.endpoint == "quarter.report":
        values["fmt"] = "csv"
    if rule.endpoint == "simulator.recording":
        values["sid"] = "RE" + "0" * 32
    _domain, path = rule.build(values, append_unknown=False)
    return path


def _rules(app, method):
    return [r for r in app.url_map.iter_rules() if method in r.methods and r.endpoint != "static"]


def test_every_route_but_the_login_needs_a_login(console_app, client):
    rules = _rules(console_app, "GET") + _rules(console_app, "POST")
    assert len(rules) > 30
    views = console_app.view_functions
    exempt = {r.endpoint for r in rules if getattr(views[r.endpoint], "login_exempt", False)}
    assert exempt == LOGIN_EXEMPT - {"static"}
    token = client.csrf()
    for rule in rules:
        if rule.endpoint in LOGIN_EXEMPT:
            continue
        url = _url(rule)
        if "GET" in rule.methods:
            response = client.get(url)
        else:
            response = client.post(url, {"csrf_token": token}, csrf=False)
        if url.startswith("/api/"):
            assert response.status_code == 401, url
        else:
            assert response.status_code == 302, (rule.endpoint, url, response.status_code)
            assert response.headers["Location"].startswith("/login"), url


def test_every_post_route_refuses_a_missing_csrf_token(console_app, admin):
    posts = _rules(console_app, "POST")
    assert {r.endpoint for r in posts} >= {
        "auth.login", "auth.logout", "campaigns.create", "cases.answer", "quarter.close", "optouts.add",
        "items.reveal", "simulator.call_keys",
    }
    for rule in posts:
        response = admin.post(_url(rule), {"x": "1"}, csrf=False)
        assert response.status_code == 400, rule.endpoint
        assert "csrf" in response.get_data(as_text=True).lower() or response.status_code == 400


def test_a_wrong_csrf_token_is_refused_too(admin):
    response = admin.post("/optouts", {"phone": "13800138000", "reason": "asked", "csrf_token": "forged"},
                          csrf=False)
    assert response.status_code == 400


@pytest.mark.parametrize(
    "url",
    ["/departments", "/campaigns", "/campaigns/new", "/optouts", "/audit", "/simulator", "/items/import"],
)
def test_an_officer_cannot_reach_admin_pages(officer, url):
    assert officer.get(url).status_code == 403


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/departments", {"code": "X", "name": "X", "kind": "service"}),
        ("/campaigns/new", {"name": "c"}),
        ("/optouts", {"phone": "13800138000", "channel": "all", "reason": "r"}),
        ("/quarter/close", {"q": "2025Q1"}),
        ("/simulator/call", {"item": "1"}),
        ("/simulator/sms", {"item": "1"}),
    ],
)
def test_an_officer_cannot_post_to_admin_actions(officer, url, data):
    assert officer.post(url, data).status_code == 403


@pytest.mark.parametrize("url", ["/audit", "/campaigns/new", "/departments"])
def test_admin_only_pages_and_forms(supervisor, admin, url):
    expected = 200
    if url in ("/audit", "/campaigns/new"):
        assert supervisor.get(url).status_code == 403
    else:
        assert supervisor.get(url).status_code == expected
    assert admin.get(url).status_code == expected


def test_supervisor_cannot_add_departments_or_campaigns(supervisor):
    assert supervisor.post("/departments", {"code": "X", "name": "X", "kind": "service"}).status_code == 403
    assert supervisor.post("/campaigns/new", {"name": "c"}).status_code == 403


def test_an_officer_sees_only_own_items(officer, create_item, departments):
    own = create_item(department_id=departments["SWJ"].id, external_id="OWN-1")
    other = create_item(department_id=departments["SCJ"].id, external_id="OTHER-1")
    page = officer.get("/items").get_data(as_text=True)
    assert "OWN-1" in page and "OTHER-1" not in page
    assert officer.get(f"/items/{own.id}").status_code == 200
    assert officer.get(f"/items/{other.id}").status_code == 404
    assert f'/items/{other.id}"' not in officer.get("/items?q=OTHER-1").get_data(as_text=True)
    assert f'/items/{other.id}"' not in officer.get("/items?department=SCJ").get_data(as_text=True)


def test_an_officer_sees_only_own_results_and_exports(officer, make_result):
    own = make_result("SWJ", comment="own department comment")
    other = make_result("SCJ", comment="other department comment")
    page = officer.get("/results").get_data(as_text=True)
    assert "own department comment" in page and "other department comment" not in page
    assert officer.get(f"/results/{own.id}").status_code == 200
    assert officer.get(f"/results/{other.id}").status_code == 404
    export = officer.get("/results/export.csv?department=SCJ").get_data(as_text=True)
    assert "other department comment" not in export
    export = officer.get("/results/export.csv").get_data(as_text=True)
    assert "own department comment" in export and "other department comment" not in export


def test_an_officer_sees_only_own_cases_and_cannot_act_on_others(officer, make_case):
    own = make_case("SWJ")
    other = make_case("SCJ")
    page = officer.get("/cases").get_data(as_text=True)
    assert f'/cases/{own.id}"' in page and f'/cases/{other.id}"' not in page
    assert officer.get(f"/cases/{other.id}").status_code == 404
    assert officer.post(f"/cases/{other.id}/answer", {"feedback": "done"}).status_code == 404
    assert other.state == "open"
    export = officer.get("/cases/export.csv").get_data(as_text=True)
    lines = export.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{own.id},SWJ")


def test_an_officer_sees_only_own_quarter_figures_and_dashboard(officer, make_result):
    make_result("SWJ")
    make_result("SCJ")
    figures = officer.get("/quarter/2026Q4/figures.csv").get_data(as_text=True)
    assert "SWJ" in figures and "SCJ" not in figures
    page = officer.get("/quarter?q=2026Q4").get_data(as_text=True)
    assert "税务局" in page and "市场监督管理局" not in page
    live = officer.get("/api/dashboard").get_json()
    assert {row["department"] for row in live["live"]} <= {"税务局"}


def _ranks(response) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff")))
    return {row["department_code"]: row["rank"] for row in rows}


# The console's settings, ranking a department from its first rating on (the tests make a few).
RANK_FROM_ONE = load_settings(env={}, overrides={"cases": {"min_ratings_to_rank": 1}})


@pytest.mark.parametrize("settings", [RANK_FROM_ONE], ids=["rank-from-one"])
def test_an_officer_sees_own_rank_among_all_departments(officer, supervisor, make_result):
    for _ in range(2):
        make_result("SWJ", grade="dissatisfied")
        make_result("SCJ", grade="very_satisfied")
    assert _ranks(supervisor.get("/quarter/2026Q4/figures.csv")) == {"SCJ": "1", "SWJ": "2"}
    assert _ranks(officer.get("/quarter/2026Q4/figures.csv")) == {"SWJ": "2"}
    page = officer.get("/quarter?q=2026Q4").get_data(as_text=True)
    assert "<tr><td>2</td>" in page and "<tr><td>1</td>" not in page


def test_the_dashboard_api_needs_a_login(client):
    response = client.get("/api/dashboard")
    assert response.status_code == 401 and response.get_json() == {"error": "login required"}


def test_a_disabled_user_is_logged_out_on_the_next_request(officer, staff, session):
    staff["swj"].active = False
    session.flush()
    response = officer.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_security_headers_and_cookie_flags(client, staff):
    response = client.login("admin")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_session_cookie_is_secure_in_production(settings, session_factory):
    from console.web import create_console_app
    from models.settings import load_settings

    secrets = {"RETURNVISIT_SECRET_KEY": "s" * 32, "RETURNVISIT_INTAKE_API_TOKEN": "t",
               "RETURNVISIT_TWILIO_ACCOUNT_SID": "AC1", "RETURNVISIT_TWILIO_AUTH_TOKEN": "x"}
    production = load_settings(env=secrets, overrides={"app": {"mode": "production"},
                                                       "database": {"url": settings.database.url}})
    app = create_console_app(production, session_factory=session_factory)
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_pages_use_no_external_assets(admin):
    for url in ["/", "/items", "/results", "/cases", "/quarter", "/simulator", "/campaigns"]:
        page = admin.get(url).get_data(as_text=True)
        for attribute in ('src="http', "src='http", 'href="http', "href='http", 'src="//', 'href="//'):
            assert attribute not in page, (url, attribute)


def test_static_assets_are_served_without_a_login_and_without_a_cdn(client):
    for name in ("console.css", "dashboard.js", "keypad.js"):
        with client.get(f"/static/{name}") as response:
            text = response.get_data(as_text=True)
            assert response.status_code == 200, name
        assert "http://" not in text and "https://" not in text
