"""Claiming due surveys and writing their attempts: everything the dispatcher commits before a call.

1. `claim_due`: SELECT the due ids ... FOR UPDATE SKIP LOCKED LIMIT n, then UPDATE them to DIALLING
   with this process as lease owner; the caller commits (SQLite has no row locks: it relies on its
   single scheduler and on taking the write lock first, see scheduler.locks).
2. `prepare_attempts`: re-check each claimed survey (expiry, calling window, opt-out), take call-rate
   slots (scheduler.ratelimit), write one PENDING Attempt per contact; the caller commits, and only
   then does scheduler.dispatch call the gateway.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, cast

from sqlalchemy import Table, and_, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from models.campaigns import Campaign, CampaignStatus
from models.cases_ops import finish_survey_and_case
from models.domain import Channel, Disposition
from models.items import ServiceItem
from models.messages import Direction, Message
from models.optouts import OptOutChannel
from models.settings import GatewaySettings, Settings
from models.surveys import Attempt, AttemptStatus, Survey, SurveyKind, SurveyState
from scheduler.calendar import NoOpeningError, contact_time, may_contact
from scheduler.locks import begin_write, is_sqlite
from scheduler.picking import opted_out_channels
from scheduler.ratelimit import (
    ACCOUNT_BUCKET,
    calls_in_flight,
    campaign_bucket,
    lock_buckets,
    next_slot,
    store_buckets,
)
from scheduler.rules import CampaignRules, contact_age_from, rules_for, window_close

logger = logging.getLogger(__name__)

# Returns the outbound text of a survey's SMS attempt (the lead wires ivr's composer in).
ComposeSms = Callable[[Session, Survey], str]


@dataclass(frozen=True)
class Contact:
    """One attempt committed and ready to be placed (plain values: no ORM object across commits)."""

    survey_id: int
    attempt_id: int
    channel: Channel
    token: str
    to: str
    from_: str
    language: str
    body: str | None = None
    message_id: int | None = None
    slot_at: datetime | None = None  # a call starts at or after its rate slot
    closes_at: datetime | None = None  # the contact is made before its calling window closes
    rates: tuple[tuple[str, float], ...] = ()  # a call's rate buckets and their calls per second


class Due(NamedTuple):
    """A claimed survey as the dispatcher reads it (plain values)."""

    id: int
    campaign_id: int
    channel: str
    token: str
    language: str
    first_attempt_at: datetime | None
    phone: str | None
    completed_at: datetime


def _survey(session: Session, survey_id: int) -> Survey:
    survey = session.get(Survey, survey_id)
    assert survey is not None  # claimed by this process, never deleted
    return survey


def claim_due(session: Session, *, owner: str, now: datetime, lease: timedelta, limit: int) -> list[int]:
    """Lease up to `limit` due surveys to `owner`; return their ids (caller commits).

    Surveys of active campaigns, and verification visits of archived ones too: a case opened while
    its campaign ran is still visited after the campaign ends (a paused campaign holds every contact).
    """
    begin_write(session)
    wanted = (CampaignStatus.ACTIVE, CampaignStatus.ARCHIVED)
    rows = session.execute(select(Campaign.id, Campaign.status).where(Campaign.status.in_(wanted)))
    status_of = {campaign_id: status for campaign_id, status in rows}
    active = [cid for cid, status in status_of.items() if status == CampaignStatus.ACTIVE]
    archived = [cid for cid, status in status_of.items() if status == CampaignStatus.ARCHIVED]
    if not active and not archived:
        return []
    of_campaign = Survey.campaign_id.in_(active)
    if archived:
        visits = and_(Survey.campaign_id.in_(archived), Survey.kind == SurveyKind.VERIFICATION)
        of_campaign = or_(of_campaign, visits) if active else visits
    if not is_sqlite(session):
        # A claim lost in a crash only leaves its surveys scheduled: no attempt exists before the
        # (synchronous) commit that writes it, which makes this commit durable as well. So this
        # commit need not wait for its own flush to disk.
        session.execute(text("SET LOCAL synchronous_commit = off"))
    # Two statements on purpose: inside UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP
    # LOCKED), PostgreSQL may run the subquery again for later rows and claim more than n.
    due = session.scalars(
        select(Survey.id)
        .where(
            Survey.state == SurveyState.SCHEDULED,
            Survey.next_attempt_at <= now,
            of_campaign,
        )
        # No tie-breaker: many surveys share a window's opening instant, and ordering them by id as
        # well would sort every due row instead of reading the (state, next_attempt_at) index in order.
        .order_by(Survey.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return []
    surveys = cast(Table, Survey.__table__)
    claimed = session.scalars(
        update(surveys)
        .where(surveys.c.id.in_(due), surveys.c.state == SurveyState.SCHEDULED)
        .values(state=SurveyState.DIALLING, lease_owner=owner, lease_expires_at=now + lease, updated_at=now)
        .returning(surveys.c.id)
    )
    return sorted(claimed.all())


def release(survey: Survey, now: datetime, at: datetime | None = None) -> None:
    """Give a claimed survey back to SCHEDULED (due again at `at`, or as it was)."""
    survey.state = SurveyState.SCHEDULED
    survey.lease_owner = None
    survey.lease_expires_at = None
    if at is not None:
        survey.next_attempt_at = at
    survey.updated_at = now


def _outside_window(
    session: Session,
    rules: CampaignRules,
    survey: Survey,
    at: datetime,
    deadline: datetime,
    settings: Settings,
) -> str:
    """Move a survey to its next opening before the deadline, or end it; return the count key."""
    try:
        opening = contact_time(rules.contact, at, deadline)
    except NoOpeningError:
        opening = None
    if opening is None:
        finish_survey_and_case(session, survey, Disposition.NOT_CONTACTED, settings, at)
        return "expired"
    release(survey, at, opening)
    return "outside_window"


def prepare_attempts(
    session: Session,
    ids: Sequence[int],
    *,
    owner: str,
    settings: Settings,
    compose_sms: ComposeSms,
    now: datetime,
    until: datetime,
    counts: Counter[str],
) -> tuple[list[Contact], int]:
    """Re-check claimed surveys, take rate slots, write PENDING attempts (the caller commits)."""
    # Returns the contacts to place, and how many surveys went back to SCHEDULED for lack of rate.
    begin_write(session)
    rows = [
        Due(*row)
        for row in session.execute(
            select(
                Survey.id,
                Survey.campaign_id,
                Survey.channel,
                Survey.token,
                Survey.language,
                Survey.first_attempt_at,
                ServiceItem.phone_e164,
                contact_age_from().label("completed_at"),
            )
            .join(ServiceItem, ServiceItem.id == Survey.item_id)
            .where(
                Survey.id.in_(ids),
                Survey.state == SurveyState.DIALLING,
                Survey.lease_owner == owner,
            )
            .order_by(Survey.next_attempt_at, Survey.id)
        )
    ]
    rules = {
        c.id: rules_for(c, settings)
        for c in session.scalars(select(Campaign).where(Campaign.id.in_({d.campaign_id for d in rows})))
    }
    open_now = {cid: may_contact(r.contact, now) for cid, r in rules.items()}
    opted = opted_out_channels(session, (d.phone for d in rows if d.phone))
    ready: list[Due] = []
    for due in rows:
        r = rules[due.campaign_id]
        deadline = r.deadline(due.completed_at, due.first_attempt_at)
        if not due.phone:
            _finish(session, due.id, Disposition.NOT_ELIGIBLE, settings, now, counts, "no_phone")
        elif now >= deadline:
            _finish(session, due.id, Disposition.NOT_CONTACTED, settings, now, counts, "expired")
        elif not open_now[due.campaign_id]:
            counts[_outside_window(session, r, _survey(session, due.id), now, deadline, settings)] += 1
        elif opted.get(due.phone, set()) & {OptOutChannel.ALL, due.channel}:
            _finish(session, due.id, Disposition.REFUSED, settings, now, counts, "opted_out")
        else:
            ready.append(due)

    closes_at = {cid: window_close(r.contact, now) for cid, r in rules.items()}
    rates_of = _rates_of(rules, settings.gateway)
    slots, deferred = _take_slots(session, ready, rules, rates_of, closes_at, settings, now, until, counts)
    bodies: dict[int, str] = {}
    texts = [due.id for due in ready if due.id in slots and due.channel == Channel.SMS]
    for survey in session.scalars(select(Survey).where(Survey.id.in_(texts))) if texts else ():
        try:
            bodies[survey.id] = compose_sms(session, survey)
        except Exception:
            logger.exception("survey %s: composing its SMS failed", survey.id)
            _finish(session, survey.id, Disposition.FAILED, settings, now, counts, "compose_failed")
    planned = [due for due in ready if due.id in slots and (due.channel != Channel.SMS or due.id in bodies)]
    if not planned:
        return [], deferred
    # Numbers run on across a reused verification survey's rounds (unique per survey and channel);
    # the retry policy counts only the current round's attempts (scheduler.outcomes).
    numbers = Counter(
        {
            (survey_id, channel): n
            for survey_id, channel, n in session.execute(
                select(Attempt.survey_id, Attempt.channel, func.count())
                .where(Attempt.survey_id.in_([due.id for due in planned]))
                .group_by(Attempt.survey_id, Attempt.channel)
            )
        }
    )
    twilio = settings.twilio
    senders = {Channel.VOICE.value: twilio.voice_from, Channel.SMS.value: twilio.sms_from}
    # Core INSERTs for the whole batch, one statement per table.
    attempts = cast(Table, Attempt.__table__)
    attempt_ids: dict[int, int] = dict(
        session.execute(
            insert(attempts).returning(attempts.c.survey_id, attempts.c.id),
            [
                {
                    "survey_id": due.id,
                    "channel": due.channel,
                    "number": numbers[(due.id, due.channel)] + 1,
                    "from_number": senders[due.channel],
                    "status": AttemptStatus.PENDING.value,
                    "created_at": slots[due.id] or now,
                }
                for due in planned
            ],
        ).all()
    )
    message_ids: dict[int, int] = {}
    if bodies:
        messages = cast(Table, Message.__table__)
        message_ids = dict(
            session.execute(
                insert(messages).returning(messages.c.survey_id, messages.c.id),
                [
                    {
                        "direction": Direction.OUTBOUND.value,
                        "survey_id": due.id,
                        "from_e164": twilio.sms_from,
                        "to_e164": due.phone,
                        "body": bodies[due.id],
                        "status": AttemptStatus.PENDING.value,
                        "provider_id": None,
                        "error_code": None,
                        "late": False,
                        "created_at": now,
                    }
                    for due in planned
                    if due.id in bodies
                ],
            ).all()
        )
    contacts = [
        Contact(
            survey_id=due.id,
            attempt_id=attempt_ids[due.id],
            channel=Channel(due.channel),
            token=due.token,
            to=str(due.phone),
            from_=senders[due.channel],
            language=due.language,
            body=bodies.get(due.id),
            message_id=message_ids.get(due.id),
            slot_at=slots[due.id],
            closes_at=closes_at[due.campaign_id],
            rates=tuple(sorted(rates_of[due.campaign_id].items())) if due.channel == Channel.VOICE else (),
        )
        for due in planned
    ]
    counts["attempts"] += len(contacts)
    return sorted(contacts, key=lambda c: (c.slot_at or now, c.attempt_id)), deferred


def _finish(
    session: Session,
    survey_id: int,
    disposition: Disposition,
    settings: Settings,
    now: datetime,
    counts: Counter[str],
    key: str,
) -> None:
    finish_survey_and_case(session, _survey(session, survey_id), disposition, settings, now)
    counts[key] += 1


def _rates_of(rules: dict[int, CampaignRules], gateway: GatewaySettings) -> dict[int, dict[str, float]]:
    """Return each campaign's call-rate buckets and their calls per second."""
    rates_of: dict[int, dict[str, float]] = {}
    for campaign_id, r in rules.items():
        rates_of[campaign_id] = {ACCOUNT_BUCKET: gateway.calls_per_second}
        if r.definition.calls_per_second is not None:
            rates_of[campaign_id][campaign_bucket(campaign_id)] = r.definition.calls_per_second
    return rates_of


