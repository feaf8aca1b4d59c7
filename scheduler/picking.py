"""Picking (DESIGN §5): which completed items of each active campaign get a survey, and why not.

The decisions are pure functions of an item, the campaign's rules and `now`; `pick` is the sweep that
feeds them with a few set-based queries per campaign (never one per item) and writes the surveys and
the skip reasons in bulk. A skip is final for that campaign and item, so a rerun only looks at items
it has not decided yet.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ARRAY, String, Table, any_, bindparam, exists, func, select, text
from sqlalchemy import cast as cast_
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.base import UTCDateTime
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
from scheduler.locks import begin_write, is_sqlite, try_pick_lock
from scheduler.policy import is_sampled, quarter_bounds, quarter_of
from scheduler.rules import CampaignRules, rules_for

logger = logging.getLogger(__name__)

# Phones per IN (...) list when opt-outs are read in bulk; up to this many live opt-outs are read whole.
PHONE_CHUNK = 1000
OPT_OUTS_IN_MEMORY = 50_000
# The draft campaign of staff try-outs (`returnvisit call --item`, the console's simulator): nobody is
# contacted, so its surveys never count toward the contact cap.
TRY_OUT_CAMPAIGN = "simulator-try-out"


class Candidate(NamedTuple):
    """A completed item in a campaign's scope and age range, not decided yet."""

    item_id: int
    key: str  # "<source>:<external_id>", the sampling key an auditor can recompute
    department_id: int
    phone_e164: str | None
    phone_kind: str
    completed_at: datetime


class Pick(NamedTuple):
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


class QuarterOf:
    """quarter_of for many instants in one time zone: the bounds of the last quarter are reused."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.label = ""
        self.bounds: tuple[datetime, datetime] | None = None

    def __call__(self, instant: datetime) -> str:
        if self.bounds is None or not self.bounds[0] <= instant < self.bounds[1]:
            self.label = quarter_of(instant, self.tz)
            self.bounds = quarter_bounds(self.label, self.tz)
        return self.label


class Decider:
    """Decides the candidates of one campaign at one instant (what they share is worked out once).

    `opening` is the first calling-window instant at or after now (None if no window opens): a
    candidate is already past its delay, so its first contact is due at that opening.
    """

    def __init__(self, rules: CampaignRules, opening: datetime | None) -> None:
        self.rules, self.opening = rules, opening
        # An item completed at or before this cannot be contacted before it is too old.
        self.too_old = None if opening is None else opening - rules.max_age
        self.quarter_of = QuarterOf(rules.quarter_tz)
        self._reachable: dict[str, tuple[tuple[Channel, ...], SkipReason | None]] = {}

    def decide(self, candidate: Candidate, opted_out: Collection[str] = ()) -> Pick | SkipReason:
        """Return a Pick, or the first reason the candidate is skipped."""
        rules = self.rules
        if not is_sampled(candidate.key, rules.seed, rules.definition.sampling_rate):
            return SkipReason.NOT_SAMPLED
        if candidate.phone_kind == PhoneKind.INVALID or not candidate.phone_e164:
            return SkipReason.INVALID_PHONE
        if opted_out:
            channels, reason = contact_channels(rules.channels, candidate.phone_kind, opted_out)
        else:  # the common case: no opt-out, so the answer depends on the phone kind only
            known = self._reachable.get(candidate.phone_kind)
            if known is None:
                known = self._reachable[candidate.phone_kind] = contact_channels(
                    rules.channels, candidate.phone_kind, ()
                )
            channels, reason = known
        if reason is not None:
            return reason
        if self.too_old is None or candidate.completed_at <= self.too_old:
            return SkipReason.NO_WINDOW
        return Pick(
            campaign_id=rules.campaign_id,
            candidate=candidate,
            channel=channels[0],
            quarter=self.quarter_of(candidate.completed_at),
            next_attempt_at=cast(datetime, self.opening),
        )


def decide_item(
    candidate: Candidate,
    rules: CampaignRules,
    opted_out: Collection[str],
    opening: datetime | None,
) -> Pick | SkipReason:
    """Decide one candidate: a Pick, or the first reason it is skipped (see Decider)."""
    return Decider(rules, opening).decide(candidate, opted_out)


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
        slot = _quota_slot(pick)
        if limit is not None and used[slot] >= limit:
            over.append(pick)
            continue
        used[slot] += 1
        kept.append(pick)
    return kept, over


def _quota_slot(pick: Pick) -> tuple[int, int, str]:
    return (pick.campaign_id, pick.candidate.department_id, pick.quarter)


def apply_cap_and_quotas(
    picks: Iterable[Pick],
    recently_surveyed: Collection[str],
    quotas: Mapping[tuple[int, int], int | None],
    existing: Mapping[tuple[int, int, str], int],
) -> tuple[list[Pick], list[Pick], list[Pick]]:
    """Split picks into kept, capped and over quota: per phone, the newest pick within quota wins.

    Rounds of resolve_contact_cap then apply_quotas: a phone whose newest pick is over quota tries
    its next newest in the next round, with the quota the earlier rounds left.
    """
    used: Counter[tuple[int, int, str]] = Counter(existing)
    kept: list[Pick] = []
    capped: list[Pick] = []
    over: list[Pick] = []
    remaining = list(picks)
    while remaining:
        newest, losers = resolve_contact_cap(remaining, recently_surveyed)
        accepted, refused = apply_quotas(newest, quotas, used)
        kept += accepted
        over += refused
        used.update(_quota_slot(p) for p in accepted)
        retry = {p.candidate.phone_e164 for p in refused}
        remaining = [p for p in losers if p.candidate.phone_e164 in retry]
        capped += [p for p in losers if p.candidate.phone_e164 not in retry]
    return kept, capped, over


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


_PLAIN = re.compile(r"[\w+-]+")


def _array_literal(values: Iterable[object]) -> str:
    """Return a PostgreSQL array literal of these values (as text).

    Ten thousand ids or phones joined here take a millisecond or two; adapting a list value by
    value takes tens. Numbers and plain words go as they are, anything else in double quotes.
    """
    words = []
    for value in map(str, values):
        if not _PLAIN.fullmatch(value) or value.upper() == "NULL":
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        words.append(value)
    return "{" + ",".join(words) + "}"


def _among(session: Session, column: InstrumentedAttribute[Any], values: Sequence[str]) -> Iterator[Any]:
    """Yield conditions that together match `column` to each value: one array on PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        yield column == any_(cast_(bindparam("values", _array_literal(values), type_=String), ARRAY(String)))
        return
    for start in range(0, len(values), PHONE_CHUNK):
        yield column.in_(values[start : start + PHONE_CHUNK])


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
    for among in _among(session, OptOut.phone_e164, sorted(wanted)):
        for phone, channel in session.execute(select(OptOut.phone_e164, OptOut.channel).where(among, live)):
            result[phone].add(channel)
    return result


