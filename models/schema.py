"""Every table and index of the store, gathered so metadata (and Alembic) sees them all."""

from models import (  # noqa: F401 - imported for their tables and indexes
    campaigns,
    cases,
    departments,
    items,
    messages,
    metrics,
    operations,
    optouts,
    picks,
    quarters,
    scheduling,
    staff,
    surveys,
)
from models.base import Base

metadata = Base.metadata
