"""Why a campaign did not pick a service item: one row per campaign and item, so reruns skip it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class SkipReason(StrEnum):
    """Why an item in a campaign's scope and age range got no survey (a skip is final)."""

    NOT_SAMPLED = "not_sampled"  # the deterministic sample did not draw it
    INVALID_PHONE = "invalid_phone"  # no number that can be dialled
    LANDLINE_SMS_ONLY = "landline_sms_only"  # a landline in a campaign that only texts
    OPTED_OUT = "opted_out"  # the citizen opted out of every channel the campaign uses
    CONTACT_CAP = "contact_cap"  # the citizen has a survey within the cap, or a newer item won
    QUOTA_FULL = "quota_full"  # the department's quota for the item's quarter is reached
    NO_WINDOW = "no_window_before_expiry"  # cannot be contacted before the item is too old


class PickSkip(Base):
    __tablename__ = "pick_skips"
    __table_args__ = (
        UniqueConstraint("campaign_id", "item_id"),
        Index("ix_pick_skips_campaign_reason", "campaign_id", "reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("service_items.id"))
    # Copied from the item so reason counts per department need no join.
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    reason: Mapped[str] = mapped_column(String(30))
    at: Mapped[datetime] = mapped_column(default=utcnow)
