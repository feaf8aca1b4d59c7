"""Citizens who asked never to be contacted again (by keypad, SMS keyword or staff)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, Text, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow


class OptOutChannel(StrEnum):
    """Which contacts an opt-out stops."""

    VOICE = "voice"  # calls only
    SMS = "sms"  # texts only
    ALL = "all"  # every contact


class OptOutSource(StrEnum):
    """How the opt-out was given."""

    KEYPAD = "keypad"  # pressed 0 in a call
    SMS_KEYWORD = "sms_keyword"  # replied TD / 退订 / STOP ...
    CARRIER = "carrier"  # the carrier reported the number opted out (Twilio 21610)
    STAFF = "staff"  # entered by staff


class OptOut(Base):
    __tablename__ = "opt_outs"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone_e164: Mapped[str] = mapped_column(String(20), index=True)
    channel: Mapped[str] = mapped_column(String(10), default=OptOutChannel.ALL)
    source: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))
    # Set when the citizen opted back in (START / 订阅) or staff removed it; the row stays as history.
    revoked_at: Mapped[datetime | None]


def is_opted_out(session: Session, phone_e164: str, channel: str) -> bool:
    """Return whether a live opt-out stops contacting this number on this channel."""
    stmt = select(OptOut.id).where(
        OptOut.phone_e164 == phone_e164,
        OptOut.revoked_at.is_(None),
        or_(OptOut.channel == OptOutChannel.ALL, OptOut.channel == channel),
    )
    return session.scalars(stmt.limit(1)).first() is not None
