"""Dispatch, exactly once (DESIGN §5): claim due surveys with a lease, write the attempts, commit, call.

One run repeats, until its time budget is spent or nothing is due:

1. claim a batch of due surveys with a lease, commit (scheduler.claims.claim_due);
2. re-check them, take call-rate slots, write one PENDING Attempt per contact, commit
   (scheduler.claims.prepare_attempts);
3. call the gateway for each attempt at its slot, never before (nor sooner than 1 / rate after this
   process's previous call actually started), at most once per attempt and before its calling window
   closes; write the provider ids back in small groups (conditionally, so a status webhook that came
   first wins).

A crash between 2 and 3 leaves PENDING attempts without provider id: `recover_leases` closes them as
failed ("lease-expired") once the lease ran out, and they count as attempts. Rate limits: calls wait
for their slot (the injected `sleep`) within the run's budget; what does not fit in the budget or the
concurrent-call limit goes back to SCHEDULED for the next tick, and the run stops.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Integer, String, Table, bindparam, case, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.cases_ops import finish_survey_and_case
from models.domain import Channel, Disposition
from models.messages import Message
from models.optouts import OptOutChannel, OptOutSource
from models.settings import Settings
from models.survey_ops import add_opt_out
from models.surveys import FINAL_ATTEMPT_STATUSES, Attempt, AttemptStatus, Survey, SurveyState
from scheduler.claims import ComposeSms, Contact, claim_due, prepare_attempts, release
from scheduler.gateway import CallRequest, Gateway, GatewayError, GatewayResult, SmsRequest
from scheduler.locks import begin_write, default_owner
from scheduler.outcomes import settle_attempt
from scheduler.ratelimit import next_slot

__all__ = ["ComposeSms", "Dispatcher", "claim_due", "recover_leases"]

logger = logging.getLogger(__name__)

# Provider codes that say the number cannot be surveyed: the survey ends as not eligible.
INVALID_NUMBER_CODES = frozenset({"21211", "21214", "21217", "21401", "21407", "21612", "21614"})
# The carrier says the citizen unsubscribed: recorded as an opt-out, the survey ends as refused.
OPTED_OUT_CODES = frozenset({"21610"})
LEASE_EXPIRED = "lease-expired"
# Provider ids are written back after this many calls (and before any wait for a rate slot).
RESULT_GROUP = 50
# Placed calls are written back before any wait for a rate slot at least this long (seconds).
STORE_BEFORE_WAIT = 0.05
# Consecutive retryable gateway errors after which the rest of the batch waits for the next tick.
MAX_CONSECUTIVE_ERRORS = 3


@dataclass
class Dispatcher:
    """Places the attempts of due surveys through a gateway."""

    sessions: sessionmaker[Session]
    settings: Settings
    gateway: Gateway
    compose_sms: ComposeSms
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    owner: str = field(default_factory=default_owner)
    # Per rate bucket, when this process's next call may start: 1 / rate after the previous call
    # actually started (a slow gateway starts later than the slots).
    _free_at: dict[str, datetime] = field(default_factory=dict, init=False, repr=False)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.scheduler.lease_seconds)

    def run(self, budget_seconds: float | None = None) -> dict[str, int]:
        """Dispatch due surveys until nothing is due or the budget is spent; return counts."""
        counts: Counter[str] = Counter()
        scheduler = self.settings.scheduler
        if budget_seconds is None:
            budget_seconds = min(scheduler.tick_seconds, scheduler.lease_seconds / 2)
        until = self.clock() + timedelta(seconds=budget_seconds)
        while (now := self.clock()) < until:
            with self.sessions() as session:
                ids = claim_due(
                    session, owner=self.owner, now=now, lease=self.lease, limit=scheduler.batch_size
                )
                session.commit()
            if not ids:
                break
            counts["claimed"] += len(ids)
            with self.sessions() as session:
                contacts, deferred = prepare_attempts(
                    session,
                    ids,
                    owner=self.owner,
                    settings=self.settings,
                    compose_sms=self.compose_sms,
                    now=now,
                    until=until,
                    counts=counts,
                )
                session.commit()
            stopped = self._place(contacts, now + self.lease, counts)
            if deferred or stopped:
                break
        return dict(counts)

    def _place(self, contacts: list[Contact], lease_until: datetime, counts: Counter[str]) -> bool:
        """Call the gateway once per attempt, at its slot; write results back in groups.

        Returns whether the batch stopped early (its lease ran short, its calling window closed, or
        the gateway failed), in which case the unplaced rest is abandoned and the run ends.
        """
        stopped = False
        margin = min(timedelta(seconds=30), self.lease / 10)
        done: list[tuple[Contact, GatewayResult | GatewayError]] = []
        errors_in_a_row = 0
        unplaced = 0  # position of the first contact not handed to the gateway yet
        try:
            for index, contact in enumerate(contacts):
                rates = dict(contact.rates)
                if contact.slot_at is not None:
                    start_at, _ = next_slot(self._free_at, rates, contact.slot_at)
                    wait = (start_at - self.clock()).total_seconds()
                    if wait > 0:
                        if wait >= STORE_BEFORE_WAIT:
                            self._store(done, counts)
                        self.sleep(wait)
                started = self.clock()
                # Behind a slow gateway the slots slip: what the window's close or the lease
                # overtakes waits for the next tick (which moves it to the next opening).
                closed = contact.closes_at is not None and started >= contact.closes_at
                if closed or started >= lease_until - margin:
                    self._abandon(contacts[index:], counts)
                    stopped = True
                    break
                unplaced = index + 1  # from here on, it may have been dialled
                _, self._free_at = next_slot(self._free_at, rates, started)
                outcome = self._call(contact)
                done.append((contact, outcome))
                if isinstance(outcome, GatewayError):
                    errors_in_a_row += 1
                    account_problem = not outcome.retryable and _disposition_for(outcome) is None
                    if account_problem or errors_in_a_row >= MAX_CONSECUTIVE_ERRORS:
                        logger.error("gateway %s: %s; the batch's rest waits", self.gateway.name, outcome)
                        self._store(done, counts)
                        self._abandon(contacts[unplaced:], counts)
                        stopped = True
                        break
                else:
                    errors_in_a_row = 0
                if len(done) >= RESULT_GROUP:
                    self._store(done, counts)
        except (KeyboardInterrupt, SystemExit):
            # Stopped by the operator: keep what was placed, give back what was not, then stop.
            self._store(done, counts)
            self._abandon(contacts[unplaced:], counts)
            raise
        self._store(done, counts)
        return stopped

    def _call(self, contact: Contact) -> GatewayResult | GatewayError:
        try:
            if contact.channel is Channel.VOICE:
                return self.gateway.place_call(
                    CallRequest(
                        survey_token=contact.token,
                        attempt_id=contact.attempt_id,
                        to=contact.to,
                        from_=contact.from_,
                        language=contact.language,
                    )
                )
            return self.gateway.send_sms(
                SmsRequest(
                    survey_token=contact.token,
                    attempt_id=contact.attempt_id,
                    to=contact.to,
                    from_=contact.from_,
                    body=contact.body or "",
                )
            )
        except GatewayError as exc:
            return exc
        except Exception as exc:  # a gateway bug must not stop the scheduler: count it as failed
            logger.exception("gateway %s raised on attempt %s", self.gateway.name, contact.attempt_id)
            return GatewayError(str(exc), code="gateway-exception", retryable=True)

    def _store(self, done: list[tuple[Contact, GatewayResult | GatewayError]], counts: Counter[str]) -> None:
        """Write placed attempts' provider ids and failed attempts' outcomes; empties `done`."""
        if not done:
            return
        now = self.clock()
        placed = [(c, r) for c, r in done if isinstance(r, GatewayResult)]
        failed = [(c, r) for c, r in done if isinstance(r, GatewayError)]
        done.clear()
        with self.sessions() as session:
            begin_write(session)
            if placed:
                _store_placed(session, placed, self.owner, now)
                counts["placed"] += len(placed)
            for contact, error in failed:
                counts[self._settle_failure(session, contact, error, now)] += 1
            session.commit()

    def _settle_failure(self, session: Session, contact: Contact, error: GatewayError, now: datetime) -> str:
        attempt = session.get(Attempt, contact.attempt_id)
        survey = session.get(Survey, contact.survey_id)
        assert attempt is not None and survey is not None
        logger.info("attempt %s failed: %s (code %s)", attempt.id, error, error.code)
        if attempt.status == AttemptStatus.PENDING:
            attempt.status = AttemptStatus.FAILED
            attempt.error_code = (error.code or "unknown")[:20]
            attempt.ended_at = now
        if contact.message_id is not None:
            session.execute(
                update(Message)
                .where(Message.id == contact.message_id)
                .values(status=AttemptStatus.FAILED, error_code=attempt.error_code)
            )
        if survey.state != SurveyState.DIALLING or survey.lease_owner != self.owner:
            return "failed_already_settled"
        if survey.first_attempt_at is None:
            survey.first_attempt_at = attempt.created_at
        disposition = _disposition_for(error)
        if disposition is Disposition.REFUSED:
            channel = OptOutChannel.SMS if contact.channel is Channel.SMS else OptOutChannel.ALL
            add_opt_out(session, contact.to, channel=channel, source=OptOutSource.CARRIER, now=now)
        if disposition is not None:
            finish_survey_and_case(session, survey, disposition, self.settings, now)
            return f"failed_{disposition.value}"
        survey.disposition = Disposition.FAILED
        return f"failed_{settle_attempt(session, survey, attempt, self.settings, now)}"

    def _abandon(self, contacts: Sequence[Contact], counts: Counter[str]) -> None:
        """Take back attempts this process committed but never placed; their surveys are due again."""
        if not contacts:
            return
        now = self.clock()
        with self.sessions() as session:
            begin_write(session)
            for contact in contacts:
                removed = session.execute(
                    delete(Attempt).where(
                        Attempt.id == contact.attempt_id,
                        Attempt.status == AttemptStatus.PENDING,
                        Attempt.provider_id.is_(None),
                    )
                ).rowcount  # type: ignore[attr-defined]
                if not removed:  # recovery closed it meanwhile
                    continue
                if contact.message_id is not None:
                    session.execute(delete(Message).where(Message.id == contact.message_id))
                survey = session.get(Survey, contact.survey_id)
                if survey is not None and survey.lease_owner == self.owner:
                    release(survey, now)
            session.commit()
        counts["abandoned"] += len(contacts)


def _disposition_for(error: GatewayError) -> Disposition | None:
    """Return how a survey ends after this gateway error, or None when the retry policy decides."""
    if error.code in OPTED_OUT_CODES:
        return Disposition.REFUSED
    if not error.retryable and error.code in INVALID_NUMBER_CODES:
        return Disposition.NOT_ELIGIBLE
    return None


def _set_provider_ids(session: Session, table: Table, provider_ids: dict[int, str], **values: Any) -> None:
    """Set each row's provider id (by primary key `id`) and the same other values on all of them."""
    if session.get_bind().dialect.name == "postgresql":
        # One statement for the group: psycopg runs an executemany as one statement per row.
        session.execute(
            update(table)
            .where(table.c.id.in_(list(provider_ids)))
            .values(provider_id=case(provider_ids, value=table.c.id), **values)
        )
        return
    session.execute(
        update(table)
        .where(table.c.id == bindparam("row_id", type_=Integer))
        .values(provider_id=bindparam("provider_id", type_=String), **values),
        [{"row_id": row_id, "provider_id": provider_id} for row_id, provider_id in provider_ids.items()],
    )


