"""The escalation sweep: overdue rectification cases go to a supervisor (DESIGN §2)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from models.cases_ops import escalate_overdue
from models.settings import Settings

logger = logging.getLogger(__name__)
BATCH = 200


def escalate_job(
    session_factory: sessionmaker[Session], settings: Settings, clock: Callable[[], datetime]
) -> dict[str, int]:
    """Escalate every overdue open or reopened case, committing batch by batch; return counts."""
    now = clock()
    totals: Counter[str] = Counter()
    while True:
        with session_factory() as session:
            counts = escalate_overdue(session, settings, now, limit=BATCH)
            session.commit()
        totals.update(counts)
        if counts["escalated"] < BATCH:
            break
    result = {key: totals[key] for key in ("escalated", "from_open", "from_reopened")}
    if result["escalated"]:
        logger.info("escalated %d overdue case(s): %s", result["escalated"], result)
    return result
