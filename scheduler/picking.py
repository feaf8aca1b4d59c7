"""Picking (DESIGN §5): which completed items of each active campaign get a survey, and why not.

The decisions are pure functions of an item, the campaign's rules and `now`; `pick` is the sweep that
feeds them with a few set-based queries per campaign (never one per item) and writes the surveys and
the skip reasons in bulk. A skip is final for that campaign and item, so a rerun only looks at items
it has not decided yet.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, exists, func, select
from sqlalchemy.orm import Session

from models.campaigns import Campaign, CampaignStatus
from models.departments import Department
from models.domain import Channel
from models.items import ServiceItem
from models.optouts import OptOut, OptOutChannel
from models.phones import PhoneKind
from models.picks import PickSkip, SkipReason
from models.settings import Settings
from models.surveys import Survey, SurveyKind, SurveyState
from scheduler.bulk import insert_rows
from scheduler.calendar import NoOpeningError, next_opening
from scheduler.campaigns import CampaignDefinition
from scheduler.locks import begin_write, try_pick_lock
from scheduler.policy import is_sampled, quarter_of
from scheduler.rules import CampaignRules, rules_for

logger = logging.getLogger(__name__)

# Phones per IN (...) list when opt-outs are read in bulk; up to this many live opt-outs are read whole.
PHONE_CHUNK = 1000
OPT_OUTS_IN_MEMORY = 50_000


@dataclass(frozen=True)
class Candidate:
    """A completed item in a campaign's scope and age range, not decided yet."""

    item_id: int
    key: str  # "<source>:<external_id>", the sampling key an auditor can recompute
    department_id: int
    phone_e164: str | None
    phone_kind: str
    completed_at: datetime


@dataclass(frozen=True)
class Pick:
    """A candidate that passed the per-item checks: the survey it would become."""

    campaign_id: int
    candidate: Candidate
    channel: Channel
    quarter: str
    next_attempt_at: datetime


def contact_channels(
    channels: Sequence[Channel], phone_kind: str, opted_out: Collection[str]
) -> tuple[tuple[Channel, ...], SkipReason | None]:
    """Return the campaign channels that may reach this phone, or why none may."""
    reachable = tuple(ch for ch in channels if ch is Channel.VOICE or phone_kind == PhoneKind.MOBILE)
    if not reachable:
        return (), SkipReason.LANDLINE_SMS_ONLY
    if OptOutChannel.ALL in opted_out:
        return (), SkipReason.OPTED_OUT
    allowed = tuple(ch for ch in reachable if ch not in opted_out)
    return (allowed, None) if allowed else ((), SkipReason.OPTED_OUT)


def decide_item(
    candidate: Candidate,
    rules: CampaignRules,
    opted_out: Collection[str],
    opening: datetime | None,
) -> Pick | SkipReason:
    """Decide one candidate: a Pick, or the first reason it is skipped.

    `opening` is the first calling-window instant at or after now (None if no window opens): a
    candidate is already past its delay, so its first contact is due at that opening.
    """
    if not is_sampled(candidate.key, rules.seed, rules.definition.sampling_rate):
        return SkipReason.NOT_SAMPLED
    if candidate.phone_kind == PhoneKind.INVALID or not candidate.phone_e164:
        return SkipReason.INVALID_PHONE
    channels, reason = contact_channels(rules.channels, candidate.phone_kind, opted_out)
    if reason is not None:
        return reason
    if opening is None or opening >= rules.first_contact_deadline(candidate.completed_at):
        return SkipReason.NO_WINDOW
    return Pick(
        campaign_id=rules.campaign_id,
        candidate=candidate,
        channel=channels[0],
        quarter=quarter_of(candidate.completed_at, rules.tz),
        next_attempt_at=opening,
    )


def resolve_contact_cap(
    picks: Iterable[Pick], recently_surveyed: Collection[str]
) -> tuple[list[Pick], list[Pick]]:
    """Split picks into kept and capped: one per phone (the newest item), none for a recent phone."""
    newest: dict[str, Pick] = {}
    capped: list[Pick] = []
    for pick in picks:
        phone = str(pick.candidate.phone_e164)
        if phone in recently_surveyed:
            capped.append(pick)
            continue
        best = newest.get(phone)
        if best is None:
            newest[phone] = pick
            continue
        # The newest completed item wins; ties go to the later item, then the older campaign.
        mine = (pick.candidate.completed_at, pick.candidate.item_id, -pick.campaign_id)
        theirs = (best.candidate.completed_at, best.candidate.item_id, -best.campaign_id)
        if mine > theirs:
            newest[phone], pick = pick, best
        capped.append(pick)
    return list(newest.values()), capped


