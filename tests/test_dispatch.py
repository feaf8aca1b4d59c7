"""Dispatch: claims, window and opt-out re-checks, attempt before call, errors, leases, rate limits."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from scheduler_fixtures import FakeClock, FakeGateway, add_campaign, add_item, add_survey, settings_with
from sqlalchemy import func, select

from models import migrate
from models.cases_ops import answer_case, open_case_for
from models.db import make_engine, make_sessionmaker
from models.departments import Department
from models.messages import Message
from models.optouts import OptOut
from models.survey_ops import record_answer
from models.surveys import Attempt, Survey
from scheduler.calendar import ContactPolicy, Window, may_contact
from scheduler.dispatch import Dispatcher, claim_due, recover_leases
from scheduler.gateway import GatewayError
from scheduler.outcomes import expire_sweep
from scheduler.rules import window_close

LOCAL = ZoneInfo("Asia/Shanghai")
FAST = {"calls_per_second": 1000.0, "max_concurrent_calls": 1000}


def local(day, hour, minute=0, second=0):
    return datetime(2026, 11, day, hour, minute, second, tzinfo=LOCAL).astimezone(UTC)


@pytest.fixture
def world(session, session_factory, now, create_department):
    """A department, an active campaign, and a dispatcher factory on the test transaction."""

    class World:
        dept = create_department()
        campaign = add_campaign(session, now)
        clock = FakeClock(now)

        def survey(self, campaign=None, due=now, **fields):
            item_fields = {k: fields.pop(k) for k in ("phone_kind", "phone_e164") if k in fields}
            item = add_item(session, self.dept, now - timedelta(days=1), **item_fields)
            return add_survey(session, campaign or self.campaign, item, next_attempt_at=due, **fields)

        def dispatcher(self, fake=None, **settings_sections):
            settings_sections.setdefault("gateway", FAST)
            self.gateway = fake or FakeGateway(self.clock)
            return Dispatcher(
                sessions=session_factory,
                settings=settings_with(**settings_sections),
                gateway=self.gateway,
                compose_sms=lambda s, survey: f"请评价 {survey.id}",
                clock=self.clock,
                sleep=self.clock.sleep,
                owner="test-dispatcher",
            )

    return World()


def attempts_of(session, survey):
    return session.scalars(
        select(Attempt).where(Attempt.survey_id == survey.id).order_by(Attempt.number)
    ).all()


def test_only_due_surveys_of_active_campaigns_are_dialled(session, now, world):
    due = world.survey(due=now - timedelta(minutes=1))
    later = world.survey(due=now + timedelta(hours=1))
    paused = world.survey(campaign=add_campaign(session, now, status="paused"))
    done = world.survey(state="done", disposition="complete")
    live = world.survey(state="in_progress")
    counts = world.dispatcher().run()
    assert [r.survey_token for r in world.gateway.requests] == [due.token]
    assert counts == {"claimed": 1, "attempts": 1, "placed": 1}
    session.expire_all()
    assert (due.state, due.lease_owner, due.lease_expires_at, due.first_attempt_at) == (
        "in_progress",
        None,
        None,
        now,
    )
    [attempt] = attempts_of(session, due)
    assert (attempt.channel, attempt.number, attempt.status) == ("voice", 1, "queued")
    assert attempt.provider_id == f"CA{attempt.id:032d}" and attempt.from_number == "+12025550100"
    assert [s.state for s in (later, paused, done, live)] == ["scheduled", "scheduled", "done", "in_progress"]
    assert all(attempts_of(session, s) == [] for s in (later, paused, done, live))


def test_the_default_owner_fits_the_lease_column_on_a_host_with_a_long_name(session, now, world, monkeypatch):
    # A pod or cloud host name may be 63 characters; PostgreSQL refuses a longer lease_owner (64).
    from scheduler import locks

    monkeypatch.setattr(locks.socket, "gethostname", lambda: "returnvisit-scheduler-" + "x" * 41)
    owner = locks.default_owner()
    assert len(owner) <= Survey.__table__.c.lease_owner.type.length
    assert owner.startswith("returnvisit-scheduler-x") and owner != locks.default_owner()
    survey = world.survey()
    assert claim_due(session, owner=owner, now=now, lease=timedelta(minutes=5), limit=1) == [survey.id]
    session.expire_all()
    assert survey.lease_owner == owner


def test_claim_leases_each_survey_to_one_owner(session, now, world):
    first, second = world.survey(), world.survey()
    lease = timedelta(minutes=5)
    assert claim_due(session, owner="a", now=now, lease=lease, limit=1) == [first.id]
    assert claim_due(session, owner="b", now=now, lease=lease, limit=10) == [second.id]
    assert claim_due(session, owner="c", now=now, lease=lease, limit=10) == []
    session.expire_all()
    assert (first.state, first.lease_owner, first.lease_expires_at) == ("dialling", "a", now + lease)


def test_an_archived_campaigns_verification_visits_are_still_made(session, now, world):
    # Its cases stay open after the campaign ends: the citizen is still asked; nothing else goes out.
    world.campaign.status = "archived"
    visit, survey = world.survey(kind="verification"), world.survey()
    lease = timedelta(minutes=5)
    assert claim_due(session, owner="a", now=now, lease=lease, limit=10) == [visit.id]
    world.campaign.status = "paused"  # a paused campaign holds every contact
    session.flush()
    other_visit = world.survey(kind="verification")
    assert claim_due(session, owner="a", now=now, lease=lease, limit=10) == []
    assert (survey.state, other_visit.state) == ("scheduled", "scheduled")


def test_the_window_is_checked_again_at_dispatch(session, world):
    world.clock.now = local(16, 12, 30)  # lunch break
    survey = world.survey(due=local(16, 11, 59))
    counts = world.dispatcher().run()
    assert world.gateway.requests == [] and counts["outside_window"] == 1
    session.expire_all()
    assert (survey.state, survey.next_attempt_at, survey.lease_owner) == ("scheduled", local(16, 14), None)
    assert attempts_of(session, survey) == []


def test_a_survey_that_cannot_be_contacted_before_expiry_ends(session, now, world):
    world.clock.now = local(16, 20, 30)
    survey = world.survey(due=local(16, 19), first_attempt_at=local(13, 21))  # expires 16th 21:00
    world.dispatcher().run()
    session.expire_all()
    assert (survey.state, survey.disposition) == ("done", "not_contacted")


def test_opt_out_since_picking_is_respected(session, now, world):
    survey = world.survey()
    session.add(OptOut(phone_e164=survey.item.phone_e164, channel="voice", source="keypad"))
    session.flush()
    assert world.dispatcher().run()["opted_out"] == 1
    session.expire_all()
    assert world.gateway.requests == [] and (survey.state, survey.disposition) == ("done", "refused")


def test_sms_attempt_sends_the_composed_text_and_records_the_message(session, world):
    survey = world.survey(channel="sms")
    world.dispatcher().run()
    [request] = world.gateway.requests
    assert (request.to, request.from_, request.body) == (
        survey.item.phone_e164,
        "+12025550101",
        f"请评价 {survey.id}",
    )
    [message] = session.scalars(select(Message).where(Message.survey_id == survey.id)).all()
    [attempt] = attempts_of(session, survey)
    assert (message.direction, message.provider_id, message.status) == (
        "outbound",
        attempt.provider_id,
        "queued",
    )
    assert attempt.provider_id.startswith("SM") and attempt.channel == "sms"


def answered_case(session, world, now):
    """A case the department answered at `now`, and its verification visit (due now)."""
    original = world.survey(state="done", disposition="complete")
    record_answer(session, original, "rating", "dissatisfied", channel="voice", now=now)
    case = open_case_for(session, original, settings_with(), now)
    return case, answer_case(session, case, "已整改", "officer1", settings_with(), now)


@pytest.mark.parametrize("ending", ["invalid_number", "opted_out", "expired", "no_window_before_expiry"])
def test_a_verification_visit_ended_at_dispatch_is_reported_to_its_case(session, now, world, ending):
    case, visit = answered_case(session, world, now)
    phone = visit.item.phone_e164
    gateway = None
    if ending == "invalid_number":
        gateway = FakeGateway(world.clock, {phone: GatewayError("bad", code="21211", retryable=False)})
    elif ending == "opted_out":
        session.add(OptOut(phone_e164=phone, channel="all", source="keypad"))
    elif ending == "expired":
        visit.first_attempt_at = now - timedelta(days=3)
    else:
        world.clock.now = local(16, 20, 30)
        visit.first_attempt_at = local(13, 21)  # expires on the 16th at 21:00
    session.flush()
    world.dispatcher(gateway).run()
    session.expire_all()
    assert visit.state == "done"
    assert (case.state, case.verification_result) == ("answered", "unverified")


def test_attempts_are_numbered_per_channel(session, now, world):
    survey = world.survey(first_attempt_at=now - timedelta(hours=1))
    session.add(Attempt(survey_id=survey.id, channel="voice", number=1, status="busy", created_at=now))
    session.flush()
    world.dispatcher().run()
    assert [(a.number, a.status) for a in attempts_of(session, survey)] == [(1, "busy"), (2, "queued")]
    session.expire_all()
    assert survey.first_attempt_at == now - timedelta(hours=1)


def test_invalid_number_ends_not_eligible_without_retry(session, now, world):
    survey = world.survey()
    gateway = FakeGateway(
        world.clock, {survey.item.phone_e164: GatewayError("bad", code="21211", retryable=False)}
    )
    counts = world.dispatcher(gateway).run()
    assert counts["failed_not_eligible"] == 1
    session.expire_all()
    [attempt] = attempts_of(session, survey)
    assert (attempt.status, attempt.error_code, attempt.ended_at) == ("failed", "21211", now)
    assert (survey.state, survey.disposition, survey.lease_owner) == ("done", "not_eligible", None)
    world.clock.advance(days=1)
    assert world.dispatcher(gateway).run() == {}
    assert len(gateway.requests) == 1


def test_retryable_error_is_retried_by_the_policy(session, now, world):
    survey = world.survey()
    error = GatewayError("timed out", code="timeout", retryable=True)
    gateway = FakeGateway(world.clock, {survey.item.phone_e164: error})
    assert world.dispatcher(gateway).run()["failed_retry"] == 1
    session.expire_all()
    assert (survey.state, survey.next_attempt_at, survey.disposition) == (
        "scheduled",
        now + timedelta(minutes=30),
        "failed",
    )
    world.clock.advance(minutes=31)
    world.dispatcher().run()
    assert [(a.number, a.status, a.error_code) for a in attempts_of(session, survey)] == [
        (1, "failed", "timeout"),
        (2, "queued", None),
    ]


def test_carrier_opt_out_is_recorded(session, now, world):
    survey = world.survey(channel="sms")
    gateway = FakeGateway(
        world.clock, {survey.item.phone_e164: GatewayError("stop", code="21610", retryable=False)}
    )
    world.dispatcher(gateway).run()
    session.expire_all()
    assert (survey.state, survey.disposition) == ("done", "refused")
    [opt_out] = session.scalars(select(OptOut).where(OptOut.phone_e164 == survey.item.phone_e164)).all()
    assert (opt_out.channel, opt_out.source) == ("sms", "carrier")


def test_an_account_error_stops_the_batch_without_burning_the_rest(session, now, world):
    surveys = [world.survey() for _ in range(3)]
    error = GatewayError("authenticate", code="20003", retryable=False)
    gateway = FakeGateway(world.clock, {s.item.phone_e164: error for s in surveys})
    counts = world.dispatcher(gateway).run()
    assert len(gateway.requests) == 1 and counts["abandoned"] == 2
    session.expire_all()
    assert [len(attempts_of(session, s)) for s in surveys] == [1, 0, 0]
    assert surveys[0].next_attempt_at == now + timedelta(minutes=30)
    assert [(s.state, s.first_attempt_at, s.next_attempt_at) for s in surveys[1:]] == [
        ("scheduled", None, now)
    ] * 2


def test_attempt_is_committed_before_the_gateway_is_called(fresh_db_url, now):
    engine = make_engine(fresh_db_url)
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        dept = Department(code="SWJ", name="税务局")
        session.add(dept)
        session.flush()
        campaign = add_campaign(session, now)
        for _ in range(3):
            add_survey(
                session, campaign, add_item(session, dept, now - timedelta(days=1)), next_attempt_at=now
            )
        session.commit()
    observer = make_engine(fresh_db_url)
    seen = []

    def check(request):
        with observer.connect() as conn:  # another connection sees only committed rows
            row = conn.execute(
                select(Attempt.status, Attempt.provider_id, Survey.state, Survey.token)
                .join(Survey, Survey.id == Attempt.survey_id)
                .where(Attempt.id == request.attempt_id)
            ).one()
        seen.append(tuple(row))

    clock = FakeClock(now)
    Dispatcher(
        sessions,
        settings_with(gateway=FAST),
        FakeGateway(clock, check=check),
        lambda s, v: "",
        clock,
        clock.sleep,
    ).run()
    assert len(seen) == 3
    assert all(status == "pending" and pid is None and state == "dialling" for status, pid, state, _ in seen)
    with sessions() as session:
        assert session.scalar(select(func.count()).where(Attempt.provider_id.is_not(None))) == 3
    observer.dispose()
    engine.dispose()


class Crash(BaseException):
    """The process dies here (nothing catches a BaseException of our own)."""


def test_lease_expiry_closes_unplaced_attempts_and_never_redials_them(session, now, world):
    surveys = [world.survey() for _ in range(3)]
    placed = []

    def crash_on_second(request):
        placed.append(request.attempt_id)
        if len(placed) == 2:
            raise Crash  # dialled, but the process dies before it stores the call id

    one_per_second = {"calls_per_second": 1.0, "max_concurrent_calls": 100}
    with pytest.raises(Crash):  # the first call is stored while waiting a second for the next slot
        world.dispatcher(FakeGateway(world.clock, check=crash_on_second), gateway=one_per_second).run()
    session.expire_all()
    assert [s.state for s in surveys] == ["in_progress", "dialling", "dialling"]
    assert [[a.status for a in attempts_of(session, s)] for s in surveys] == [
        ["queued"],
        ["pending"],
        ["pending"],
    ]

    settings = settings_with()
    assert recover_leases(session, settings, now + timedelta(minutes=4)) == {}  # lease still valid
    counts = recover_leases(session, settings, now + timedelta(minutes=5, seconds=1))
    assert counts == {"closed_unplaced": 2, "survey_retry": 2}
    session.commit()
    session.expire_all()
    for survey in surveys[1:]:
        [attempt] = attempts_of(session, survey)
        assert (attempt.status, attempt.error_code) == ("failed", "lease-expired")
        assert (survey.state, survey.lease_owner, survey.disposition) == ("scheduled", None, "failed")
        # 30 minutes after the attempt's planned start (its rate slot, a second or two after now)
        assert timedelta(0) < survey.next_attempt_at - (now + timedelta(minutes=30)) <= timedelta(seconds=2)

    world.clock.advance(minutes=31)
    world.dispatcher().run()
    redialled = [r.attempt_id for r in world.gateway.requests]
    assert len(redialled) == 2 and not set(redialled) & set(placed)
    assert [[a.number for a in attempts_of(session, s)] for s in surveys] == [[1], [1, 2], [1, 2]]


def test_an_interrupted_run_stores_what_it_placed_and_gives_back_the_rest(session, now, world):
    surveys = [world.survey() for _ in range(3)]

    seen = []

    def interrupt_on_second(request):
        seen.append(request)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        world.dispatcher(FakeGateway(world.clock, check=interrupt_on_second)).run()
    session.expire_all()
    # placed and stored; perhaps dialled (left to lease recovery); never handed to the gateway
    assert [s.state for s in surveys] == ["in_progress", "dialling", "scheduled"]
    assert [[a.status for a in attempts_of(session, s)] for s in surveys] == [["queued"], ["pending"], []]


def test_a_call_answered_before_its_placement_is_stored_still_expires(session, now, world, twilio_post):
    survey = world.survey()
    session.commit()
    answered = []

    class AnswerFirst(FakeGateway):
        def place_call(self, request):
            result = super().place_call(request)
            # Twilio's answer webhook comes before place_call's response is written back.
            answer = {"CallSid": result.provider_id, "AnsweredBy": "human", "CallStatus": "in-progress"}
            url = f"/twilio/voice?survey={request.survey_token}&attempt={request.attempt_id}"
            answered.append(twilio_post(url, answer).status_code)
            return result

    world.dispatcher(AnswerFirst(world.clock)).run()
    assert answered == [200]
    session.expire_all()
    assert (survey.state, survey.first_attempt_at, survey.lease_owner, survey.lease_expires_at) == (
        "in_progress",
        now,
        None,
        None,
    )
    expire_sweep(session, settings_with(), now + timedelta(days=4))  # its final callback was lost
    session.refresh(survey)
    assert (survey.state, survey.disposition) == ("done", "no_answer")


def test_recovery_of_claims_without_attempts_and_of_calls_reported_by_webhook(session, now, world):
    claimed = world.survey(state="dialling", lease_owner="gone", lease_expires_at=now - timedelta(seconds=1))
    reported = world.survey(state="dialling", lease_owner="gone", lease_expires_at=now - timedelta(seconds=1))
    session.add(
        Attempt(survey_id=reported.id, channel="voice", number=1, status="ringing", provider_id="CA1")
    )
    session.flush()
    assert recover_leases(session, settings_with(), now) == {"released": 1, "in_progress": 1}
    assert (claimed.state, claimed.next_attempt_at, claimed.lease_owner) == ("scheduled", now, None)
    assert (reported.state, reported.lease_owner) == ("in_progress", None)


def test_calls_per_second_are_never_exceeded(session, now, world):
    for _ in range(7):
        world.survey()
    counts = world.dispatcher(gateway={"calls_per_second": 2.0, "max_concurrent_calls": 100}).run()
    assert counts["placed"] == 7
    gaps = [(b - a).total_seconds() for a, b in zip(world.gateway.times, world.gateway.times[1:])]
    assert gaps == [0.5] * 6


def test_calls_beyond_the_tick_wait_for_the_next_one_still_spaced(session, now, world):
    surveys = [world.survey() for _ in range(7)]
    dispatcher = world.dispatcher(
        gateway={"calls_per_second": 0.2, "max_concurrent_calls": 100}, scheduler={"tick_seconds": 12}
    )
    counts = dispatcher.run()
    assert (counts["placed"], counts["deferred_rate_limit"]) == (3, 4)
    session.expire_all()
    assert sorted(s.state for s in surveys).count("scheduled") == 4
    dispatcher.run()
    dispatcher.run()
    times = world.gateway.times
    assert len(times) == 7
    assert min((b - a).total_seconds() for a, b in zip(times, times[1:])) >= 5.0


class SlowGateway(FakeGateway):
    """A gateway whose REST requests take `seconds[n % len(seconds)]` to answer (on the fake clock)."""

    def __init__(self, clock, *seconds):
        super().__init__(clock)
        self.seconds = seconds

    def place_call(self, request):
        result = super().place_call(request)
        self.clock.advance(seconds=self.seconds[(len(self.times) - 1) % len(self.seconds)])
        return result


def test_calls_per_second_hold_behind_a_slow_gateway(session, world):
    for _ in range(6):
        world.survey()
    one_per_second = {"calls_per_second": 1.0, "max_concurrent_calls": 100}
    world.dispatcher(SlowGateway(world.clock, 1.8, 0), gateway=one_per_second).run()
    times = world.gateway.times
    assert len(times) == 6
    assert min(b - a for a, b in zip(times, times[1:])) == timedelta(seconds=1)


def test_campaign_rate_below_the_account_rate(session, now, world):
    slow = add_campaign(session, now, calls_per_second=0.5)
    for _ in range(3):
        world.survey(campaign=slow)
    world.dispatcher(gateway={"calls_per_second": 10.0, "max_concurrent_calls": 100}).run()
    times = world.gateway.times
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:])] == [2.0, 2.0]


def test_concurrent_calls_are_capped(session, now, world):
    busy = world.survey(state="in_progress")
    for number, (status, age) in enumerate([("queued", 10), ("in_progress", 5), ("ringing", 180)], 1):
        session.add(
            Attempt(
                survey_id=busy.id,
                channel="voice",
                number=number,
                status=status,
                created_at=now - timedelta(minutes=age),
            )
        )
    session.flush()  # two calls in flight; the three-hour-old one lost its callback and is ignored
    waiting = [world.survey() for _ in range(3)]
    counts = world.dispatcher(gateway={"calls_per_second": 100.0, "max_concurrent_calls": 3}).run()
    assert (counts["placed"], counts["deferred_rate_limit"]) == (1, 2)
    session.expire_all()
    assert sorted(s.state for s in waiting) == ["in_progress", "scheduled", "scheduled"]


def test_no_call_starts_after_the_window_closes(session, world):
    world.clock.now = local(16, 11, 59, 58)
    surveys = [world.survey(due=local(16, 11)) for _ in range(4)]
    counts = world.dispatcher(gateway={"calls_per_second": 1.0, "max_concurrent_calls": 100}).run()
    assert counts["placed"] == 2 and counts["outside_window"] == 2
    assert all(t < local(16, 12) for t in world.gateway.times)
    session.expire_all()
    assert sorted((s.state, s.next_attempt_at) for s in surveys)[-2:] == [("scheduled", local(16, 14))] * 2


def test_a_slow_gateway_never_calls_after_the_window_closes(session, world):
    world.clock.now = local(16, 11, 59, 50)
    surveys = [world.survey(due=local(16, 11)) for _ in range(8)]  # slots 11:59:50 to 11:59:57
    one_per_second = {"calls_per_second": 1.0, "max_concurrent_calls": 100}
    counts = world.dispatcher(SlowGateway(world.clock, 1.5), gateway=one_per_second).run()
    assert (counts["placed"], counts["abandoned"]) == (7, 1)  # the eighth would start at 12:00:00.5
    assert max(world.gateway.times) < local(16, 12)
    world.dispatcher().run()  # the next tick moves the rest to the afternoon's opening
    session.expire_all()
    assert sorted((s.state, s.next_attempt_at) for s in surveys)[-1] == ("scheduled", local(16, 14))
    assert [s.state for s in surveys].count("in_progress") == 7


POLICIES = [
    ContactPolicy(tz=LOCAL),  # 09:00-12:00 and 14:00-20:00 on China's working days
    ContactPolicy(tz=ZoneInfo("America/New_York"), windows=(Window(time(1), time(3, 30)),)),  # DST
    ContactPolicy(tz=LOCAL, windows=(Window(time(22), time(2)),), working_days_only=False),  # overnight
]


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    now=st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
    policy=st.sampled_from(POLICIES),
    fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_calls_are_slotted_only_while_the_window_is_open(now, policy, fraction):
    close = window_close(policy, now)
    if not may_contact(policy, now):
        assert close == now
        return
    assert close > now
    probe = min(now + (close - now) * fraction, close - timedelta(microseconds=1))  # rounding
    assert may_contact(policy, probe)