def recently_surveyed_phones(session: Session, since: datetime, phones: Iterable[str]) -> set[str]:
    """Return which of these phones have a survey (any campaign, any kind) created after `since`.

    Staff tests and try-outs are not surveys of the citizen and do not count. Asked per phone, so
    the cost follows the candidates, not the surveys of the last days.
    """
    found: set[str] = set()
    for among in _among(session, ServiceItem.phone_e164, sorted(set(phones))):
        found.update(
            session.scalars(
                select(ServiceItem.phone_e164)
                .join(Survey, Survey.item_id == ServiceItem.id)
                .join(Campaign, Campaign.id == Survey.campaign_id)
                .where(
                    among,
                    Survey.created_at > since,
                    Survey.kind != SurveyKind.TEST,
                    Campaign.name != TRY_OUT_CAMPAIGN,
                )
                .distinct()
            )
        )
    return found


def _existing_counts(
    session: Session, campaign_ids: Sequence[int], quarters: Collection[str]
) -> Counter[tuple[int, int, str]]:
    """Count the surveys these campaigns have per (campaign id, department id, quarter) in `quarters`."""
    if not campaign_ids or not quarters:
        return Counter()
    rows = session.execute(
        select(Survey.campaign_id, Survey.department_id, Survey.quarter, func.count())
        .where(
            Survey.campaign_id.in_(campaign_ids),
            Survey.quarter.in_(sorted(quarters)),
            Survey.kind == SurveyKind.SURVEY,
        )
        .group_by(Survey.campaign_id, Survey.department_id, Survey.quarter)
    )
    return Counter({(c, d, q): n for c, d, q, n in rows})


def new_tokens(count: int) -> list[str]:
    """Return `count` unguessable webhook tokens of 32 URL-safe characters (24 random bytes each)."""
    # One read of the OS's random source for the whole batch: 24 bytes encode to exactly 32
    # characters, so each slice is what secrets.token_urlsafe(24) would have made.
    encoded = base64.urlsafe_b64encode(os.urandom(24 * count)).decode("ascii")
    return [encoded[32 * n : 32 * (n + 1)] for n in range(count)]


