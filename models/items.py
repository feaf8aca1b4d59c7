"""Completed service items pushed by the service-centre system (never deleted by imports)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.departments import Department

# The citizen's personal data on an item: the retention purge empties these columns, and a re-import
# never writes them back on a purged item (models.items_bulk).
PERSONAL_COLUMNS = ("citizen_name", "phone_raw", "phone_e164", "phone_extension")


class ServiceItem(Base):
    __tablename__ = "service_items"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_service_items_department_completed", "department_id", "completed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(128))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    matter: Mapped[str] = mapped_column(String(300))
    channel_handled: Mapped[str | None] = mapped_column(String(32))
    citizen_name: Mapped[str | None] = mapped_column(String(100))
    phone_raw: Mapped[str | None] = mapped_column(String(100))
    phone_e164: Mapped[str | None] = mapped_column(String(20), index=True)
    phone_kind: Mapped[str] = mapped_column(String(10))
    phone_extension: Mapped[str | None] = mapped_column(String(20))
    completed_at: Mapped[datetime] = mapped_column(index=True)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    purged_at: Mapped[datetime | None]

    department: Mapped[Department] = relationship(lazy="joined", innerjoin=True)
