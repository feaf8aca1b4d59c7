"""Departments of the service centre (taxation bureau, market supervision bureau, ...)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow


class DepartmentKind(StrEnum):
    """What a department mainly does."""

    APPROVAL = "approval"  # licences and permits
    SERVICE = "service"  # public services
    ENFORCEMENT = "enforcement"  # inspection and enforcement


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default=DepartmentKind.SERVICE)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def department_by_code(session: Session, code: str) -> Department | None:
    """Return the department with this code, or None."""
    return session.scalars(select(Department).where(Department.code == code)).first()
