"""Console fixtures: the console app on the savepoint session, users of every role, logged-in clients.

Passwords are hashed with a cheap pbkdf2 here (the console verifies any werkzeug hash), so a test
that logs in four users stays fast.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

PASSWORD = "correct-horse-1"
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: Playwright tests driving Debian's Chromium")


@pytest.fixture
def console_app(settings, session_factory):
    """The staff console bound to the test transaction, failed logins not slowed down."""
    from console.web import create_console_app

    app = create_console_app(settings, session_factory=session_factory)
    app.config.update(TESTING=True, LOGIN_FAILURE_DELAY=0)
    return app


class ConsoleClient:
    """A test client that adds the CSRF token to its posts (unless told not to)."""

    def __init__(self, app) -> None:
        self.raw = app.test_client()

    def csrf(self) -> str:
        page = self.raw.get("/login").get_data(as_text=True)
        return _CSRF.search(page).group(1)

    def get(self, *args: Any, **kwargs: Any):
        return self.raw.get(*args, **kwargs)

    def post(self, url: str, data: dict | None = None, *, csrf: bool = True, **kwargs: Any):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf())
        return self.raw.post(url, data=data, **kwargs)

    def login(self, username: str, password: str = PASSWORD):
        return self.post("/login", {"username": username, "password": password})


@pytest.fixture
def departments(session, create_department):
    """Two departments: the taxation bureau (SWJ) and market supervision (SCJ)."""
    return {
        "SWJ": create_department(code="SWJ", name="税务局"),
        "SCJ": create_department(code="SCJ", name="市场监督管理局"),
    }


@pytest.fixture
def staff(session, departments):
    """One user of each role; the officers belong to SWJ and SCJ."""
    from models.staff import StaffUser

    users = {}
    for name, role, dept in [
        ("admin", "admin", None),
        ("super", "supervisor", None),
        ("swj", "officer", "SWJ"),
        ("scj", "officer", "SCJ"),
    ]:
        user = StaffUser(
            username=name,
            password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
            role=role,
            department_id=departments[dept].id if dept else None,
        )
        session.add(user)
        users[name] = user
    session.flush()
    return users


@pytest.fixture
def client(console_app):
    """An anonymous console client."""
    return ConsoleClient(console_app)


@pytest.fixture
def login_as(console_app, staff):
    """Factory: a console client logged in as one of the staff fixture's users."""

    def make(username: str) -> ConsoleClient:
        console = ConsoleClient(console_app)
        response = console.login(username)
        assert response.status_code == 302, response.get_data(as_text=True)
        return console

    return make


@pytest.fixture
def admin(login_as):
    return login_as("admin")


@pytest.fixture
def supervisor(login_as):
    return login_as("super")


@pytest.fixture
def officer(login_as):
    """The SWJ (taxation bureau) officer."""
    return login_as("swj")


@pytest.fixture
def make_result(session, create_item, create_survey, departments):
    """Factory: a finished survey of a department with answers (rating, categories, comment)."""
    from models.surveys import Answer, SurveyState

    def make(code: str = "SWJ", grade: str = "satisfied", categories: str | None = None,
             comment: str | None = None, recording: str | None = None, quarter: str = "2026Q4",
             phone: str | None = None, **item_fields: Any):
        if phone:
            item_fields.update(phone_e164=phone, phone_raw=phone)
        item = create_item(department_id=departments[code].id, **item_fields)
        survey, _attempt = create_survey(item=item, quarter=quarter)
        survey.state = SurveyState.DONE
        survey.disposition = "complete"
        survey.finished_at = datetime(2026, 11, 12, 3, 0, tzinfo=UTC)
        answers = [("rating", grade, None)]
        if categories:
            answers.append(("categories", categories, None))
        if recording:
            answers.append(("comment", recording, 12))
        elif comment:
            answers.append(("comment", comment, None))
        for question, value, duration in answers:
            session.add(Answer(
                survey_id=survey.id, question=question, value=value, channel="voice",
                recording_url=value if duration else None, recording_duration=duration,
            ))
        session.flush()
        return survey

    return make


@pytest.fixture
def make_case(session, make_result, now):
    """Factory: an open case of a bad review in a department."""
    from datetime import timedelta

    from models.cases import Case, CaseEvent

    def make(code: str = "SWJ", **fields: Any):
        survey = make_result(code, grade="dissatisfied", categories="delay", comment="太慢了")
        case = Case(
            survey_id=survey.id, department_id=survey.department_id, quarter=survey.quarter,
            grade="dissatisfied", categories=["delay"], comment="太慢了", state="open",
            opened_at=now, due_at=now + timedelta(days=21), **fields,
        )
        session.add(case)
        session.flush()
        session.add(CaseEvent(case_id=case.id, at=now, actor="system", from_state=None, to_state="open"))
        session.flush()
        return case

    return make


ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell that the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def save_screenshot(page, name: str) -> Path:
    """Save a screenshot of a failing browser test under tests/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path
