"""Campaigns as data: a TOML definition validated into a typed model, and apply / list / pause / resume.

Validation names every wrong field by its key path (``windows[1]: ...``, ``retry.voice: ...``). Checks
that need the store (department codes) or the phone-facing edge (SMS segment counting, loading a
script file) read what the caller passes in, so this module imports neither the database rows it checks
nor `ivr`.
"""

from __future__ import annotations

import hashlib
import string
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.campaigns import Campaign, CampaignStatus
from models.departments import Department
from models.picks import PickSkip
from models.surveys import Survey
from models.translatable import Translatable
from scheduler.calendar import parse_window
from scheduler.policy import parse_duration, parse_intervals

LANGUAGES = ("zh-CN", "en-US")
SMS_PLACEHOLDERS = frozenset({"org", "department", "matter", "date"})
# What the SMS segment check puts in for {matter} and {date}: a long matter name, a long date.
SAMPLE_MATTER = "企业开办登记（含公章刻制、发票申领、社保登记）"
SAMPLE_DATE = "2026年12月31日"
DEFAULT_RETRY = {"voice": "30m 2h 1d", "sms": ""}

# Counts the segments an SMS text is sent as (the console passes ivr.sms_text's counter).
SegmentCounter = Callable[[str], int]
# Loads a script file, raising ValueError naming what is wrong (the console passes ivr.script's loader).
ScriptLoader = Callable[[Path], object]


