"""docs/deploy.md and deploy/: every file and command of the guide, run where this machine can run it.

The systemd units are verified by systemd-analyze and their commands started as the units start them
(gunicorn with the config files, the scheduler); nginx runs the example configuration in front of them
and a signed Twilio request goes through it; every URL the guide has you paste into Twilio is a route.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from console.cli import main as cli_main
from ivr.twilio_adapter import sign_request
from models import migrate
from models.db import make_engine
from models.settings import ENV_KEYS, ConfigError, load_settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
GUIDE = REPO / "docs" / "deploy.md"
PUBLIC = "https://returnvisit.example.gov.cn"
CONSOLE_HOST = "console.returnvisit.internal"
UNITS = sorted((DEPLOY / "systemd").glob("returnvisit-*.*"))
PG_URL = os.environ.get("RETURNVISIT_TEST_DATABASE_URL", "")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


# ---- reading the deploy files ----------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Return a systemd unit's sections as ordered (key, value) lists (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path.name}: {line!r} outside a section"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [value for k, value in unit.get(section, []) if k == key]


def on_this_machine(value: str) -> str:
    """Map the guide's install paths (/opt/returnvisit, its .venv) onto this checkout."""
    return value.replace("/opt/returnvisit/.venv", str(REPO / ".venv")).replace("/opt/returnvisit", str(REPO))


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


# What a site puts in place of deploy/env.example's placeholders (production refuses those).
SITE_SECRETS = {
    "RETURNVISIT_SECRET_KEY": "Vq3r8Jm1xT9cL0pWb7nK2sYd5hG4fZa6eR1uI8oP3lM7tB2v",
    "RETURNVISIT_INTAKE_API_TOKEN": "n4Rt7Yk2Wq9Xc1Vb6Mz3Ls8Hd5Jf0Pg",
    "RETURNVISIT_TWILIO_ACCOUNT_SID": "AC5f1e9a7c3b2d4e6f8a0b1c2d3e4f5a6b",
    "RETURNVISIT_TWILIO_AUTH_TOKEN": "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f",
}
SITE_DB_PASSWORD = "k7Pq2Wm9Zx4Rt"


def site_env_values() -> dict[str, str]:
    """deploy/env.example with every placeholder replaced as the guide says."""
    values = {**read_env_file(DEPLOY / "env.example"), **SITE_SECRETS}
    values["RETURNVISIT_DATABASE_URL"] = values["RETURNVISIT_DATABASE_URL"].replace(
        "change-this-password", SITE_DB_PASSWORD
    )
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the files themselves --------------------------------------------------------------------------


def test_every_unit_has_a_description_a_command_and_an_install_target():
    names = {unit.name for unit in UNITS}
    assert {
        "returnvisit-webhooks.service",
        "returnvisit-console.service",
        "returnvisit-scheduler.service",
        "returnvisit-backup.service",
        "returnvisit-backup.timer",
    } <= names
    for path in UNITS:
        unit = read_unit(path)
        assert unit_values(unit, "Unit", "Description"), path.name
        if path.suffix == ".service":
            assert len(unit_values(unit, "Service", "ExecStart")) == 1, path.name
        if path.name != "returnvisit-backup.service":  # started by its timer
            assert unit_values(unit, "Install", "WantedBy"), path.name


