"""Configuration: defaults, site file, environment secrets, unknown and missing keys."""

import logging
import tomllib

import pytest

from models.settings import DEV_SECRETS, ENV_KEYS, EXAMPLE_PATH, ConfigError, load_settings


def site(tmp_path, text):
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_without_a_site_file():
    settings = load_settings(env={})
    assert settings.app.mode == "development"
    assert settings.database.url.startswith("sqlite:///")
    assert settings.cases.due_working_days == 15
    assert settings.app.tz.key == "Asia/Shanghai"


def test_site_file_overrides_defaults_and_keeps_the_rest(tmp_path):
    path = site(tmp_path, '[app]\norg = "渝北区政务服务中心"\n[cases]\ndue_working_days = 5\n')
    settings = load_settings(path, env={})
    assert settings.app.org == "渝北区政务服务中心"
    assert settings.cases.due_working_days == 5
    assert settings.cases.min_ratings_to_rank == 30


def test_site_file_is_named_by_the_environment(tmp_path):
    path = site(tmp_path, '[app]\norg = "X"\n')
    assert load_settings(env={"RETURNVISIT_CONFIG": str(path)}).app.org == "X"


def test_secrets_come_from_the_environment(tmp_path):
    settings = load_settings(
        env={"RETURNVISIT_TWILIO_AUTH_TOKEN": "tok", "RETURNVISIT_DATABASE_URL": "sqlite:///x.db"}
    )
    assert settings.twilio.auth_token == "tok"
    assert settings.database.url == "sqlite:///x.db"


def test_unknown_keys_warn_with_their_name(tmp_path, caplog):
    path = site(tmp_path, "[app]\norgg = 1\n[nosuch]\nx = 2\n")
    with caplog.at_level(logging.WARNING):
        load_settings(path, env={})
    assert "app.orgg" in caplog.text
    assert "nosuch" in caplog.text


def test_wrong_type_names_the_key(tmp_path):
    path = site(tmp_path, '[cases]\ndue_working_days = "fifteen"\n')
    with pytest.raises(ConfigError, match=r"cases\.due_working_days"):
        load_settings(path, env={})


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (f'[intake]\ndefault_source = "{"s" * 65}"\n', r"intake\.default_source: .*at most 64 characters"),
        ('[intake]\ndefault_source = "import\\u0000"\n', r"intake\.default_source: .*NUL character"),
        ('[twilio]\nvoice_from = "+12025550100123456789"\n', r"twilio\.voice_from: .*at most 20 characters"),
        ('[twilio]\nsms_from = "whatsapp:+12025550101"\n', r"twilio\.sms_from: .*at most 20 characters"),
        ('[app]\norg = "某市\\u0000"\n', r"app\.org: .*NUL character"),
    ],
    ids=["long-source", "nul-source", "long-voice-from", "long-sms-from", "nul-org"],
)
def test_a_value_its_column_cannot_hold_stops_start_up_naming_the_key(tmp_path, text, named):
    # Every import stores intake.default_source, every attempt its sender: PostgreSQL would refuse them.
    with pytest.raises(ConfigError, match=named):
        load_settings(site(tmp_path, text), env={})


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('app = "x"\n', "app"),
        ('database = "sqlite:///x.db"\n', "database"),
        ("database = 5\n", "database"),
        ('[intake]\ncolumns = ["a"]\n', r"intake\.columns"),
    ],
    ids=["app", "database-url", "database-number", "intake-columns"],
)
def test_a_scalar_where_a_table_belongs_names_the_key(tmp_path, text, named):
    # RETURNVISIT_DATABASE_URL is written into the [database] table after the site file is read.
    with pytest.raises(ConfigError, match=rf"invalid configuration: {named}: must be a table$"):
        load_settings(site(tmp_path, text), env={"RETURNVISIT_DATABASE_URL": "sqlite:///x.db"})


def test_our_numbers_are_kept_in_e164_so_replies_to_them_are_routed(tmp_path):
    # An inbound text's To comes in E.164 and is matched against the sender stored with each text.
    path = site(tmp_path, '[twilio]\nsms_from = "+1 (202) 555-0101"\nvoice_from = "+86 571-8888 0000"\n')
    twilio = load_settings(path, env={}).twilio
    assert (twilio.sms_from, twilio.voice_from) == ("+12025550101", "+8657188880000")
    short_code = site(tmp_path, '[twilio]\nsms_from = "106900001234"\n')
    assert load_settings(short_code, env={}).twilio.sms_from == "106900001234"  # not +: as written
    with pytest.raises(ConfigError, match=r"twilio\.sms_from: .*'\+86 call us' is not a phone number"):
        load_settings(site(tmp_path, '[twilio]\nsms_from = "+86 call us"\n'), env={})


