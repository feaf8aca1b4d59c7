"""A campaign's definition turned into the pure policies the sweeps apply (windows, retries, ages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case

from models.campaigns import Campaign
from models.domain import Channel
from models.items import ServiceItem
from models.settings import Settings
from models.surveys import Survey, SurveyKind
from scheduler.calendar import ContactPolicy, as_utc, local_to_utc, parse_window, work_calendar
from scheduler.campaigns import CampaignDefinition, definition_of
from scheduler.policy import RetryPolicy, parse_duration, parse_intervals

_ONE_DAY = timedelta(days=1)


def window_close(policy: ContactPolicy, now: datetime) -> datetime:
    """Return when the calling window open at `now` closes (`now` itself when none is open).

    A window that another one continues at once counts as closing: callers treat what lies past
    the close as outside and recheck it, so the answer is never later than the truth.
    """
    instant = as_utc(now, "now")
    today = instant.astimezone(policy.tz).date()
    close = instant
    for day in (today - _ONE_DAY, today):  # an overnight window may have opened yesterday
        if policy.working_days_only and not policy.calendar.is_working_day(day):
            continue
        for window in policy.windows:
            start = local_to_utc(day, window.start, policy.tz)
            end_day = day + _ONE_DAY if window.end <= window.start else day
            end = local_to_utc(end_day, window.end, policy.tz)
            if start <= instant < end:
                close = max(close, end)
    return close


@dataclass(frozen=True)
class CampaignRules:
    """Everything the sweeps need to know about one campaign, parsed once."""

    campaign_id: int
    name: str
    seed: str
    definition: CampaignDefinition
    tz: ZoneInfo
    language: str
    contact: ContactPolicy
    retry: RetryPolicy
    delay: timedelta
    max_age: timedelta
    channels: tuple[Channel, ...]
    # The centre's time zone (app.timezone): a survey's quarter is that of its item's completion
    # there (DESIGN §2), whatever time zone the campaign calls in, so every campaign's results of
    # a department fall in the same quarters, the ones `quarter close` freezes.
    quarter_tz: ZoneInfo

    def first_contact_deadline(self, completed_at: datetime) -> datetime:
        """Return when an item becomes too old for a first contact (completed_at + max_age)."""
        return completed_at + self.max_age

    def deadline(self, completed_at: datetime, first_attempt_at: datetime | None) -> datetime:
        """Return when a survey expires: expire_after after its first attempt, or at max age."""
        if first_attempt_at is None:
            return self.first_contact_deadline(completed_at)
        return first_attempt_at + self.retry.expire_after


def contact_age_from() -> ColumnElement[datetime]:
    """Return the time a survey's first-contact age counts from.

    A return visit counts from the item's completion; a verification visit (or a staff test) is
    created long after it, so it counts from its own creation and is not expired at once.
    """
    return case(
        (Survey.kind == SurveyKind.SURVEY, ServiceItem.completed_at), else_=Survey.created_at
    )


def _contact_policy(definition: CampaignDefinition, settings: Settings) -> ContactPolicy:
    return ContactPolicy(
        tz=ZoneInfo(definition.timezone or settings.app.timezone),
        windows=tuple(parse_window(text) for text in definition.windows),
        calendar=work_calendar(settings),
        working_days_only=definition.working_days_only,
    )


def _retry_policy(definition: CampaignDefinition) -> RetryPolicy:
    return RetryPolicy(
        intervals={
            Channel(channel): parse_intervals(definition.retry_intervals(channel))
            for channel in definition.channels
        },
        channel_order=tuple(Channel(channel) for channel in definition.channels),
        expire_after=parse_duration(definition.expire_after),
    )


def contact_policy_for(campaign: Campaign, settings: Settings) -> ContactPolicy:
    """Return when the campaign's citizens may be contacted (its windows, time zone, calendar)."""
    return _contact_policy(definition_of(campaign), settings)


def retry_policy_for(campaign: Campaign) -> RetryPolicy:
    """Return the campaign's retry intervals per channel, channel order and expiry."""
    return _retry_policy(definition_of(campaign))


def rules_for(campaign: Campaign, settings: Settings) -> CampaignRules:
    """Return the parsed rules of a campaign."""
    definition = definition_of(campaign)
    contact = _contact_policy(definition, settings)
    return CampaignRules(
        campaign_id=campaign.id,
        name=campaign.name,
        seed=campaign.seed,
        definition=definition,
        tz=contact.tz,
        language=definition.language or settings.app.language,
        contact=contact,
        retry=_retry_policy(definition),
        delay=parse_duration(definition.delay),
        max_age=parse_duration(definition.max_age),
        channels=tuple(Channel(channel) for channel in definition.channels),
        quarter_tz=settings.app.tz,
    )
