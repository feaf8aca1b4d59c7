"""What follows an attempt that ended without a conversation outcome, and the expiry sweep.

`settle_attempt` is shared by the dispatcher (gateway errors, leases that ran out) and the voice / SMS
status webhooks. It applies the campaign's RetryPolicy through policy.next_step, so every retry and
fallback lands inside a calling window or the survey ends.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.orm import Session

from models.campaigns import Campaign
from models.cases_ops import finish_survey_and_case
from models.domain import Channel, Disposition
from models.items import ServiceItem
from models.optouts import is_opted_out
from models.phones import PhoneKind
from models.settings import Settings
from models.surveys import Answer, Attempt, AttemptStatus, Survey, SurveyKind, SurveyState
from scheduler.locks import begin_write
from scheduler.policy import NextAction, next_step
from scheduler.rules import contact_age_from, contact_policy_for, retry_policy_for, rules_for

__all__ = [
    "SETTLED_DISPOSITIONS",
    "Settled",
    "contact_policy_for",
    "expire_sweep",
    "retry_policy_for",
    "settle_attempt",
]

logger = logging.getLogger(__name__)

# The disposition a survey ends with when its last attempt ended this way and no attempt is left.
SETTLED_DISPOSITIONS: dict[str, Disposition] = {
    AttemptStatus.BUSY: Disposition.BUSY,
    AttemptStatus.NO_ANSWER: Disposition.NO_ANSWER,
    AttemptStatus.MACHINE: Disposition.MACHINE,
    AttemptStatus.FAILED: Disposition.FAILED,
    AttemptStatus.CANCELED: Disposition.NO_ANSWER,
    AttemptStatus.UNDELIVERED: Disposition.UNDELIVERED,
}
# An open conversation (a live call, an SMS awaiting replies) is left this long past expiry.
CONVERSATION_GRACE = timedelta(hours=2)
RATING_QUESTION = "rating"  # the Answer.question of a survey's rating (ivr.script's RATING)


class Settled(StrEnum):
    """What settle_attempt did besides the NextAction values (retry, fallback, expire, done)."""

    ALREADY_DONE = "already_done"  # the survey had its final disposition: nothing changed
    SUPERSEDED = "superseded"  # a newer attempt exists (a late callback): nothing changed


def settle_attempt(
    session: Session, survey: Survey, attempt: Attempt, settings: Settings, now: datetime
) -> str:
    """Retry, fall back, expire or end the survey after an attempt without a conversation outcome.

    Returns the action taken: "retry", "fallback", "expire", "done", or "already_done" /
    "superseded" when nothing changed. Always clears the lease of a survey it changes.
    """
    status = AttemptStatus(attempt.status)
    if status not in SETTLED_DISPOSITIONS:
        raise ValueError(
            f"attempt status {status} is not settled by retries (one of {', '.join(SETTLED_DISPOSITIONS)})"
        )
    if survey.state == SurveyState.DONE:
        return Settled.ALREADY_DONE
    latest = session.scalar(select(func.max(Attempt.id)).where(Attempt.survey_id == survey.id))
    if latest is not None and latest != attempt.id:
        return Settled.SUPERSEDED

    if survey.first_attempt_at is None:  # the attempt counts, even if its result was never stored
        survey.first_attempt_at = attempt.created_at
    campaign = session.get(Campaign, survey.campaign_id)
    item = session.get(ServiceItem, survey.item_id)
    assert campaign is not None and item is not None  # foreign keys
    retry = retry_policy_for(campaign)
    channel = Channel(attempt.channel)
    if channel not in retry.channel_order:  # the campaign dropped this channel since
        action = NextAction.DONE
        step_at, step_channel = None, channel
    else:
        # Only this visit's attempts count: a verification survey reused for a second round starts
        # again at its created_at (models.cases_ops.schedule_verification), and every attempt of a
        # visit is made at or after it (due no sooner than created, claimed once due).
        attempts_on_channel = session.scalar(
            select(func.count()).where(
                Attempt.survey_id == survey.id,
                Attempt.channel == channel,
                Attempt.created_at >= survey.created_at,
            )
        )
        step = next_step(
            retry,
            contact_policy_for(campaign, settings),
            channel=channel,
            attempts_on_channel=max(1, int(attempts_on_channel or 0)),
            last_attempt_at=attempt.created_at,
            first_attempt_at=survey.first_attempt_at,
            is_mobile=item.phone_kind == PhoneKind.MOBILE,
            now=now,
        )
        action, step_at, step_channel = step.action, step.at, step.channel
    if (
        action is NextAction.FALLBACK
        and item.phone_e164
        and is_opted_out(session, item.phone_e164, step_channel)
    ):
        action = NextAction.DONE

    if action in (NextAction.RETRY, NextAction.FALLBACK):
        survey.state = SurveyState.SCHEDULED
        survey.channel = step_channel
        survey.next_attempt_at = step_at
        survey.lease_owner = None
        survey.lease_expires_at = None
        survey.updated_at = now
    elif action is NextAction.EXPIRE:
        # A verification visit's case learns it ended unanswered (a supervisor decides next).
        finish_survey_and_case(session, survey, Disposition.NOT_CONTACTED, settings, now)
    else:
        finish_survey_and_case(session, survey, SETTLED_DISPOSITIONS[status], settings, now)
    logger.debug("survey %s after attempt %s (%s): %s", survey.id, attempt.id, status, action)
    return action.value


def expire_sweep(session: Session, settings: Settings, now: datetime) -> dict[str, int]:
    """End the surveys that can no longer be contacted in time (the caller commits)."""
    counts = {"expired_scheduled": 0, "expired_unattempted": 0, "closed_open": 0}
    begin_write(session)
    answered = exists().where(Answer.survey_id == Survey.id)
    rated = exists().where(Answer.survey_id == Survey.id, Answer.question == RATING_QUESTION)
    for campaign in session.scalars(select(Campaign).order_by(Campaign.id)):
        rules = rules_for(campaign, settings)
        attempted_before = now - rules.retry.expire_after
        too_old = exists().where(
            ServiceItem.id == Survey.item_id, contact_age_from() <= now - rules.max_age
        )
        scheduled = (Survey.campaign_id == campaign.id, Survey.state == SurveyState.SCHEDULED)
        open_ = (
            Survey.campaign_id == campaign.id,
            Survey.state == SurveyState.IN_PROGRESS,
            Survey.first_attempt_at <= attempted_before - CONVERSATION_GRACE,
        )
        # (count, disposition, which surveys end with it)
        sweeps: list[tuple[str, Disposition, tuple[ColumnElement[bool], ...]]] = [
            (
                "expired_scheduled",
                Disposition.NOT_CONTACTED,
                (*scheduled, Survey.first_attempt_at <= attempted_before),
            ),
            (
                "expired_unattempted",
                Disposition.NOT_CONTACTED,
                (*scheduled, Survey.first_attempt_at.is_(None), too_old),
            ),
            # A conversation still open after expiry (an SMS never answered, a call whose final
            # callback was lost) ends as the engine ends one cut short: partial once rated,
            # break-off when the citizen answered something else (a comment the parser could not
            # rate), else no answer.
            ("closed_open", Disposition.PARTIAL, (*open_, rated)),
            ("closed_open", Disposition.BREAK_OFF, (*open_, answered & ~rated)),
            ("closed_open", Disposition.NO_ANSWER, (*open_, ~answered)),
        ]
        for key, disposition, where in sweeps:
            counts[key] += _finish_where(session, where, disposition, settings, now)
    return counts


def _finish_where(
    session: Session,
    where: tuple[ColumnElement[bool], ...],
    disposition: Disposition,
    settings: Settings,
    now: datetime,
) -> int:
    """End the surveys matching `where`; return how many ended."""
    result = session.execute(
        update(Survey)
        .where(*where, Survey.kind != SurveyKind.VERIFICATION)
        .values(
            state=SurveyState.DONE,
            disposition=disposition,
            finished_at=now,
            next_attempt_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    # Verification visits one by one: each one's case learns that it ended (few rows; one a
    # webhook holds is left for the next sweep).
    visits = session.scalars(
        select(Survey)
        .where(*where, Survey.kind == SurveyKind.VERIFICATION)
        .order_by(Survey.id)
        .with_for_update(skip_locked=True)
    ).all()
    for visit in visits:
        finish_survey_and_case(session, visit, disposition, settings, now)
    return int(result.rowcount) + len(visits)  # type: ignore[attr-defined]
