"""Every SMS in and out, idempotent on the provider's MessageSid."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Direction(StrEnum):
    """Which way a message travelled."""

    INBOUND = "inbound"  # citizen to us
    OUTBOUND = "outbound"  # us to citizen


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_from_to", "from_e164", "to_e164"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(10))
    provider_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("surveys.id"), index=True)
    from_e164: Mapped[str | None] = mapped_column(String(20))
    to_e164: Mapped[str | None] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(20))
    # A reply that reached a survey already closed.
    late: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