def test_every_unit_command_exists_and_names_a_real_app_or_command():
    known_env = {
        *ENV_KEYS,
        "RETURNVISIT_CONFIG",
        "RETURNVISIT_BACKUP_KEEP_DAYS",
        "PROMETHEUS_MULTIPROC_DIR",
        "PATH",
    }
    for path in (p for p in UNITS if p.suffix == ".service"):
        unit = read_unit(path)
        argv = shlex.split(on_this_machine(unit_values(unit, "Service", "ExecStart")[0]))
        assert Path(argv[0]).is_file() and os.access(argv[0], os.X_OK), f"{path.name}: {argv[0]}"
        if Path(argv[0]).name == "gunicorn":
            config = Path(argv[argv.index("--config") + 1])
            assert config.is_file(), f"{path.name}: {config}"
            module, _, attribute = argv[-1].partition(":")
            assert (REPO / (module.replace(".", "/") + ".py")).is_file() and attribute == "app"
        if Path(argv[0]).name == "returnvisit":
            assert argv[1] in cli_main.commands, f"{path.name}: returnvisit {argv[1]}"
        for assignment in unit_values(unit, "Service", "Environment"):
            assert assignment.partition("=")[0] in known_env, f"{path.name}: {assignment}"
        assert unit_values(unit, "Service", "EnvironmentFile") == ["/etc/returnvisit/env"]
        assert Path(on_this_machine(unit_values(unit, "Service", "WorkingDirectory")[0])) == REPO
    timer = read_unit(DEPLOY / "systemd" / "returnvisit-backup.timer")
    assert unit_values(timer, "Timer", "OnCalendar") == ["*-*-* 02:30:00"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_systemd_analyze_verifies_every_unit_without_a_warning(tmp_path):
    for path in UNITS:
        (tmp_path / path.name).write_text(on_this_machine(path.read_text(encoding="utf-8")), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_the_example_site_and_env_files_load_in_production_mode():
    settings = load_settings(DEPLOY / "site.example.toml", env=site_env_values())
    assert settings.is_production and settings.app.public_base_url == PUBLIC
    assert settings.gateway.kind == "twilio" and settings.twilio.validate_signatures
    assert make_url(settings.database.url).get_backend_name() == "postgresql"
    assert set(read_env_file(DEPLOY / "env.example")) == set(ENV_KEYS) == set(site_env_values())


@pytest.mark.parametrize("var", sorted(ENV_KEYS))
def test_production_refuses_each_placeholder_of_the_example_env_file_naming_its_key(var):
    env = {**site_env_values(), var: read_env_file(DEPLOY / "env.example")[var]}
    section, key = ENV_KEYS[var]
    with pytest.raises(ConfigError, match=rf"^{section}\.{key} .*placeholder"):
        load_settings(DEPLOY / "site.example.toml", env=env)


def test_the_voice_fallback_is_the_apps_own_apology():
    from ivr.twilio_adapter import render_hangup
    from ivr.voice import APOLOGY, voice_for

    settings = load_settings(env={})
    expected = render_hangup([APOLOGY[settings.app.language]], voice_for(settings, settings.app.language))
    assert (DEPLOY / "twilio" / "voice-fallback.xml").read_text(encoding="utf-8") == expected + "\n"


# ---- the guide against the code --------------------------------------------------------------------

_GUIDE_URL = re.compile(re.escape(PUBLIC) + r"(/[^\s`|?)]*)(\?[^\s`|)]*)?")


def test_every_url_the_guide_gives_twilio_is_a_route_of_the_webhook_app(settings, session_factory):
    from ivr import urls
    from ivr.app import create_app

    app = create_app(settings, session_factory=session_factory)
    adapter = app.url_map.bind("returnvisit.example.gov.cn", url_scheme="https")
    found = {(m.group(1), m.group(2) or "") for m in _GUIDE_URL.finditer(GUIDE.read_text(encoding="utf-8"))}
    paths = {path for path, _ in found}
    assert {"/twilio/sms", "/twilio/voice", "/twilio/voice/gather", "/twilio/voice/status"} <= paths
    for path in paths:
        adapter.match(path, method="POST")  # raises NotFound or MethodNotAllowed
    # The per-call table shows the URLs exactly as the gateway builds them.
    built = {
        urls.voice_url(PUBLIC, "T", "A", "L"),  # type: ignore[arg-type]
        urls.voice_gather_url(PUBLIC, "T", "N", "L"),  # type: ignore[arg-type]
        urls.voice_status_url(PUBLIC, "T", "A"),  # type: ignore[arg-type]
        urls.recording_status_url(PUBLIC, "T"),
        urls.sms_status_url(PUBLIC, "T", "A"),  # type: ignore[arg-type]
        urls.sms_inbound_url(PUBLIC),
    }
    assert built <= {PUBLIC + path + query for path, query in found}


def test_the_guide_names_only_files_and_commands_that_exist():
    guide = GUIDE.read_text(encoding="utf-8")
    for name in set(re.findall(r"deploy/[\w./*-]*\w", guide)):
        assert list(REPO.glob(name)), name
    for command in set(re.findall(r"returnvisit(?:-cli)? ([a-z][a-z-]+)", guide)):
        assert command in cli_main.commands or command in {"backup", "scheduler"}, command
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/deploy.md)" in readme


def test_a_citizen_calling_the_number_back_hears_the_goodbye(twilio_post):
    response = twilio_post("/twilio/voice", {"CallSid": "CA" + "1" * 32, "From": "+8613800138000"})
    assert response.status_code == 200
    assert "本次回访已经结束" in response.get_data(as_text=True) and "<Hangup" in response.get_data(
        as_text=True
    )


def test_a_proxied_request_is_checked_against_the_public_url(session_factory):
    from ivr.app import create_app

    settings = load_settings(
        DEPLOY / "site.example.toml",
        env={**site_env_values(), "RETURNVISIT_DATABASE_URL": "sqlite://"},
    )
    client = create_app(settings, session_factory=session_factory).test_client()
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "From": "+8613800138000",
        "To": "+12025550101",
        "Body": "1",
    }
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "returnvisit.example.gov.cn"}

    def post(signed_url: str) -> int:
        signature = sign_request(settings.twilio.auth_token, signed_url, form)
        return client.post(
            "/twilio/sms",
            data=form,
            base_url="http://127.0.0.1:8000",
            headers={**proxied, "X-Twilio-Signature": signature},
        ).status_code

    assert post("http://127.0.0.1:8000/twilio/sms") == 403  # signed for the inside address
    assert post(PUBLIC + "/twilio/sms") == 200


