"""Typed settings: the example file's defaults, then the site file, then secrets from the environment.

Nothing here runs at import time; `load_settings()` is called by each entry point and the result is
passed down.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger(__name__)

EXAMPLE_PATH = Path(__file__).resolve().parent.parent / "config.example.toml"

# Environment variables that carry secrets (and the database URL), and the key each one sets.
ENV_KEYS: dict[str, tuple[str, str]] = {
    "RETURNVISIT_DATABASE_URL": ("database", "url"),
    "RETURNVISIT_SECRET_KEY": ("app", "secret_key"),
    "RETURNVISIT_INTAKE_API_TOKEN": ("intake", "api_token"),
    "RETURNVISIT_TWILIO_ACCOUNT_SID": ("twilio", "account_sid"),
    "RETURNVISIT_TWILIO_AUTH_TOKEN": ("twilio", "auth_token"),
}
# Stand-ins used in development mode only, so a fresh checkout runs without any secret set.
DEV_SECRETS: dict[tuple[str, str], str] = {
    ("app", "secret_key"): "dev-secret-key-not-for-production",
    ("intake", "api_token"): "dev-intake-token",
    ("twilio", "account_sid"): "AC00000000000000000000000000000000",
    ("twilio", "auth_token"): "dev-twilio-auth-token",
}


class ConfigError(Exception):
    """The configuration is unusable; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


# Text that ends up in stored rows (the org's name is in the texts sent), and values stored in a
# column of a given length: PostgreSQL refuses a NUL, and a value longer than its column.
StoredText = Annotated[str, AfterValidator(_no_nul)]
SourceName = Annotated[str, Field(max_length=64), AfterValidator(_no_nul)]  # ServiceItem.source


def _sender(value: str) -> str:
    # A reply comes back To our number in E.164 and is routed by the sender stored with each text:
    # "+1 202 555 0101" must be stored as "+12025550101". Short codes and sender names stay as written.
    if not value.startswith("+"):
        return value
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number ({exc})") from None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Attempt.from_number
Sender = Annotated[str, Field(max_length=20), AfterValidator(_no_nul), AfterValidator(_sender)]