# A pick's surveys in one statement: the values that differ per survey travel as PostgreSQL arrays or
# one SQLite JSON array, the rest is bound once (binding ten thousand rows value by value cost more
# than writing them).
_ONCE = (bindparam("next_attempt_at", type_=UTCDateTime()), bindparam("now", type_=UTCDateTime()))
_INSERT_SURVEYS = {
    "postgresql": text(
        """
        INSERT INTO surveys (campaign_id, item_id, kind, token, department_id, quarter, language, state,
                             channel, next_attempt_at, script_state, created_at, updated_at)
        SELECT :campaign_id, p.item_id, :kind, p.token, p.department_id, p.quarter, :language, :state,
               p.channel, :next_attempt_at, '{}', :now, :now
        FROM unnest(CAST(:item_ids AS INTEGER[]), CAST(:tokens AS VARCHAR[]),
                    CAST(:department_ids AS INTEGER[]), CAST(:quarters AS VARCHAR[]),
                    CAST(:channels AS VARCHAR[])) WITH ORDINALITY
             AS p(item_id, token, department_id, quarter, channel, n)
        ORDER BY p.n
        """
    ).bindparams(*_ONCE),
    "sqlite": text(
        """
        INSERT INTO surveys (campaign_id, item_id, kind, token, department_id, quarter, language, state,
                             channel, next_attempt_at, script_state, created_at, updated_at)
        SELECT :campaign_id, json_extract(p.value, '$[0]'), :kind, json_extract(p.value, '$[1]'),
               json_extract(p.value, '$[2]'), json_extract(p.value, '$[3]'), :language, :state,
               json_extract(p.value, '$[4]'), :next_attempt_at, '{}', :now, :now
        FROM json_each(:picks) AS p
        ORDER BY p.key
        """
    ).bindparams(*_ONCE),
}


def _insert_surveys(
    session: Session, kept: Sequence[Pick], rules_by_id: Mapping[int, CampaignRules], now: datetime
) -> None:
    """Write the kept picks as scheduled surveys, each campaign's in the order given (completion)."""
    dialect = session.get_bind().dialect.name
    tokens = iter(new_tokens(len(kept)))
    groups: dict[tuple[int, datetime], list[Pick]] = defaultdict(list)
    for p in kept:
        groups[(p.campaign_id, p.next_attempt_at)].append(p)
    for (campaign_id, next_attempt_at), picks in groups.items():
        rows = [
            (p.candidate.item_id, next(tokens), p.candidate.department_id, p.quarter, p.channel.value)
            for p in picks
        ]
        if dialect == "postgresql":
            columns = zip(*rows, strict=True)
            names = ("item_ids", "tokens", "department_ids", "quarters", "channels")
            per_survey = {name: _array_literal(column) for name, column in zip(names, columns, strict=True)}
        else:
            per_survey = {"picks": json.dumps(rows)}
        session.execute(
            _INSERT_SURVEYS[dialect],
            {
                "campaign_id": campaign_id,
                "kind": SurveyKind.SURVEY.value,
                "language": rules_by_id[campaign_id].language,
                "state": SurveyState.SCHEDULED.value,
                "next_attempt_at": next_attempt_at,
                "now": now,
                **per_survey,
            },
        )


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
    if not is_sqlite(session):
        # A pick lost in a crash is as if that tick had not run: the next one decides the same items
        # again, and nothing is dialled before a later (synchronous) commit. So this commit does not
        # wait for its own flush to disk.
        session.execute(text("SET LOCAL synchronous_commit = off"))
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
        decider = Decider(rules, _opening(rules, now))
        for candidate in candidates:
            decision = decider.decide(candidate, opted.get(candidate.phone_e164 or "", ()) if opted else ())
            if isinstance(decision, Pick):
                survivors.append(decision)
            else:
                skips.append((campaign.id, candidate, decision))

    quotas = {
        (campaign_id, dept_id): quota_for(rules.definition, code)
        for campaign_id, rules in rules_by_id.items()
        for dept_id, code in codes.items()
    }
    # Only campaigns with a quota need their surveys counted, and only in the picks' quarters.
    limited = {campaign_id for (campaign_id, _), quota in quotas.items() if quota is not None}
    quarters = {p.quarter for p in survivors if p.campaign_id in limited}
    existing = _existing_counts(session, sorted(limited), quarters)
    cap_days = settings.scheduler.contact_cap_days
    if cap_days and survivors:
        phones = (str(p.candidate.phone_e164) for p in survivors)
        recent = recently_surveyed_phones(session, now - timedelta(days=cap_days), phones)
        kept, capped, over = apply_cap_and_quotas(survivors, recent, quotas, existing)
        skips.extend((p.campaign_id, p.candidate, SkipReason.CONTACT_CAP) for p in capped)
    else:
        kept, over = apply_quotas(survivors, quotas, existing)
    skips.extend((p.campaign_id, p.candidate, SkipReason.QUOTA_FULL) for p in over)

    if kept:
        _insert_surveys(session, kept, rules_by_id, now)
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