# ---- the services, started as the units start them -------------------------------------------------


@dataclass
class Site:
    """A site on this machine laid out as the guide says: env file, site file, database."""

    env_file: Path
    site_file: Path
    db_url: str
    env: dict[str, str]
    tmp: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run deploy/returnvisit-cli as the guide does."""
        result = subprocess.run(
            [str(DEPLOY / "returnvisit-cli"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def unit_env(self, unit_name: str) -> dict[str, str]:
        """The environment a unit gives its command, with /run and /etc mapped into the temp dir."""
        env = dict(self.env)
        for assignment in unit_values(read_unit(DEPLOY / "systemd" / unit_name), "Service", "Environment"):
            key, _, value = assignment.partition("=")
            if value.startswith("/run/"):
                value = str(self.tmp / "run" / Path(value).name)
                Path(value).mkdir(parents=True, exist_ok=True)
            env[key] = on_this_machine(value).replace("/etc/returnvisit/site.toml", str(self.site_file))
        env.update(read_env_file(self.env_file))
        return env

    def start(self, unit_name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start a unit's ExecStart as systemd would (its working directory and environment)."""
        unit = read_unit(DEPLOY / "systemd" / unit_name)
        argv = shlex.split(on_this_machine(unit_values(unit, "Service", "ExecStart")[0]))
        with (self.tmp / f"{unit_name}.log").open("wb") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                argv,
                cwd=on_this_machine(unit_values(unit, "Service", "WorkingDirectory")[0]),
                env={**self.unit_env(unit_name), **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, unit_name: str) -> str:
        return (self.tmp / f"{unit_name}.log").read_text(errors="replace")


@pytest.fixture
def site(fresh_db_url, tmp_path) -> Site:
    """The example site file (production) and env file, pointed at a fresh database of the backend."""
    env_values = site_env_values()
    env_values["RETURNVISIT_DATABASE_URL"] = fresh_db_url
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_values.items()), encoding="utf-8")
    site_file = tmp_path / "site.toml"
    site_file.write_text(
        (DEPLOY / "site.example.toml").read_text(encoding="utf-8") + "\n[scheduler]\ntick_seconds = 1\n",
        encoding="utf-8",
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "RETURNVISIT_ENV_FILE": str(env_file),
        "RETURNVISIT_CONFIG": str(site_file),
    }
    return Site(env_file, site_file, fresh_db_url, env, tmp_path)


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _wait_for(port: int, process: subprocess.Popen[bytes], log: str, path: str = "/healthz") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}: {log}"
        try:
            if _get(port, path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no answer on {port}{path}")


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)


@pytest.fixture
def services(site) -> Iterator[dict[str, int]]:
    """The webhook app and the console under gunicorn, started with the units' commands (schema at head)."""
    site.cli("init", "--admin", "admin", "--password-file", str(_password_file(site.tmp)))
    ports = {"webhooks": free_port(), "console": free_port()}
    started = [
        site.start(
            "returnvisit-webhooks.service", RETURNVISIT_WEBHOOKS_BIND=f"127.0.0.1:{ports['webhooks']}"
        ),
        site.start("returnvisit-console.service", RETURNVISIT_CONSOLE_BIND=f"127.0.0.1:{ports['console']}"),
    ]
    try:
        _wait_for(ports["webhooks"], started[0], "webhooks")
        _wait_for(ports["console"], started[1], "console")
        yield ports
    finally:
        for process in started:
            _stop(process)


