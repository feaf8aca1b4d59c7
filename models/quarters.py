"""Closed quarters and their frozen, published figures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class QuarterClose(Base):
    __tablename__ = "quarter_closes"

    id: Mapped[int] = mapped_column(primary_key=True)
    quarter: Mapped[str] = mapped_column(String(6), unique=True)
    closed_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_by: Mapped[str] = mapped_column(String(64))


class QuarterSnapshot(Base):
    __tablename__ = "quarter_snapshots"
    __table_args__ = (UniqueConstraint("quarter", "department_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    quarter: Mapped[str] = mapped_column(String(6))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    # The frozen figures of DESIGN §8 for this department and quarter.
    figures: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