def _store_placed(
    session: Session, placed: list[tuple[Contact, GatewayResult]], owner: str, now: datetime
) -> None:
    attempts = cast(Table, Attempt.__table__)
    _set_provider_ids(
        session,
        attempts,
        {c.attempt_id: r.provider_id for c, r in placed},
        # A status webhook may have moved the attempt on already: keep what it said.
        status=case(
            (attempts.c.status == AttemptStatus.PENDING, AttemptStatus.QUEUED.value),
            else_=attempts.c.status,
        ),
        started_at=func.coalesce(attempts.c.started_at, now),
    )
    surveys = cast(Table, Survey.__table__)
    # An answer webhook may have come before this write (the survey is in progress already, or
    # done): the attempt still counts from now for expiry, and this owner's lease ends anyway.
    mine = surveys.c.lease_owner == owner
    session.execute(
        update(surveys)
        .where(
            surveys.c.id.in_([c.survey_id for c, _ in placed]),
            mine | surveys.c.first_attempt_at.is_(None),
        )
        .values(
            state=case(
                (mine & (surveys.c.state == SurveyState.DIALLING), SurveyState.IN_PROGRESS.value),
                else_=surveys.c.state,
            ),
            lease_owner=case((mine, None), else_=surveys.c.lease_owner),
            lease_expires_at=case((mine, None), else_=surveys.c.lease_expires_at),
            first_attempt_at=func.coalesce(surveys.c.first_attempt_at, now),
            updated_at=now,
        )
    )
    texts = {c.message_id: r.provider_id for c, r in placed if c.message_id is not None}
    if texts:
        messages = cast(Table, Message.__table__)
        _set_provider_ids(session, messages, texts, status=AttemptStatus.QUEUED.value)