class AppSettings(_Section):
    org: StoredText
    mode: Literal["development", "production"]
    timezone: str
    language: Literal["zh-CN", "en-US"]
    public_base_url: str
    secret_key: str

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("public_base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def tz(self) -> ZoneInfo:
        """Return the service centre's time zone."""
        return ZoneInfo(self.timezone)


class DatabaseSettings(_Section):
    url: str
    echo: bool


class PhoneSettings(_Section):
    default_region: str
    default_area_code: str


class IntakeSettings(_Section):
    api_token: str
    auto_create_departments: bool
    default_source: SourceName
    max_batch: int = Field(gt=0)
    columns: dict[str, list[str]]


class TwilioSettings(_Section):
    account_sid: str
    auth_token: str
    api_base_url: str
    voice_from: Sender
    sms_from: Sender
    voice_zh: str
    voice_en: str
    validate_signatures: bool


class GatewaySettings(_Section):
    kind: Literal["simulator", "twilio"]
    calls_per_second: float = Field(gt=0)
    max_concurrent_calls: int = Field(gt=0)


class SchedulerSettings(_Section):
    tick_seconds: int = Field(gt=0)
    lease_seconds: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    contact_cap_days: int = Field(ge=0)


class CalendarSettings(_Section):
    region: str
    extra_closed: list[str]
    extra_working: list[str]

    # Checked here, at start-up, not first when the scheduler builds its calendar
    # (scheduler/calendar.py reads the same names and dates).
    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value.strip().upper() not in ("CN", "NONE", ""):
            raise ValueError(f"unknown calendar region {value!r}: use 'CN' or 'none'")
        return value

    @field_validator("extra_closed", "extra_working")
    @classmethod
    def _iso_dates(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
        return values

    @model_validator(mode="after")
    def _closed_or_working(self) -> CalendarSettings:
        closed = {date.fromisoformat(value) for value in self.extra_closed}
        both = closed & {date.fromisoformat(value) for value in self.extra_working}
        if both:
            days = ", ".join(sorted(day.isoformat() for day in both))
            raise ValueError(f"days both in extra_closed and in extra_working: {days}")
        return self


class CaseSettings(_Section):
    due_working_days: int = Field(ge=1, le=60)
    min_ratings_to_rank: int = Field(ge=0)


class RetentionSettings(_Section):
    purge_after_days: int = Field(gt=0)
    scheduled_purge: bool
    batch_size: int = Field(gt=0)


class MetricsSettings(_Section):
    allow_networks: list[str]
    store_cache_seconds: float = Field(ge=0)

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r} is not an IP network (e.g. 10.0.0.0/8)") from exc
        return value


class Settings(_Section):
    app: AppSettings
    database: DatabaseSettings
    phones: PhoneSettings
    intake: IntakeSettings
    twilio: TwilioSettings
    gateway: GatewaySettings
    scheduler: SchedulerSettings
    calendar: CalendarSettings
    cases: CaseSettings
    retention: RetentionSettings
    metrics: MetricsSettings

    @property
    def is_production(self) -> bool:
        """Return whether the site runs in production mode."""
        return self.app.mode == "production"


# Keys that must be non-empty in production (in development, DEV_SECRETS stands in for an unset one).
REQUIRED_IN_PRODUCTION = [
    ("app", "secret_key"),
    ("intake", "api_token"),
    ("twilio", "account_sid"),
    ("twilio", "auth_token"),
]
# How deploy/env.example's placeholders begin: a site that copied the file and kept one is refused.
PLACEHOLDER_PREFIX = "change-this"


def _stand_in(value: str) -> bool:
    return value in DEV_SECRETS.values() or value.strip().lower().startswith(PLACEHOLDER_PREFIX)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _merge(base: dict[str, Any], site: Mapping[str, Any], prefix: str, unknown: list[str]) -> None:
    for key, value in site.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            unknown.append(dotted)
            base[key] = value
        elif isinstance(base[key], dict) and not isinstance(value, Mapping):
            raise ConfigError(f"invalid configuration: {dotted}: must be a table")
        elif isinstance(base[key], dict):
            # Column lists under intake.columns are open-ended: a site may add fields there.
            if dotted == "intake.columns":
                base[key] = {**base[key], **value}
            else:
                _merge(base[key], value, dotted + ".", unknown)
        else:
            base[key] = value


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load the defaults, the site file and the environment into one validated Settings object."""
    env = os.environ if env is None else env
    data = _read_toml(EXAMPLE_PATH)
    unknown: list[str] = []
    site_path = path if path is not None else env.get("RETURNVISIT_CONFIG")
    if site_path:
        _merge(data, _read_toml(Path(site_path)), "", unknown)
    for var, (section, key) in ENV_KEYS.items():
        if env.get(var):
            data[section][key] = env[var]
    if overrides:
        _merge(data, overrides, "", [])
    for dotted in unknown:
        log.warning("unknown configuration key %s in %s (ignored)", dotted, site_path)

    if data["app"].get("mode") != "production":
        for (section, key), value in DEV_SECRETS.items():
            if not data[section].get(key):
                data[section][key] = value
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from exc

    if settings.is_production:
        for section, key in REQUIRED_IN_PRODUCTION:
            value = getattr(getattr(settings, section), key)
            if not value:
                raise ConfigError(f"missing required key {section}.{key} (required in production)")
            if _stand_in(value):
                raise ConfigError(
                    f"{section}.{key} is a development stand-in or deploy/env.example's placeholder:"
                    " set the site's own secret (refused in production)"
                )
        try:
            password = make_url(settings.database.url).password
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            password = None  # the engine names a malformed URL when it is first used
        if password and _stand_in(str(password)):
            raise ConfigError(
                "database.url has deploy/env.example's placeholder password: set the site's own"
                " (refused in production)"
            )
        if not settings.twilio.validate_signatures:
            raise ConfigError("twilio.validate_signatures = false is refused in production mode")
    return settings
