"""Which survey an inbound SMS answers: the citizen's number and the number they are writing to.

A survey text goes out from one of our numbers (Attempt.from_number); the citizen's reply comes back
to that number. Of the surveys of the citizen's number, the one a reply belongs to is the newest whose
latest SMS attempt was sent from the number the reply reached (DESIGN §6).

The queries start from the citizen's number (ix_service_items_phone_e164), go to the surveys of those
items and fetch all their attempts; a citizen has a handful, so the latest SMS attempt of each survey
is picked here rather than by a correlated subquery the planner might start from.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, contains_eager, joinedload

from models.domain import Channel
from models.items import ServiceItem
from models.surveys import Attempt, Survey, SurveyState

_SMS = Channel.SMS.value


class Route(NamedTuple):
    """The survey a reply answers, and its latest SMS attempt (the text being answered)."""

    survey: Survey
    attempt: Attempt


def _routes(
    session: Session, citizen: str, state: ColumnElement[bool], *, for_update: bool = False
) -> list[Route]:
    """Return each survey of the number texted at least once with its latest SMS attempt, newest first."""
    stmt = (
        select(Survey, Attempt)
        .join(ServiceItem, ServiceItem.id == Survey.item_id)
        .join(Attempt, Attempt.survey_id == Survey.id)
        .where(ServiceItem.phone_e164 == citizen, state)
        .options(contains_eager(Survey.item), joinedload(Survey.campaign, innerjoin=True))
        .order_by(Attempt.id.desc())
    )
    if for_update:
        stmt = stmt.with_for_update(of=Survey)
    latest: dict[int, Route] = {}
    for survey, attempt in session.execute(stmt):
        if attempt.channel == _SMS and survey.id not in latest:
            latest[survey.id] = Route(survey, attempt)
    return sorted(latest.values(), key=lambda route: route.attempt.id, reverse=True)


def open_sms_survey(
    session: Session, citizen: str, our_number: str, *, for_update: bool = False
) -> Route | None:
    """Return the open survey a reply from `citizen` to `our_number` answers (and its text), or None.

    With `for_update` the citizen's open surveys are locked (PostgreSQL), so two replies to one
    survey are applied one after the other and the second sees the state the first left.
    """
    routes = _routes(session, citizen, Survey.state != SurveyState.DONE, for_update=for_update)
    return next((route for route in routes if route.attempt.from_number == our_number), None)


def open_sms_surveys(session: Session, citizen: str) -> list[Survey]:
    """Return every open survey that has texted `citizen`, from any of our numbers (newest first)."""
    return [route.survey for route in _routes(session, citizen, Survey.state != SurveyState.DONE)]


def closed_sms_survey(session: Session, citizen: str, our_number: str) -> Survey | None:
    """Return the most recent closed survey a reply from `citizen` to `our_number` arrives late for."""
    routes = _routes(session, citizen, Survey.state == SurveyState.DONE)
    return next((route.survey for route in routes if route.attempt.from_number == our_number), None)
