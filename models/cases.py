"""Rectification cases opened by bad reviews, and every transition they go through."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class CaseState(StrEnum):
    """Where a rectification case is in the closed loop."""

    OPEN = "open"  # waiting for the department's feedback
    ANSWERED = "answered"  # the department answered; verification visit pending
    REOPENED = "reopened"  # the citizen was not satisfied with the handling
    ESCALATED = "escalated"  # overdue or reopened twice: in a supervisor's hands
    CLOSED = "closed"  # verified satisfied, or closed by a supervisor


class Escalation(StrEnum):
    """What a supervisor decided for an escalated case."""

    INTERVIEW = "interview"  # 约谈: the department head is interviewed
    DISCIPLINE = "discipline"  # transferred to the discipline inspection body


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_department_state", "department_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"), unique=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    quarter: Mapped[str] = mapped_column(String(6))
    grade: Mapped[str] = mapped_column(String(20))
    categories: Mapped[list[str]] = mapped_column(default=list)
    comment: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default=CaseState.OPEN)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime]
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    feedback: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None]
    # The verification visit that asks the citizen whether the handling satisfied them.
    verification_survey_id: Mapped[int | None] = mapped_column(ForeignKey("surveys.id"))
    verification_result: Mapped[str | None] = mapped_column(String(20))
    verified_at: Mapped[datetime | None]
    reopened_count: Mapped[int] = mapped_column(default=0)
    overdue_flagged_at: Mapped[datetime | None]
    escalation: Mapped[str | None] = mapped_column(String(20))
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None]


class CaseEvent(Base):
    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
