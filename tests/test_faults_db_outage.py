"""The database goes away in the middle of a run of calls, and comes back (PostgreSQL).

The shared PostgreSQL server is never touched: a small TCP proxy in this test stands between the
webhook app's engine and the server. Cutting it closes every open connection and refuses new ones,
as a restarting server does; restoring it listens again on the same port. The app object is built
once, exactly as production builds it (`create_app` with the database URL in the settings), and
is never rebuilt.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url

from ivr.app import create_app
from ivr.twilio_adapter import sign_request
from ivr.urls import voice_gather_url, voice_status_url, voice_url
from ivr.voice import APOLOGY
from models import migrate
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.items import ServiceItem
from models.settings import load_settings
from models.surveys import Answer, Attempt, AttemptStatus, Survey, SurveyState
from scheduler.campaigns import apply_campaign, parse_definition

CALLS = 24  # a third before the outage, a third during it, a third after


class TcpProxy:
    """Forward 127.0.0.1:<port> to a server; `cut()` drops every connection, `restore()` listens again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.accepted = 0
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread, frees the port
            listener.close()  # new connections are refused
        with self.lock:
            dropped, self.connections = self.connections, set()
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                if self.listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self.connections |= {client, server}
                self.accepted += 1
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def outage_db(backend, fresh_db_url):
    """A migrated PostgreSQL database with CALLS voice surveys in progress, each with one attempt."""
    if backend != "postgresql":
        pytest.skip("cutting the database connection needs a PostgreSQL server")
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    now = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
    with make_sessionmaker(engine)() as session:
        department = Department(code="SWJ", name="税务局")
        session.add(department)
        session.flush()
        campaign, _ = apply_campaign(session, parse_definition({"name": "outage", "status": "active"}), now)
        for n in range(CALLS):
            item = ServiceItem(
                source="test",
                external_id=f"O{n:03d}",
                department_id=department.id,
                matter="契税申报",
                phone_raw=f"1390013{n:04d}",
                phone_e164=f"+861390013{n:04d}",
                phone_kind="mobile",
                completed_at=datetime(2026, 11, 10, 2, 30, tzinfo=UTC),
            )
            session.add(item)
            session.flush()
            survey = Survey(
                campaign_id=campaign.id,
                item_id=item.id,
                token=f"out{n:03d}{uuid.uuid4().hex[:12]}",
                department_id=department.id,
                quarter="2026Q4",
                language="zh-CN",
                channel="voice",
                state=SurveyState.IN_PROGRESS,
                first_attempt_at=now,
            )
            session.add(survey)
            session.flush()
            session.add(
                Attempt(
                    survey_id=survey.id,
                    channel="voice",
                    number=1,
                    provider_id=f"CA{n:032d}",
                    from_number="+12025550100",
                    status=AttemptStatus.QUEUED,
                )
            )
        session.commit()
    yield fresh_db_url, engine
    engine.dispose()


@pytest.fixture
def proxied_app(outage_db):
    """The webhook app whose database URL points at the proxy; the proxy; a direct engine to check."""
    url, direct = outage_db
    parsed = make_url(url)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    settings = load_settings(
        env={},
        overrides={
            "database": {
                "url": parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            }
        },
    )
    app = create_app(settings)  # builds its own engine from the settings, as in production
    yield app, settings, proxy, direct
    proxy.cut()
    app_engine = app.extensions["returnvisit"]["sessions"].kw["bind"]
    app_engine.dispose()