def quota_for(definition: CampaignDefinition, department_code: str) -> int | None:
    """Return a department's quota per quarter in a campaign (None: no quota)."""
    return definition.quota_by_department.get(department_code, definition.quota)


def apply_quotas(
    picks: Iterable[Pick],
    quotas: Mapping[tuple[int, int], int | None],
    existing: Mapping[tuple[int, int, str], int],
) -> tuple[list[Pick], list[Pick]]:
    """Split picks into kept and over quota, first completed first, per campaign, department, quarter.

    `quotas` maps (campaign id, department id) to its quota; `existing` counts the surveys the
    campaign already has per (campaign id, department id, quarter).
    """
    used: Counter[tuple[int, int, str]] = Counter(existing)
    kept, over = [], []
    for pick in sorted(picks, key=lambda p: (p.candidate.completed_at, p.candidate.item_id)):
        limit = quotas.get((pick.campaign_id, pick.candidate.department_id))
        slot = (pick.campaign_id, pick.candidate.department_id, pick.quarter)
        if limit is not None and used[slot] >= limit:
            over.append(pick)
            continue
        used[slot] += 1
        kept.append(pick)
    return kept, over


@dataclass
class PickReport:
    """What one pick sweep did, per campaign and department code."""

    picked: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    busy: bool = False  # another scheduler process was picking

    def counts(self) -> dict[str, int]:
        """Return the totals as the job logs them."""
        result = {"picked": sum(self.picked.values()), "skipped": sum(self.skipped.values())}
        for (_campaign, _dept, reason), count in sorted(self.skipped.items()):
            result[f"skipped_{reason}"] = result.get(f"skipped_{reason}", 0) + count
        if self.busy:
            result["busy"] = 1
        return result


def load_candidates(
    session: Session, rules: CampaignRules, department_ids: Sequence[int] | None, now: datetime
) -> list[Candidate]:
    """Return the campaign's undecided items: in scope, past the delay, younger than max age."""
    campaign_id = rules.campaign_id
    stmt = select(
        ServiceItem.id,
        ServiceItem.source,
        ServiceItem.external_id,
        ServiceItem.department_id,
        ServiceItem.phone_e164,
        ServiceItem.phone_kind,
        ServiceItem.completed_at,
    ).where(
        ServiceItem.completed_at <= now - rules.delay,
        ServiceItem.completed_at > now - rules.max_age,
        ServiceItem.purged_at.is_(None),
        ~exists().where(Survey.campaign_id == campaign_id, Survey.item_id == ServiceItem.id),
        ~exists().where(PickSkip.campaign_id == campaign_id, PickSkip.item_id == ServiceItem.id),
    )
    if department_ids is not None:
        stmt = stmt.where(ServiceItem.department_id.in_(department_ids))
    if rules.definition.matters:
        stmt = stmt.where(ServiceItem.matter.in_(rules.definition.matters))
    return [
        Candidate(item_id, f"{source}:{external_id}", dept, phone, kind, completed_at)
        for item_id, source, external_id, dept, phone, kind, completed_at in session.execute(stmt)
    ]


def opted_out_channels(session: Session, phones: Iterable[str]) -> dict[str, set[str]]:
    """Return the live opt-out channels of each of these phones that has any (in bulk)."""
    result: dict[str, set[str]] = defaultdict(set)
    live = OptOut.revoked_at.is_(None)
    wanted = set(phones)
    if not wanted:
        return result
    total = session.scalar(select(func.count()).select_from(OptOut).where(live)) or 0
    if total <= OPT_OUTS_IN_MEMORY or total <= len(wanted):
        # Fewer opt-outs than phones asked about: reading them all is one cheap query.
        for phone, channel in session.execute(select(OptOut.phone_e164, OptOut.channel).where(live)):
            if phone in wanted:
                result[phone].add(channel)
        return result
    unique = sorted(wanted)
    for start in range(0, len(unique), PHONE_CHUNK):
        chunk = unique[start : start + PHONE_CHUNK]
        rows = session.execute(
            select(OptOut.phone_e164, OptOut.channel).where(OptOut.phone_e164.in_(chunk), live)
        )
        for phone, channel in rows:
            result[phone].add(channel)
    return result


