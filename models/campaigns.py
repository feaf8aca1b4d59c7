"""Campaigns: which completed items are surveyed, how, and when."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class CampaignStatus(StrEnum):
    """Life cycle of a campaign."""

    DRAFT = "draft"  # being prepared, picks nothing
    ACTIVE = "active"  # picks and dispatches
    PAUSED = "paused"  # keeps its surveys, dispatches nothing
    ARCHIVED = "archived"  # finished, kept for the record


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(10), default=CampaignStatus.DRAFT)
    # Seed of the deterministic sampling hash, so a rerun (or an auditor) picks the same items.
    seed: Mapped[str] = mapped_column(String(64))
    # The validated campaign definition (scope, sampling, channels, windows, retries, script, texts).
    config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