class CampaignError(ValueError):
    """A campaign definition or operation is wrong; `problems` names each wrong field.

    A problem of an operation is a Translatable (a str): the console shows it in the user's language.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _duration(value: str) -> str:
    parse_duration(value)
    return value.strip()


def _window(value: str) -> str:
    return str(parse_window(value))


def _intervals(value: str) -> str:
    parse_intervals(value)
    return " ".join(value.split())


def _sms_text(text: str, info: ValidationInfo) -> str:
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text)
                  if name is not None]
    except ValueError as exc:
        raise ValueError(f"bad placeholder syntax: {exc}") from None
    # A format spec or conversion ("{org:>999999}", "{org!r}") could blow the text up: a name only.
    formatted = sorted({name for name, spec, conversion in fields if spec or conversion})
    if formatted:
        plain = " ".join(f"{{{name}}}" for name in formatted)
        raise ValueError(f"placeholder(s) {', '.join(formatted)} may not have a format or conversion "
                         f"(write {plain})")
    names = {name for name, _, _ in fields}
    unknown = sorted(names - SMS_PLACEHOLDERS)
    if unknown:
        allowed = " ".join(f"{{{name}}}" for name in sorted(SMS_PLACEHOLDERS))
        raise ValueError(f"unknown placeholder(s) {', '.join(unknown)} (allowed: {allowed})")
    context = info.context or {}
    counter: SegmentCounter | None = context.get("segment_counter")
    if counter is None:
        return text
    limit = info.data.get("sms_max_segments", 2)
    departments = context.get("departments") or {}
    longest_department = max(departments.values(), key=len, default="某某区市场监督管理局")
    try:
        sample = text.format(
            org=context.get("org", ""), department=longest_department, matter=SAMPLE_MATTER, date=SAMPLE_DATE
        )
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"bad placeholder: {exc}") from None
    segments = counter(sample)
    if segments > limit:
        raise ValueError(
            f"is {segments} SMS segments with the longest department name filled in, "
            f"over the limit of {limit} (sms_max_segments)"
        )
    return text


Duration = Annotated[str, AfterValidator(_duration)]
WindowText = Annotated[str, AfterValidator(_window)]
Intervals = Annotated[str, AfterValidator(_intervals)]
SmsTemplate = Annotated[str, AfterValidator(_sms_text)]
ChannelName = Literal["voice", "sms"]
LanguageName = Literal["zh-CN", "en-US"]
StatusName = Literal["draft", "active", "paused", "archived"]


def _known_departments(info: ValidationInfo) -> Mapping[str, str] | None:
    return (info.context or {}).get("departments")


class CampaignDefinition(BaseModel):
    """The validated definition stored as JSON in Campaign.config (see campaign.example.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    status: StatusName | None = None
    departments: list[str] = []
    matters: list[str] = []
    sampling_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    quota: int | None = Field(default=None, ge=0)
    quota_by_department: dict[str, Annotated[int, Field(ge=0)]] = {}
    seed: str | None = Field(default=None, max_length=64)
    channels: list[ChannelName] = Field(default=["voice", "sms"], min_length=1)
    delay: Duration = "2h"
    max_age: Duration = "30d"
    expire_after: Duration = "3d"
    retry: dict[ChannelName, Intervals] = {}
    windows: list[WindowText] = Field(default=["09:00-12:00", "14:00-20:00"], min_length=1)
    working_days_only: bool = True
    timezone: str | None = None
    calls_per_second: float | None = Field(default=None, gt=0)
    script: str = "default"
    language: LanguageName | None = None
    sms_max_segments: int = Field(default=2, ge=1, le=10)
    sms_text: dict[LanguageName, SmsTemplate] = {}

    @model_validator(mode="before")
    @classmethod
    def _default_seed(cls, data: Any) -> Any:
        # The default seed follows the name, so the same campaign file samples the same items.
        if isinstance(data, dict) and data.get("seed") is None and isinstance(data.get("name"), str):
            data = {**data, "seed": hashlib.sha256(data["name"].strip().encode()).hexdigest()[:16]}
        return data

    @field_validator("departments")
    @classmethod
    def _departments_exist(cls, codes: list[str], info: ValidationInfo) -> list[str]:
        known = _known_departments(info)
        unknown = [code for code in codes if known is not None and code not in known]
        if unknown:
            raise ValueError(f"unknown department code(s): {', '.join(unknown)}")
        return codes

    @field_validator("quota_by_department")
    @classmethod
    def _quota_departments_exist(cls, quotas: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        known = _known_departments(info)
        unknown = [code for code in quotas if known is not None and code not in known]
        if unknown:
            raise ValueError(f"unknown department code(s): {', '.join(unknown)}")
        return quotas

    @field_validator("channels")
    @classmethod
    def _channels_once(cls, channels: list[str]) -> list[str]:
        if len(set(channels)) != len(channels):
            raise ValueError("lists a channel twice")
        return channels

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("script")
    @classmethod
    def _script_exists(cls, value: str, info: ValidationInfo) -> str:
        if value == "default":
            return value
        base = (info.context or {}).get("base_dir") or Path.cwd()
        path = Path(value) if Path(value).is_absolute() else Path(base) / value
        if not path.is_file():
            raise ValueError(f'script file {path} does not exist (or use "default")')
        loader: ScriptLoader | None = (info.context or {}).get("script_loader")
        if loader is not None:
            try:
                loader(path)
            except (OSError, ValueError) as exc:  # ScriptError, or a file that is not UTF-8 text
                raise ValueError(f"script file {path} is not a usable script: {exc}") from None
        return str(path.resolve())

    @model_validator(mode="after")
    def _consistent(self) -> CampaignDefinition:
        # Checked once every field is valid; each message starts with the key it is about.
        problems = []
        if parse_duration(self.max_age) <= parse_duration(self.delay):
            problems.append(f"max_age: {self.max_age} must be longer than delay {self.delay}")
        if parse_duration(self.expire_after).total_seconds() <= 0:
            problems.append("expire_after: must be longer than 0")
        for channel in sorted(set(self.retry) - set(self.channels)):
            problems.append(f"retry.{channel}: channel {channel} is not in channels")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def retry_intervals(self, channel: str) -> str:
        """Return the retry intervals of a channel ('' means one attempt)."""
        return self.retry.get(channel, DEFAULT_RETRY[channel])  # type: ignore[call-overload]


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def parse_definition(
    data: Mapping[str, Any],
    *,
    departments: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    segment_counter: SegmentCounter | None = None,
    script_loader: ScriptLoader | None = None,
    org: str = "",
) -> CampaignDefinition:
    """Validate a campaign definition; raise CampaignError naming every wrong field."""
    context = {
        "departments": departments,
        "base_dir": base_dir,
        "segment_counter": segment_counter,
        "script_loader": script_loader,
        "org": org,
    }
    # PostgreSQL text cannot hold a NUL (SQLite would store it): TOML may write one as "\u0000".
    problems = [f"{path}: contains a NUL character" for path in _nul_paths(data)]
    try:
        definition = CampaignDefinition.model_validate(dict(data), context=context)
    except ValidationError as exc:
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            path = _key_path(error["loc"])
            if path:
                problems.append(f"{path}: {message}")
            else:  # the model-level checks, each already naming its key
                problems.extend(message.split("; "))
        raise CampaignError(problems) from None
    if problems:
        raise CampaignError(problems)
    return definition


def _nul_paths(value: Any, path: str = "") -> list[str]:
    """Return the key path of every text in `value` (keys too) that holds a NUL character."""
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            shown = str(key).replace("\x00", "\\u0000")
            inner = f"{path}.{shown}" if path else shown
            found += [inner] if "\x00" in str(key) else _nul_paths(item, inner)
        return found
    if isinstance(value, list | tuple):
        return [found for index, item in enumerate(value) for found in _nul_paths(item, f"{path}[{index}]")]
    return []


def read_definition_file(path: Path, **options: Any) -> CampaignDefinition:
    """Read and validate a campaign TOML file (relative script paths are read from its folder)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CampaignError([f"{path}: {exc}"]) from exc
    return parse_definition(data, base_dir=path.resolve().parent, **options)


def definition_of(campaign: Campaign) -> CampaignDefinition:
    """Return the definition stored in a campaign row (validated when it was applied)."""
    # Tolerant of rows written by hand or by an older version: keys it does not know are ignored,
    # a missing name or seed comes from the row's own columns.
    stored = {k: v for k, v in (campaign.config or {}).items() if k in CampaignDefinition.model_fields}
    stored.setdefault("name", campaign.name)
    if stored.get("seed") is None:
        stored["seed"] = campaign.seed
    return CampaignDefinition.model_validate(stored)


def department_names(session: Session) -> dict[str, str]:
    """Return every department's name by code (the context of department checks)."""
    return dict(session.execute(select(Department.code, Department.name)).all())


def apply_campaign(session: Session, definition: CampaignDefinition, now: datetime) -> tuple[Campaign, bool]:
    """Create the campaign or update the one with the same name; return it and whether it is new."""
    campaign = session.scalars(select(Campaign).where(Campaign.name == definition.name)).first()
    config = definition.model_dump(mode="json", exclude={"status"})
    created = campaign is None
    if campaign is None:
        campaign = Campaign(name=definition.name, status=CampaignStatus.DRAFT, created_at=now)
        session.add(campaign)
    campaign.config = config
    campaign.seed = str(definition.seed)
    if definition.status is not None:
        campaign.status = CampaignStatus(definition.status)
    campaign.updated_at = now
    session.flush()
    return campaign, created


# The statuses an operation may start from, and where it leads.
TRANSITIONS: dict[str, tuple[frozenset[str], CampaignStatus]] = {
    "pause": (frozenset({CampaignStatus.ACTIVE, CampaignStatus.PAUSED}), CampaignStatus.PAUSED),
    "resume": (
        frozenset({CampaignStatus.PAUSED, CampaignStatus.DRAFT, CampaignStatus.ACTIVE}),
        CampaignStatus.ACTIVE,
    ),
    "archive": (frozenset(CampaignStatus), CampaignStatus.ARCHIVED),
}


def change_status(session: Session, name: str, operation: str, now: datetime) -> Campaign:
    """Pause, resume or archive a campaign by name."""
    campaign = session.scalars(select(Campaign).where(Campaign.name == name)).first()
    if campaign is None:
        raise CampaignError([Translatable("no campaign named %(name)r", name=name)])
    allowed, target = TRANSITIONS[operation]
    if campaign.status not in allowed:
        raise CampaignError([
            Translatable(
                "cannot %(operation)s campaign %(name)r: it is %(status)s",
                operation=operation, name=name, status=str(campaign.status),
            )
        ])
    campaign.status = target
    campaign.updated_at = now
    session.flush()
    return campaign


@dataclass
class CampaignSummary:
    """One campaign's line in `campaign list`: surveys by state and skipped items by reason."""

    name: str
    status: str
    updated_at: datetime
    surveys_by_state: Counter[str] = field(default_factory=Counter)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)


def campaign_summaries(session: Session) -> list[CampaignSummary]:
    """Return every campaign with its survey counts by state and skip counts by reason."""
    campaigns = session.scalars(select(Campaign).order_by(Campaign.name)).all()
    summaries = {c.id: CampaignSummary(c.name, c.status, c.updated_at) for c in campaigns}
    states = session.execute(
        select(Survey.campaign_id, Survey.state, func.count()).group_by(Survey.campaign_id, Survey.state)
    )
    for campaign_id, state, count in states:
        summaries[campaign_id].surveys_by_state[state] = count
    skips = session.execute(
        select(PickSkip.campaign_id, PickSkip.reason, func.count()).group_by(
            PickSkip.campaign_id, PickSkip.reason
        )
    )
    for campaign_id, reason, count in skips:
        summaries[campaign_id].skipped_by_reason[reason] = count
    return list(summaries.values())
