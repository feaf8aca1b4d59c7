"""`returnvisit users add|list|disable` and `returnvisit console`; the translation catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from console.cli import main
from console.cli_users import console, users
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.staff import StaffUser


@pytest.fixture
def cli(tmp_path):
    """Run `returnvisit` with the users and console commands on a migrated SQLite file."""
    main.add_command(users)
    main.add_command(console)
    url = f"sqlite:///{tmp_path}/cli.db"
    engine = make_engine(url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        session.add(Department(code="SWJ", name="税务局"))
        session.commit()

    def run(*args: str, password: str | None = None):
        files = []
        if password is not None:
            secret = tmp_path / "password.txt"
            secret.write_text(password + "\n", encoding="utf-8")
            files = ["--password-file", str(secret)]
        return CliRunner().invoke(main, [*args, *files], env={"RETURNVISIT_DATABASE_URL": url},
                                  catch_exceptions=False)

    yield run, sessions
    engine.dispose()


def test_users_add_list_disable(cli):
    run, sessions = cli
    result = run("users", "add", "li.officer", "--role", "officer", "--department", "SWJ",
                 password="long-enough-1")
    assert result.exit_code == 0, result.output
    assert run("users", "add", "boss", "--role", "admin", password="long-enough-2").exit_code == 0
    listing = run("users", "list").output
    assert "li.officer\tofficer\tSWJ\tactive" in listing and "boss\tadmin\t-\tactive" in listing
    assert "long-enough" not in listing
    assert run("users", "disable", "li.officer").exit_code == 0
    with sessions() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.username == "li.officer")).one()
        assert user.active is False and user.password_hash.startswith("scrypt:")
    assert "li.officer\tofficer\tSWJ\tdisabled" in run("users", "list").output


def test_users_add_refuses_bad_input_with_a_message(cli):
    run, _ = cli
    result = run("users", "add", "x", "--role", "officer", password="long-enough-1")
    assert result.exit_code != 0 and "department" in result.output
    result = run("users", "add", "y", "--role", "admin", password="short")
    assert result.exit_code != 0 and "at least 8" in result.output
    assert run("users", "disable", "nobody").exit_code != 0


def test_console_command_serves_the_console_app(cli, monkeypatch):
    run, _ = cli
    served = {}
    monkeypatch.setattr("flask.Flask.run", lambda app, **kw: served.update(app=app, **kw))
    result = run("console", "--port", "5055")
    assert result.exit_code == 0, result.output
    assert served["port"] == 5055 and served["host"] == "127.0.0.1"
    assert "auth.login" in served["app"].view_functions


def test_wsgi_module_builds_the_console_from_the_environment(tmp_path, monkeypatch):
    import importlib
    import sys

    monkeypatch.setenv("RETURNVISIT_DATABASE_URL", f"sqlite:///{tmp_path}/wsgi.db")
    sys.modules.pop("console.wsgi", None)
    module = importlib.import_module("console.wsgi")
    assert module.app.name == "console.web"
    sys.modules.pop("console.wsgi", None)


TRANSLATIONS = Path(__file__).resolve().parents[2] / "console" / "translations"


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_compiled_catalogs_match_their_po_files(locale):
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    folder = TRANSLATIONS / locale / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as fh:
        po = {m.id: m.string for m in read_po(fh) if m.id and m.string}
    with (folder / "messages.mo").open("rb") as fh:
        mo = {m.id: m.string for m in read_mo(fh) if m.id}
    assert po == mo, "run `pybabel compile -d console/translations` (see babel.cfg)"


def test_every_interface_text_has_a_chinese_translation():
    from babel.messages.pofile import read_po

    with (TRANSLATIONS / "messages.pot").open("rb") as fh:
        wanted = {m.id for m in read_po(fh) if m.id}
    with (TRANSLATIONS / "zh" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        translated = {m.id for m in read_po(fh) if m.id and m.string}
    assert wanted - translated == set()


def test_the_catalog_template_lists_every_text_of_the_templates_and_views():
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    web = TRANSLATIONS.parent / "web"
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "_l": None, "N_": None, "gettext": None}
    found = {message[2] if isinstance(message[2], str) else message[2][0]
             for message in extract_from_dir(str(web), method_map, keywords=keywords)}
    with (TRANSLATIONS / "messages.pot").open("rb") as fh:
        listed = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(fh) if m.id}
    assert found - listed == set(), "run the pybabel extract / update / compile steps in babel.cfg"
