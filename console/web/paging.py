"""One page of a long list (every list page and the audit log use it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

PAGE_SIZE = 50


@dataclass
class Page:
    """The rows of one page and where it is in the whole list."""

    rows: list[Any]
    number: int
    total: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @classmethod
    def of(
        cls,
        session: Session,
        stmt: Select[Any],
        number: str | None,
        size: int = PAGE_SIZE,
        *,
        scalars: bool = True,
    ) -> Page:
        """Run `stmt` for page `number` (1-based; unreadable is page 1, past the end the last page)."""
        try:
            wanted = max(1, int(number or 1))
        except ValueError:
            wanted = 1
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
        # A page past the end shows the last one (and keeps the offset inside the database's integers).
        wanted = min(wanted, max(1, -(-total // size)))
        paged = stmt.limit(size).offset((wanted - 1) * size)
        rows = list(session.scalars(paged)) if scalars else list(session.execute(paged))
        return cls(rows, wanted, total, size)
