"""Surveys of sampled items, their contact attempts and the answers they collect."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.campaigns import Campaign
from models.items import ServiceItem


class SurveyKind(StrEnum):
    """Why a citizen is contacted."""

    SURVEY = "survey"  # the return visit after a completed item
    VERIFICATION = "verification"  # the visit after a case was answered
    TEST = "test"  # a staff member's test call or text: never in figures, never opens a case


class SurveyState(StrEnum):
    """Where a survey is in its life."""

    SCHEDULED = "scheduled"  # waiting for next_attempt_at
    DIALLING = "dialling"  # claimed by a dispatcher (lease), attempt being placed
    IN_PROGRESS = "in_progress"  # a call is ringing or live, or an SMS conversation is open
    DONE = "done"  # final disposition recorded


class AttemptStatus(StrEnum):
    """Status of one call or text; Twilio's statuses map onto these in one table (ivr)."""

    PENDING = "pending"  # row committed, gateway not yet called (a crash here is closed as failed)
    QUEUED = "queued"  # the gateway accepted it and gave its provider id
    RINGING = "ringing"  # the phone is ringing
    IN_PROGRESS = "in_progress"  # answered, the script is running
    COMPLETED = "completed"  # a call that was answered and ended
    BUSY = "busy"  # line busy
    NO_ANSWER = "no_answer"  # rang out
    MACHINE = "machine"  # answering machine detected; hung up
    FAILED = "failed"  # could not be placed or delivered (error_code says why)
    CANCELED = "canceled"  # cancelled before it was answered
    SENT = "sent"  # a text left the provider
    DELIVERED = "delivered"  # a text reached the handset
    UNDELIVERED = "undelivered"  # a text did not reach the handset


# Statuses after which an attempt is over (a retry may follow).
FINAL_ATTEMPT_STATUSES = frozenset(
    {
        AttemptStatus.COMPLETED,
        AttemptStatus.BUSY,
        AttemptStatus.NO_ANSWER,
        AttemptStatus.MACHINE,
        AttemptStatus.FAILED,
        AttemptStatus.CANCELED,
        AttemptStatus.UNDELIVERED,
    }
)
# How far an attempt got, for callbacks that arrive late or twice: a status only ever moves forward.
# A call goes queued, ringing, in progress; a text queued, sent, delivered; both then end.
ATTEMPT_PROGRESS: dict[AttemptStatus, int] = {
    AttemptStatus.PENDING: 0,
    AttemptStatus.QUEUED: 1,
    AttemptStatus.RINGING: 2,
    AttemptStatus.SENT: 2,
    AttemptStatus.IN_PROGRESS: 3,
    AttemptStatus.DELIVERED: 3,
    **dict.fromkeys(FINAL_ATTEMPT_STATUSES, 4),
}


def attempt_progress(status: str) -> int:
    """Return how far an attempt in this status got (0 for a status this version does not know)."""
    return ATTEMPT_PROGRESS.get(status, 0)  # type: ignore[call-overload]


class Survey(Base):
    __tablename__ = "surveys"
    __table_args__ = (
        UniqueConstraint("campaign_id", "item_id", "kind"),
        Index("ix_surveys_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("service_items.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default=SurveyKind.SURVEY)
    # Unguessable token carried in the webhook URLs of this survey's calls.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    quarter: Mapped[str] = mapped_column(String(6))
    language: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(20), default=SurveyState.SCHEDULED)
    disposition: Mapped[str | None] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(10))
    next_attempt_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    script_state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_attempt_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    item: Mapped[ServiceItem] = relationship()
    campaign: Mapped[Campaign] = relationship()


class Attempt(Base):
    __tablename__ = "attempts"
    # Its first column serves every look-up of a survey's attempts (no index of survey_id alone).
    __table_args__ = (UniqueConstraint("survey_id", "channel", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    channel: Mapped[str] = mapped_column(String(10))
    number: Mapped[int]
    # CallSid or MessageSid; empty until the gateway accepted the call or message.
    provider_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    from_number: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    answered_by: Mapped[str | None] = mapped_column(String(30))
    error_code: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration_seconds: Mapped[int | None]


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("survey_id", "question"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    question: Mapped[str] = mapped_column(String(30))
    value: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(10))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Arrived after the survey's quarter was closed: kept, shown as late, never in published figures.
    late: Mapped[bool] = mapped_column(default=False)
    recording_url: Mapped[str | None] = mapped_column(String(500))
    recording_duration: Mapped[int | None]