def recover_leases(session: Session, settings: Settings, now: datetime, limit: int = 500) -> dict[str, int]:
    """Settle surveys whose dispatcher's lease ran out: unplaced attempts fail (the caller commits)."""
    counts: Counter[str] = Counter()
    begin_write(session)
    expired = session.scalars(
        select(Survey)
        .where(Survey.state == SurveyState.DIALLING, Survey.lease_expires_at < now)
        .order_by(Survey.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for survey in expired:
        attempts = session.scalars(
            select(Attempt).where(Attempt.survey_id == survey.id).order_by(Attempt.id.desc())
        ).all()
        unplaced = [a for a in attempts if a.status == AttemptStatus.PENDING and a.provider_id is None]
        for attempt in unplaced:
            attempt.status = AttemptStatus.FAILED
            attempt.error_code = LEASE_EXPIRED
            attempt.ended_at = now
        if attempts and survey.first_attempt_at is None:  # an attempt that counts, placed or not
            survey.first_attempt_at = attempts[-1].created_at
        for attempt in attempts:
            if attempt.status == AttemptStatus.PENDING:  # the provider id came by webhook
                attempt.status = AttemptStatus.QUEUED
        session.execute(
            update(Message)
            .where(Message.survey_id == survey.id, Message.status == AttemptStatus.PENDING)
            .values(status=AttemptStatus.FAILED, error_code=LEASE_EXPIRED)
        )
        if unplaced:
            survey.disposition = Disposition.FAILED
            action = settle_attempt(session, survey, unplaced[0], settings, now)
            counts["closed_unplaced"] += len(unplaced)
            counts[f"survey_{action}"] += 1
        elif attempts and attempts[0].status not in FINAL_ATTEMPT_STATUSES:
            survey.state = SurveyState.IN_PROGRESS  # the call was placed before the crash
            survey.lease_owner = None
            survey.lease_expires_at = None
            survey.updated_at = now
            counts["in_progress"] += 1
        else:
            release(survey, now)
            counts["released"] += 1
    return dict(counts)