def _take_slots(
    session: Session,
    ready: list[Due],
    rules: dict[int, CampaignRules],
    rates_of: dict[int, dict[str, float]],
    closes_at: dict[int, datetime],
    settings: Settings,
    now: datetime,
    until: datetime,
    counts: Counter[str],
) -> tuple[dict[int, datetime | None], int]:
    """Give each ready survey its call slot (texts need none); release what does not fit."""
    slots: dict[int, datetime | None] = {d.id: None for d in ready if d.channel != Channel.VOICE}
    calls = [d for d in ready if d.channel == Channel.VOICE]
    if not calls:
        return slots, 0
    buckets = sorted({b for d in calls for b in rates_of[d.campaign_id]})
    free = lock_buckets(session, buckets, now)
    limit = settings.gateway.max_concurrent_calls
    room = limit - calls_in_flight(session, now, limit)
    deferred: list[int] = []
    for due in calls:
        r = rules[due.campaign_id]
        if room <= 0:
            deferred.append(due.id)
            continue
        at, moved = next_slot(free, rates_of[due.campaign_id], now)
        if at >= until:
            deferred.append(due.id)
            continue
        if at >= closes_at[due.campaign_id]:  # the window closes before the slot comes
            deadline = r.deadline(due.completed_at, due.first_attempt_at)
            counts[_outside_window(session, r, _survey(session, due.id), at, deadline, settings)] += 1
            continue
        free = moved
        slots[due.id] = at
        room -= 1
    store_buckets(session, free)
    if deferred:
        surveys = cast(Table, Survey.__table__)
        session.execute(
            update(surveys)
            .where(surveys.c.id.in_(deferred))
            .values(state=SurveyState.SCHEDULED, lease_owner=None, lease_expires_at=None, updated_at=now)
        )
        counts["deferred_rate_limit"] += len(deferred)
    return slots, len(deferred)
