"""Every table of the store, gathered so metadata (and Alembic) sees them all."""

from models import (  # noqa: F401 - imported for their tables
    campaigns,
    cases,
    departments,
    items,
    messages,
    optouts,
    quarters,
    staff,
    surveys,
)
from models.base import Base

metadata = Base.metadata