def _password_file(tmp: Path) -> Path:
    path = tmp / "admin-password"
    path.write_text("deploy-test-password\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_gunicorn_serves_both_apps_with_the_deploy_configs(site, services):
    for name in ("webhooks", "console"):
        assert _get(services[name], "/healthz") == (200, '{"status":"ok"}\n')
        status, body = _get(services[name], "/readyz")
        assert status == 200 and '"ready"' in body, body
    # One signed webhook, then its series in the workers' shared metrics directory (the unit's /run dir).
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "From": "+8613800138000",
        "To": "+12025550101",
        "Body": "1",
    }
    signature = sign_request(
        read_env_file(site.env_file)["RETURNVISIT_TWILIO_AUTH_TOKEN"], PUBLIC + "/twilio/sms", form
    )
    conn = http.client.HTTPConnection("127.0.0.1", services["webhooks"], timeout=10)
    conn.request(
        "POST",
        "/twilio/sms",
        body=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert conn.getresponse().status == 200
    conn.close()
    status, metrics = _get(services["webhooks"], "/metrics")
    assert status == 200 and "returnvisit_webhook_responses" in metrics
    assert list((site.tmp / "run" / "returnvisit-webhooks").iterdir())


@pytest.mark.slow
def test_an_upgrade_is_init_then_restart(site):
    engine = make_engine(site.db_url)
    migrate.upgrade(engine, "0003")  # the schema an older release left
    port = free_port()
    webhooks = site.start(
        "returnvisit-webhooks.service",
        RETURNVISIT_WEBHOOKS_BIND=f"127.0.0.1:{port}",
        RETURNVISIT_WEBHOOKS_WORKERS="1",
    )
    try:
        _wait_for(port, webhooks, "webhooks")
        status, body = _get(port, "/readyz")
        assert status == 503 and "run `returnvisit init`" in body
        refused = site.start("returnvisit-scheduler.service")
        assert refused.wait(timeout=60) != 0
        assert "the database schema is not current" in site.log("returnvisit-scheduler.service")
        upgraded = site.cli("init")
        assert f"schema at revision {migrate.head_revision()}" in upgraded.stdout
        deadline = time.monotonic() + 10
        while _get(port, "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "readyz stayed unready after init"
            time.sleep(0.2)
        assert migrate.is_at_head(engine)
    finally:
        _stop(webhooks)
        engine.dispose()


@pytest.mark.slow
def test_the_scheduler_unit_ticks_shows_in_status_and_stops_on_sigterm(site):
    site.cli("init")
    scheduler = site.start("returnvisit-scheduler.service")
    try:
        deadline = time.monotonic() + 60
        while True:
            status = site.cli("status")
            if "scheduler " in status.stdout and " ok" in status.stdout:
                break
            assert scheduler.poll() is None, site.log("returnvisit-scheduler.service")
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.5)
        # No warning about the scheduler (one about the calendar's next year may be due, by date).
        assert "WARNING: no scheduler" not in status.stdout and "WARNING: the scheduler" not in status.stdout
    finally:
        code = _stop(scheduler, signal.SIGTERM)
    assert code == 0, site.log("returnvisit-scheduler.service")


# ---- nginx in front, as deploy/nginx/returnvisit.conf says -----------------------------------------


def _nginx_config(tmp: Path, ports: dict[str, int]) -> Path:
    """The example configuration on this machine's ports and a throwaway certificate, in an http block."""
    ssl_dir = tmp / "ssl"
    ssl_dir.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=returnvisit.example.gov.cn",
            "-keyout", str(ssl_dir / "privkey.pem"), "-out", str(ssl_dir / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    shutil.copy(ssl_dir / "privkey.pem", ssl_dir / "console-privkey.pem")
    shutil.copy(ssl_dir / "fullchain.pem", ssl_dir / "console-fullchain.pem")
    site = (DEPLOY / "nginx" / "returnvisit.conf").read_text(encoding="utf-8")
    site = "\n".join(line for line in site.splitlines() if "[::]" not in line)  # IPv4 loopback only
    site = (
        on_this_machine(site)
        .replace("listen 80;", f"listen 127.0.0.1:{ports['http']};")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{ports['https']} ssl;")
        .replace("/etc/ssl/returnvisit/", f"{ssl_dir}/")
        .replace("/var/log/nginx/", f"{tmp}/")
        .replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{ports['webhooks']};")
        .replace("server 127.0.0.1:8001;", f"server 127.0.0.1:{ports['console']};")
    )
    (tmp / "returnvisit.conf").write_text(site, encoding="utf-8")
    temp = {name: tmp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    main = tmp / "nginx.conf"
    main.write_text(
        "\n".join(
            [
                "daemon off;",
                "worker_processes 1;",
                f"pid {tmp}/nginx.pid;",
                f"error_log {tmp}/nginx-error.log info;",
                "user root;" if os.geteuid() == 0 else "",
                "events { worker_connections 64; }",
                "http {",
                "  access_log off;",
                "  include /etc/nginx/mime.types;",
                "  default_type application/octet-stream;",
                *(f"  {name}_temp_path {path};" for name, path in temp.items() if name != "body"),
                f"  client_body_temp_path {temp['body']};",
                f"  include {tmp}/returnvisit.conf;",
                "}",
            ]
        ),
        encoding="utf-8",
    )
    return main


def _https(port: int, method: str, host: str, path: str, body: str = "", headers: dict | None = None):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the throwaway certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=context)
    try:
        conn.request(method, path, body=body.encode(), headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install nginx-light)")
@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl for a throwaway certificate")
def test_nginx_passes_signed_twilio_requests_and_keeps_the_rest_private(site, services, tmp_path):
    ports = {**services, "http": free_port(), "https": free_port()}
    (tmp_path / "nginx").mkdir()
    config = _nginx_config(tmp_path / "nginx", ports)
    checked = subprocess.run(
        [NGINX, "-t", "-c", str(config), "-p", str(tmp_path / "nginx")], capture_output=True
    )
    assert checked.returncode == 0, checked.stderr.decode()
    nginx = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(tmp_path / "nginx")], start_new_session=True
    )
    auth_token = read_env_file(site.env_file)["RETURNVISIT_TWILIO_AUTH_TOKEN"]
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _https(ports["https"], "GET", "returnvisit.example.gov.cn", "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline and nginx.poll() is None, "nginx did not start"
                time.sleep(0.2)
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "From": "+8613800138000",
            "To": "+12025550101",
            "Body": "1",
        }

        def twilio(url_signed: str, path: str = "/twilio/sms", params: dict | None = None):
            signature = sign_request(auth_token, url_signed, params or form)
            return _https(
                ports["https"],
                "POST",
                "returnvisit.example.gov.cn",
                path,
                urlencode(params or form),
                {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
            )

        status, headers, body = twilio(PUBLIC + "/twilio/sms")
        assert status == 200 and body.startswith("<?xml") and "<Response" in body
        assert twilio(f"http://127.0.0.1:{ports['webhooks']}/twilio/sms")[0] == 403  # the inside URL
        query = "?survey=unknown&seq=1"
        voice = {"CallSid": "CA" + uuid.uuid4().hex, "Digits": "1"}
        assert (
            twilio(PUBLIC + "/twilio/voice/gather" + query, "/twilio/voice/gather" + query, voice)[0] == 200
        )
        for private in ("/readyz", "/metrics", "/"):
            assert _https(ports["https"], "GET", "returnvisit.example.gov.cn", private)[0] == 404, private
        plain = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=10)
        plain.request("GET", "/twilio/sms", headers={"Host": "returnvisit.example.gov.cn"})
        redirect = plain.getresponse()
        assert redirect.status == 301 and redirect.getheader("Location") == PUBLIC + "/twilio/sms"
        plain.close()

        # The console's CSRF check sees the public https origin through the proxy (Host, X-Forwarded-Proto).
        status, headers, page = _https(ports["https"], "GET", CONSOLE_HOST, "/login")
        assert status == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        login = urlencode({"csrf_token": token, "username": "admin", "password": "deploy-test-password"})

        def post_login(referer: str):
            return _https(
                ports["https"], "POST", CONSOLE_HOST, "/login", login,
                {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "Referer": referer},
            )  # fmt: skip

        assert post_login("https://evil.example/login")[0] == 400  # the strict https Referer check ran
        status, headers, _ = post_login(f"https://{CONSOLE_HOST}/login")
        assert status == 302 and "Secure" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        search = {"Cookie": cookie, "Referer": f"https://{CONSOLE_HOST}/items?q=13800138000"}
        assert _https(ports["https"], "GET", CONSOLE_HOST, "/items?q=13800138000", headers=search)[0] == 200
    finally:
        _stop(nginx, signal.SIGQUIT)
    # The access log has every request's path, never its query string (phone numbers, survey tokens).
    logged = (tmp_path / "nginx" / "returnvisit-access.log").read_text(encoding="utf-8")
    assert f'{CONSOLE_HOST} "GET /items HTTP/1.1" 200' in logged
    assert 'returnvisit.example.gov.cn "POST /twilio/voice/gather HTTP/1.1" 200' in logged
    assert 'returnvisit.example.gov.cn "GET /twilio/sms HTTP/1.1" 301' in logged
    assert "?" not in logged and "13800138000" not in logged and "survey" not in logged, logged


