"""Login with hashed passwords, a delay on every failure, a lockout after five failures in a row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from models.base import utcnow
from models.staff import AuditEvent


def test_login_with_the_right_password_opens_the_dashboard(client, staff):
    response = client.login("admin")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "admin" in client.get("/").get_data(as_text=True)


def test_login_redirects_to_the_page_asked_for_but_never_off_site(client, staff):
    token = client.csrf()
    response = client.raw.post("/login", data={"username": "admin", "password": "correct-horse-1",
                                                "next": "/cases", "csrf_token": token})
    assert response.headers["Location"] == "/cases"
    # Browsers drop tabs and newlines from a URL: "/\t/evil.example" would be "//evil.example".
    for target in ["//evil.example/x", "/\t/evil.example", "/\n/evil.example", "/ /evil.example",
                   "/\u3000/evil.example", "https://evil.example/", "/\\evil.example", "cases"]:
        client.post("/logout")
        response = client.post("/login", {"username": "admin", "password": "correct-horse-1", "next": target})
        assert response.headers["Location"] == "/", target


def test_a_wrong_password_is_refused_slowly_and_audited(client, staff, console_app, session, monkeypatch):
    slept = []
    monkeypatch.setattr("console.web.auth.time.sleep", slept.append)
    console_app.config["LOGIN_FAILURE_DELAY"] = 1.5
    response = client.login("admin", "wrong-password")
    assert response.status_code == 401
    assert slept == [1.5]
    response = client.login("nobody", "wrong-password")
    assert response.status_code == 401 and slept == [1.5, 1.5]
    session.refresh(staff["admin"])
    assert staff["admin"].failed_logins == 1
    actions = session.scalars(select(AuditEvent.action)).all()
    assert actions.count("login_failed") == 2


def test_five_failures_lock_the_account_for_fifteen_minutes(client, staff, session):
    for _ in range(5):
        assert client.login("swj", "wrong-password").status_code == 401
    user = staff["swj"]
    session.refresh(user)
    assert user.locked_until is not None
    assert timedelta(minutes=14) < user.locked_until - utcnow() <= timedelta(minutes=15)
    # Even the right password is refused while locked.
    response = client.login("swj")
    assert response.status_code == 401 and "锁定" in response.get_data(as_text=True)
    user.locked_until = utcnow() - timedelta(seconds=1)
    session.flush()
    assert client.login("swj").status_code == 302
    session.refresh(user)
    assert user.failed_logins == 0 and user.locked_until is None


def test_a_success_resets_the_failure_count(client, staff, session):
    for _ in range(4):
        client.login("swj", "wrong-password")
    assert client.login("swj").status_code == 302
    session.refresh(staff["swj"])
    assert staff["swj"].failed_logins == 0


def test_a_disabled_user_cannot_log_in(client, staff, session):
    staff["scj"].active = False
    session.flush()
    assert client.login("scj").status_code == 401


def test_logout_ends_the_session(admin):
    assert admin.post("/logout").status_code == 302
    assert admin.get("/").status_code == 302


def test_login_page_and_language_switch_work_without_login(client):
    assert client.get("/login").status_code == 200
    response = client.post("/language", {"lang": "en", "next": "/login"})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "Log in" in client.get("/login").get_data(as_text=True)
    client.post("/language", {"lang": "zh_CN", "next": "/login"})
    assert "登录" in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize(
    ("page", "shown"),
    [
        ("/simulator/call", "/simulator"),  # the answer to a form: the form's own page
        ("/items/7/reveal", "/items/7"),
        ("/cases/4/answer", "/cases/4"),
        ("/results?grade=satisfied", "/results?grade=satisfied"),  # an ordinary page stays as it is
        ("/language", "/"),
    ],
)
def test_switching_language_after_a_form_shows_the_forms_page(admin, page, shown):
    response = admin.post("/language", {"lang": "en", "next": page})
    assert response.status_code == 302 and response.headers["Location"] == shown