def test_bad_time_zone_names_the_key(tmp_path):
    path = site(tmp_path, '[app]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"app\.timezone"):
        load_settings(path, env={})


@pytest.mark.parametrize(
    ("calendar", "named"),
    [
        ('region = "XX"', r"calendar\.region: .*unknown calendar region 'XX'"),
        ('extra_closed = ["2026-10-09", "notadate"]', r"calendar\.extra_closed: .*'notadate' is not a date"),
        ('extra_working = ["2026-02-30"]', r"calendar\.extra_working: .*'2026-02-30' is not a date"),
        (
            'extra_closed = ["2026-10-09"]\nextra_working = ["2026-10-09"]',
            r"calendar: .*both in extra_closed and in extra_working: 2026-10-09",
        ),
    ],
)
def test_a_bad_calendar_stops_start_up_naming_the_key(tmp_path, calendar, named):
    path = site(tmp_path, f"[calendar]\n{calendar}\n")
    with pytest.raises(ConfigError, match=named):
        load_settings(path, env={})


def test_the_calendar_accepts_either_region_and_iso_dates(tmp_path):
    path = site(tmp_path, '[calendar]\nregion = "none"\nextra_closed = ["2026-10-09"]\n')
    assert load_settings(path, env={}).calendar.extra_closed == ["2026-10-09"]


def test_production_requires_secrets_and_names_the_missing_key(tmp_path):
    path = site(tmp_path, '[app]\nmode = "production"\n')
    with pytest.raises(ConfigError, match=r"app\.secret_key"):
        load_settings(path, env={})
    env = {
        "RETURNVISIT_SECRET_KEY": "s",
        "RETURNVISIT_INTAKE_API_TOKEN": "t",
        "RETURNVISIT_TWILIO_ACCOUNT_SID": "AC1",
    }
    with pytest.raises(ConfigError, match=r"twilio\.auth_token"):
        load_settings(path, env=env)
    settings = load_settings(path, env={**env, "RETURNVISIT_TWILIO_AUTH_TOKEN": "a"})
    assert settings.is_production


PRODUCTION_SECRETS = {
    "RETURNVISIT_SECRET_KEY": "Vq3r8Jm1xT9cL0pWb7nK2sYd5hG4fZa6",
    "RETURNVISIT_INTAKE_API_TOKEN": "n4Rt7Yk2Wq9Xc1Vb6Mz3Ls8Hd5Jf0Pg",
    "RETURNVISIT_TWILIO_ACCOUNT_SID": "AC5f1e9a7c3b2d4e6f8a0b1c2d3e4f5a6b",
    "RETURNVISIT_TWILIO_AUTH_TOKEN": "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f",
}


@pytest.mark.parametrize(
    ("var", "value"),
    [
        *((var, DEV_SECRETS[ENV_KEYS[var]]) for var in PRODUCTION_SECRETS),
        ("RETURNVISIT_SECRET_KEY", DEV_SECRETS[("intake", "api_token")]),  # another key's stand-in
        ("RETURNVISIT_TWILIO_AUTH_TOKEN", "change-this-to-the-account-auth-token"),
        ("RETURNVISIT_DATABASE_URL", "postgresql+psycopg://rv:change-this-password@127.0.0.1/rv"),
    ],
)
def test_production_refuses_built_in_and_placeholder_secrets_naming_the_key(tmp_path, var, value):
    path = site(tmp_path, '[app]\nmode = "production"\n')
    section, key = ENV_KEYS[var]
    with pytest.raises(ConfigError, match=rf"^{section}\.{key} .*refused in production"):
        load_settings(path, env={**PRODUCTION_SECRETS, var: value})
    assert load_settings(path, env=PRODUCTION_SECRETS).is_production


def test_production_refuses_turning_signature_checks_off(tmp_path):
    path = site(tmp_path, '[app]\nmode = "production"\n[twilio]\nvalidate_signatures = false\n')
    env = {
        "RETURNVISIT_SECRET_KEY": "s",
        "RETURNVISIT_INTAKE_API_TOKEN": "t",
        "RETURNVISIT_TWILIO_ACCOUNT_SID": "AC1",
        "RETURNVISIT_TWILIO_AUTH_TOKEN": "a",
    }
    with pytest.raises(ConfigError, match="validate_signatures"):
        load_settings(path, env=env)


def test_broken_toml_names_the_file_and_line(tmp_path):
    path = site(tmp_path, "[app\norg = 1\n")
    with pytest.raises(ConfigError, match=r"site\.toml.*line 1"):
        load_settings(path, env={})


def test_every_example_key_is_documented_by_a_comment():
    lines = EXAMPLE_PATH.read_text(encoding="utf-8").splitlines()
    assert tomllib.loads("\n".join(lines))

    def is_key(line):
        return "=" in line and not line.startswith((" ", "#", "["))

    for index, line in enumerate(lines):
        if not is_key(line):
            continue
        above = index - 1
        while above >= 0 and is_key(lines[above]):
            above -= 1  # a block of related keys shares the comment above it
        if lines[above].startswith("["):
            above -= 1  # a section header documented by the comment above it
        assert lines[above].startswith("#"), f"undocumented key at line {index + 1}: {line}"