def recently_surveyed_phones(session: Session, since: datetime) -> set[str]:
    """Return the phones with a survey (any campaign, any kind) created after `since`."""
    rows = session.scalars(
        select(ServiceItem.phone_e164)
        .join(Survey, Survey.item_id == ServiceItem.id)
        .where(Survey.created_at > since, ServiceItem.phone_e164.is_not(None))
        .distinct()
    )
    return {phone for phone in rows if phone}


def _existing_counts(session: Session, campaign_ids: Sequence[int]) -> Counter[tuple[int, int, str]]:
    rows = session.execute(
        select(Survey.campaign_id, Survey.department_id, Survey.quarter, func.count())
        .where(Survey.campaign_id.in_(campaign_ids), Survey.kind == SurveyKind.SURVEY)
        .group_by(Survey.campaign_id, Survey.department_id, Survey.quarter)
    )
    return Counter({(c, d, q): n for c, d, q, n in rows})


def _opening(rules: CampaignRules, now: datetime) -> datetime | None:
    try:
        return next_opening(rules.contact, now)
    except NoOpeningError:
        return None


def pick(session: Session, settings: Settings, now: datetime) -> PickReport:
    """Pick every active campaign's undecided items; add surveys and skips (the caller commits)."""
    report = PickReport()
    begin_write(session)
    campaigns = session.scalars(
        select(Campaign).where(Campaign.status == CampaignStatus.ACTIVE).order_by(Campaign.id)
    ).all()
    if not campaigns:
        return report
    if not try_pick_lock(session):
        report.busy = True
        return report
    codes = dict(session.execute(select(Department.id, Department.code)).all())
    ids_by_code = {code: dept_id for dept_id, code in codes.items()}
    rules_by_id: dict[int, CampaignRules] = {}
    survivors: list[Pick] = []
    skips: list[tuple[int, Candidate, SkipReason]] = []
    for campaign in campaigns:
        rules = rules_by_id[campaign.id] = rules_for(campaign, settings)
        scope = rules.definition.departments
        dept_ids = [ids_by_code[code] for code in scope if code in ids_by_code] if scope else None
        candidates = load_candidates(session, rules, dept_ids, now)
        if not candidates:
            continue
        opted = opted_out_channels(session, (c.phone_e164 for c in candidates if c.phone_e164))
        opening = _opening(rules, now)
        for candidate in candidates:
            decision = decide_item(candidate, rules, opted.get(candidate.phone_e164 or "", ()), opening)
            if isinstance(decision, Pick):
                survivors.append(decision)
            else:
                skips.append((campaign.id, candidate, decision))

    cap_days = settings.scheduler.contact_cap_days
    if cap_days and survivors:
        recent = recently_surveyed_phones(session, now - timedelta(days=cap_days))
        survivors, capped = resolve_contact_cap(survivors, recent)
        skips.extend((p.campaign_id, p.candidate, SkipReason.CONTACT_CAP) for p in capped)
    quotas = {
        (campaign_id, dept_id): quota_for(rules.definition, code)
        for campaign_id, rules in rules_by_id.items()
        for dept_id, code in codes.items()
    }
    existing = _existing_counts(session, list(rules_by_id)) if survivors else Counter()
    kept, over = apply_quotas(survivors, quotas, existing)
    skips.extend((p.campaign_id, p.candidate, SkipReason.QUOTA_FULL) for p in over)

    if kept:
        insert_rows(
            session,
            cast(Table, Survey.__table__),
            [
                {
                    "campaign_id": p.campaign_id,
                    "item_id": p.candidate.item_id,
                    "kind": SurveyKind.SURVEY.value,
                    "token": secrets.token_urlsafe(24),
                    "department_id": p.candidate.department_id,
                    "quarter": p.quarter,
                    "language": rules_by_id[p.campaign_id].language,
                    "state": SurveyState.SCHEDULED.value,
                    "channel": p.channel.value,
                    "next_attempt_at": p.next_attempt_at,
                    "script_state": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for p in kept
            ],
        )
    if skips:
        insert_rows(
            session,
            cast(Table, PickSkip.__table__),
            [
                {
                    "campaign_id": campaign_id,
                    "item_id": c.item_id,
                    "department_id": c.department_id,
                    "reason": reason.value,
                    "at": now,
                }
                for campaign_id, c, reason in skips
            ],
        )
    for p in kept:
        report.picked[(rules_by_id[p.campaign_id].name, codes[p.candidate.department_id])] += 1
    for campaign_id, c, reason in skips:
        report.skipped[(rules_by_id[campaign_id].name, codes[c.department_id], reason.value)] += 1
    return report
