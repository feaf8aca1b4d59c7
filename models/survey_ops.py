"""Operations on a survey that several edges share: answers, opt-outs, finishing.

Each takes the caller's session and never commits: the webhook or job that owns the session commits
once, before it answers.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, joinedload

from models.items import ServiceItem
from models.optouts import OptOut, OptOutChannel, OptOutSource
from models.surveys import Answer, Attempt, Survey, SurveyState


def survey_by_token(session: Session, token: str | None, *, for_update: bool = False) -> Survey | None:
    """Return the survey a webhook URL names, locking its row when asked."""
    if not token or "\x00" in token or len(token) > 64:
        return None  # never a token we issued; PostgreSQL refuses NUL in text
    # The item (with its department) and the campaign come in the same query: every webhook needs them.
    stmt = (
        select(Survey)
        .where(Survey.token == token)
        .options(joinedload(Survey.item, innerjoin=True), joinedload(Survey.campaign, innerjoin=True))
    )
    if for_update:
        # Serialises concurrent webhooks of one call (a repeated Gather arriving twice at once).
        stmt = stmt.with_for_update(of=Survey)
    return session.scalars(stmt).first()


def attempt_of(session: Session, survey: Survey, attempt_id: str | int | None) -> Attempt | None:
    """Return the survey's attempt with this id, or None (ids from URLs are untrusted)."""
    try:
        wanted = int(attempt_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not 0 < wanted < 2**31:
        return None  # outside the id column's range: never an attempt of ours
    attempt = session.get(Attempt, wanted)
    return attempt if attempt is not None and attempt.survey_id == survey.id else None


def record_answer(
    session: Session,
    survey: Survey,
    question: str,
    value: str,
    *,
    channel: str,
    now: datetime,
    recording_duration: int | None = None,
) -> bool:
    """Store one answer unless the survey already has one for this question; return if stored."""
    values = {
        "survey_id": survey.id,
        "question": question,
        "value": value,
        "channel": channel,
        "received_at": now,
        "late": False,
        "recording_url": value if recording_duration is not None else None,
        "recording_duration": recording_duration,
    }
    # One statement, and the unique (survey, question) constraint decides: a repeated webhook
    # can never store an answer twice, even when two arrive at once.
    dialect = session.get_bind().dialect.name
    insert_stmt = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(Answer).values(**values)
    stmt = insert_stmt.on_conflict_do_nothing(index_elements=["survey_id", "question"]).returning(Answer.id)
    return session.execute(stmt).first() is not None


def answers_of(session: Session, survey: Survey) -> dict[str, Answer]:
    """Return the survey's answers by question."""
    rows = session.scalars(select(Answer).where(Answer.survey_id == survey.id))
    return {answer.question: answer for answer in rows}


def add_opt_out(
    session: Session,
    phone_e164: str,
    *,
    channel: str = OptOutChannel.ALL,
    source: str = OptOutSource.KEYPAD,
    now: datetime,
    reason: str | None = None,
    created_by: str | None = None,
) -> bool:
    """Record that a number must not be contacted again (no-op if already opted out)."""
    covering = {OptOutChannel.ALL, channel}  # a channel opt-out is covered by an "all" one
    live = select(OptOut.id).where(
        OptOut.phone_e164 == phone_e164, OptOut.revoked_at.is_(None), OptOut.channel.in_(covering)
    )
    if session.scalars(live.limit(1)).first() is not None:
        return False
    session.add(
        OptOut(
            phone_e164=phone_e164,
            channel=channel,
            source=source,
            reason=reason,
            created_at=now,
            created_by=created_by,
        )
    )
    session.flush()
    return True


def finish_survey(session: Session, survey: Survey, disposition: str, now: datetime) -> None:
    """Record the survey's final disposition; it will not be contacted again."""
    survey.state = SurveyState.DONE
    survey.disposition = disposition
    survey.finished_at = now
    survey.next_attempt_at = None
    survey.lease_owner = None
    survey.lease_expires_at = None
    survey.updated_at = now


def item_of(session: Session, survey: Survey) -> ServiceItem:
    """Return the service item a survey is about."""
    item = session.get(ServiceItem, survey.item_id)
    assert item is not None  # a foreign key guarantees it
    return item