@pytest.mark.skipif(NGINX is None, reason="needs nginx (apt-get install nginx-light)")
@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl for a throwaway certificate")
def test_nginx_answers_the_voice_urls_with_the_apology_when_gunicorn_is_down(tmp_path):
    (tmp_path / "nginx").mkdir()
    ports = {"webhooks": free_port(), "console": free_port(), "http": free_port(), "https": free_port()}
    config = _nginx_config(tmp_path / "nginx", ports)  # nothing listens on the webhook port
    nginx = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(tmp_path / "nginx")], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, headers, body = _https(
                    ports["https"], "POST", "returnvisit.example.gov.cn", "/twilio/voice?survey=T&attempt=1",
                    "CallSid=CA1", {"Content-Type": "application/x-www-form-urlencoded"},
                )  # fmt: skip
                break
            except OSError:
                assert time.monotonic() < deadline and nginx.poll() is None, "nginx did not start"
                time.sleep(0.2)
        assert status == 200 and headers["Content-Type"] == "application/xml"
        assert body == (DEPLOY / "twilio" / "voice-fallback.xml").read_text(encoding="utf-8")
        gather = _https(
            ports["https"], "POST", "returnvisit.example.gov.cn", "/twilio/voice/gather?survey=T&seq=1"
        )
        assert gather[0] == 200 and "<Hangup" in gather[2]
        assert _https(ports["https"], "POST", "returnvisit.example.gov.cn", "/twilio/sms")[0] == 502
    finally:
        _stop(nginx, signal.SIGQUIT)