def _signed(client, settings, url: str, form: dict[str, str]):
    path = url[len(settings.app.public_base_url) :]
    signature = sign_request(settings.twilio.auth_token, url, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def _call(client, settings, survey_token: str, attempt_id: int, call_sid: str, keys: list[str]):
    """Answer the call, press the keys, send the completed status; return every response."""
    base = settings.app.public_base_url
    form = {"CallSid": call_sid, "CallStatus": "in-progress", "AccountSid": "AC" + "0" * 32}
    responses = [_signed(client, settings, voice_url(base, survey_token, attempt_id), form)]
    for seq, digits in enumerate(keys):
        url = voice_gather_url(base, survey_token, seq)
        responses.append(_signed(client, settings, url, {**form, "Digits": digits}))
    status = {**form, "CallStatus": "completed", "CallDuration": "20"}
    responses.append(_signed(client, settings, voice_status_url(base, survey_token, attempt_id), status))
    return responses


def _calls(direct) -> list[tuple[str, int, str]]:
    with make_sessionmaker(direct)() as session:
        rows = session.execute(
            select(Survey.token, Attempt.id, Attempt.provider_id)
            .join(Attempt, Attempt.survey_id == Survey.id)
            .order_by(Survey.id)
        ).all()
    return [tuple(row) for row in rows]


def _stored(direct) -> dict[str, tuple[str | None, str | None]]:
    """token -> (disposition, rating) as the server has them (read past the proxy)."""
    with make_sessionmaker(direct)() as session:
        rows = session.execute(
            select(Survey.token, Survey.disposition, Answer.value).outerjoin(
                Answer, (Answer.survey_id == Survey.id) & (Answer.question == "rating")
            )
        ).all()
    return {token: (disposition, rating) for token, disposition, rating in rows}


def _assert_apology(response) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == 200, (response.status_code, body)
    assert response.mimetype == "application/xml"
    assert APOLOGY["zh-CN"] in body and "<Hangup" in body
    assert "Traceback" not in body and "Error" not in body


def test_webhooks_apologise_during_an_outage_and_recover_without_a_restart(proxied_app, caplog):
    app, settings, proxy, direct = proxied_app
    client = app.test_client()
    calls = _calls(direct)
    before, during, after = calls[: CALLS // 3], calls[CALLS // 3 : 2 * CALLS // 3], calls[2 * CALLS // 3 :]

    for token, attempt_id, sid in before:
        responses = _call(client, settings, token, attempt_id, sid, ["1"])
        assert [r.status_code for r in responses] == [200, 200, 204]
    committed = _stored(direct)
    assert all(committed[token] == ("complete", "very_satisfied") for token, _, _ in before)
    # One call is under way when the server goes away: it was greeted, its rating comes in the outage.
    mid_token, mid_attempt, mid_sid = during[0]
    greeting = _call(client, settings, mid_token, mid_attempt, mid_sid, [])[0]
    assert "<Gather" in greeting.get_data(as_text=True)

    proxy.cut()
    base = settings.app.public_base_url
    form = {"CallSid": mid_sid, "CallStatus": "in-progress", "Digits": "2"}
    _assert_apology(_signed(client, settings, voice_gather_url(base, mid_token, 0), form))
    for token, attempt_id, sid in during[1:]:
        answer, gather, status = _call(client, settings, token, attempt_id, sid, ["1"])
        _assert_apology(answer)
        _assert_apology(gather)
        # A status callback cannot be recorded: an empty 503 asks Twilio to send it again, no trace.
        assert status.status_code == 503 and status.get_data() == b""
    assert client.get("/healthz").status_code == 200  # the process itself stays up
    assert "webhook /twilio/voice failed" in caplog.text

    proxy.restore()
    for token, attempt_id, sid in after:
        responses = _call(client, settings, token, attempt_id, sid, ["1"])
        assert [r.status_code for r in responses] == [200, 200, 204], [r.get_data() for r in responses]
        assert "<Hangup" in responses[1].get_data(as_text=True)
    # The caller cut off in the outage: Twilio repeats the completed callback, and it is settled now.
    status = {"CallSid": mid_sid, "CallStatus": "completed", "CallDuration": "30"}
    assert (
        _signed(client, settings, voice_status_url(base, mid_token, mid_attempt), status).status_code == 204
    )

    stored = _stored(direct)
    for token, _, _ in before + after:  # nothing committed before the outage is lost; after it, all kept
        assert stored[token] == ("complete", "very_satisfied"), token
    for token, _, _ in during[1:]:  # a call the app could not greet stored nothing, half or whole
        assert stored[token] == (None, None), token
    assert stored[mid_token] == ("break_off", None)  # hung up before a rating could be stored
    assert proxy.accepted > 1  # the app's pool really reconnected through the restored proxy


def test_a_connection_lost_at_commit_stores_nothing_and_the_next_request_succeeds(proxied_app):
    app, settings, proxy, direct = proxied_app
    client = app.test_client()
    (token, attempt_id, sid), (next_token, next_attempt, next_sid) = _calls(direct)[:2]
    base = settings.app.public_base_url
    form = {"CallSid": sid, "CallStatus": "in-progress"}
    assert _signed(client, settings, voice_url(base, token, attempt_id), form).status_code == 200
    engine = app.extensions["returnvisit"]["sessions"].kw["bind"]

    def drop_before_commit(_conn) -> None:
        proxy.cut()
        proxy.restore()  # the server is back at once, but this transaction's connection is gone

    event.listen(engine, "commit", drop_before_commit, once=True)
    _assert_apology(_signed(client, settings, voice_gather_url(base, token, 0), {**form, "Digits": "1"}))
    assert _stored(direct)[token] == (None, None)

    responses = _call(client, settings, next_token, next_attempt, next_sid, ["2"])
    assert [r.status_code for r in responses] == [200, 200, 204]
    assert _stored(direct)[next_token] == ("complete", "satisfied")
    with make_sessionmaker(direct)() as session:
        assert session.scalar(select(func.count()).select_from(Answer)) == 1


def test_a_restart_between_requests_goes_unnoticed(proxied_app):
    app, settings, proxy, direct = proxied_app
    client = app.test_client()
    calls = _calls(direct)[:3]
    engine = app.extensions["returnvisit"]["sessions"].kw["bind"]
    with engine.connect() as first, engine.connect() as second, engine.connect() as third:
        for conn in (first, second, third):  # the pool holds three live connections
            conn.execute(select(1))
    proxy.cut()
    proxy.restore()  # every pooled connection is dead now; the server is back
    for token, attempt_id, sid in calls:
        responses = _call(client, settings, token, attempt_id, sid, ["1"])
        assert [r.status_code for r in responses] == [200, 200, 204], [r.get_data() for r in responses]
    stored = _stored(direct)
    assert all(stored[token] == ("complete", "very_satisfied") for token, _, _ in calls)