# ---- PostgreSQL setup and backups, as the guide runs them ------------------------------------------


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (RETURNVISIT_TEST_DATABASE_URL)")
@pytest.mark.skipif(not shutil.which("psql"), reason="needs psql")
def test_the_postgresql_setup_script_makes_a_role_that_owns_its_database(site, backend):
    if backend != "postgresql":
        pytest.skip("runs once, on the PostgreSQL backend")
    name = f"rv_setup_{uuid.uuid4().hex[:10]}"
    admin = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    setup = [
        "psql", admin, "-q",
        "-v", f"role={name}", "-v", f"dbname={name}", "-v", "password=s3cret-Pw_1",
        "-f", str(DEPLOY / "postgresql-setup.sql"),
    ]  # fmt: skip
    try:
        subprocess.run(setup, check=True, capture_output=True, timeout=60)
        url = make_url(PG_URL).set(username=name, password="s3cret-Pw_1", database=name)
        site.env_file.write_text(
            site.env_file.read_text(encoding="utf-8").replace(
                f"RETURNVISIT_DATABASE_URL={site.db_url}",
                f"RETURNVISIT_DATABASE_URL={url.render_as_string(hide_password=False)}",
            ),
            encoding="utf-8",
        )
        assert "schema at revision" in site.cli("init").stdout
        engine = make_engine(url.render_as_string(hide_password=False))
        with engine.connect() as conn:
            owners = set(
                conn.execute(text("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars()
            )
        engine.dispose()
        assert owners == {name}
        missing = subprocess.run(
            ["psql", admin, "-f", str(DEPLOY / "postgresql-setup.sql")], capture_output=True, text=True
        )
        assert missing.returncode != 0 and "give the role a password" in missing.stderr
    finally:
        for statement in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{name}"'):
            subprocess.run(["psql", admin, "-q", "-c", statement], capture_output=True, timeout=60)


@pytest.mark.slow
def test_the_backup_script_writes_a_dated_backup_and_removes_old_ones(site, tmp_path):
    if make_url(site.db_url).get_backend_name() == "postgresql" and not shutil.which("pg_dump"):
        pytest.skip("needs pg_dump")
    site.cli("init")
    backups = tmp_path / "backups"
    backups.mkdir()
    old = backups / "returnvisit-20200101-000000.db"
    old.write_text("old")
    os.utime(old, (time.time() - 20 * 86400,) * 2)
    unit = read_unit(DEPLOY / "systemd" / "returnvisit-backup.service")
    argv = shlex.split(on_this_machine(unit_values(unit, "Service", "ExecStart")[0]))
    env = site.unit_env("returnvisit-backup.service")
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    result = subprocess.run([*argv[:-1], str(backups)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    written = sorted(p.name for p in backups.iterdir())
    suffix = ".dump" if make_url(site.db_url).get_backend_name() == "postgresql" else ".db"
    assert len(written) == 1 and re.fullmatch(r"returnvisit-\d{8}-\d{6}" + re.escape(suffix), written[0]), (
        written
    )
    assert (backups / written[0]).stat().st_size > 10_000


def test_the_backup_script_gives_pg_dump_the_password_in_its_environment_not_its_arguments(tmp_path):
    # `ps` shows every process's arguments to every user of the machine; its environment to its own.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "pg_dump"
    stub.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" > "$SEEN/argv"\n'
        'printf "%s" "${PGPASSWORD-}" > "$SEEN/password"\n'
        'for arg in "$@"; do case "$arg" in --file=*) echo dump > "${arg#--file=}";; esac; done\n',
        encoding="utf-8",
    )
    stub.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "SEEN": str(tmp_path),
        # The password "s3cret:p@ss$`x", %-encoded in the URL as SQLAlchemy and libpq read it.
        "RETURNVISIT_DATABASE_URL": "postgresql+psycopg://returnvisit:s3cret%3Ap%40ss%24%60x@127.0.0.1:5432/rv",
    }
    result = subprocess.run(
        [str(DEPLOY / "backup.sh"), str(tmp_path / "backups")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    argv = (tmp_path / "argv").read_text(encoding="utf-8").splitlines()
    assert argv[-1] == "postgresql://returnvisit@127.0.0.1:5432/rv"
    assert not [arg for arg in argv if "s3cret" in arg], argv
    assert (tmp_path / "password").read_text(encoding="utf-8") == "s3cret:p@ss$`x"
    assert [p.suffix for p in (tmp_path / "backups").iterdir()] == [".dump"]


def test_returnvisit_cli_reads_the_env_file_literally_as_systemd_does(tmp_path):
    # The script runs the .venv beside its own directory: a stand-in there prints what it was given.
    (tmp_path / "deploy").mkdir()
    cli = shutil.copy(DEPLOY / "returnvisit-cli", tmp_path / "deploy" / "returnvisit-cli")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    stand_in = tmp_path / ".venv" / "bin" / "returnvisit"
    stand_in.write_text('#!/bin/sh\nenv | grep "^RETURNVISIT_" | sort\necho "args: $*"\n', encoding="utf-8")
    stand_in.chmod(0o755)
    token = f"t$HOME`touch {tmp_path}/ran`$(id)'\"x"
    env_file = tmp_path / "env"
    env_file.write_text(
        f"# comment\n\n; comment\nRETURNVISIT_INTAKE_API_TOKEN={token}\n"
        "RETURNVISIT_DATABASE_URL=postgresql+psycopg://rv:p$w@127.0.0.1/rv?a=b  \n",
        encoding="utf-8",
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [cli, "status", "--json"],
        env={**env, "RETURNVISIT_ENV_FILE": str(env_file)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "RETURNVISIT_CONFIG=/etc/returnvisit/site.toml",
        "RETURNVISIT_DATABASE_URL=postgresql+psycopg://rv:p$w@127.0.0.1/rv?a=b",
        f"RETURNVISIT_ENV_FILE={env_file}",
        f"RETURNVISIT_INTAKE_API_TOKEN={token}",
        "args: status --json",
    ]
    assert not (tmp_path / "ran").exists()
    env_file.write_text("RETURNVISIT_SECRET_KEY=k\nnot an assignment\n", encoding="utf-8")
    broken = subprocess.run(
        [cli, "status"], env={**env, "RETURNVISIT_ENV_FILE": str(env_file)}, capture_output=True, text=True
    )
    assert broken.returncode == 2 and "line 2 is not NAME=value" in broken.stderr
