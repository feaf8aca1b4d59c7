"""Load a survey script from TOML; every error names the key at fault."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from ivr.script.definition import (
    DATE_PLACEHOLDERS,
    ITEM_PLACEHOLDERS,
    PROMPT_KEYS,
    AskWhen,
    Keys,
    Script,
    Verdict,
    placeholder_error,
)
from models.domain import DEFAULT_CATEGORY_DIGITS, DEFAULT_GRADE_DIGITS, Category, Grade

_E = TypeVar("_E", bound=StrEnum)
_KEYPAD = frozenset("0123456789*#")
_TABLES = frozenset({"script", "settings", "keys", "grades", "categories", "verification", "prompts"})
_INT_SETTINGS = {  # name -> smallest allowed value
    "comment_max_seconds": 1,
    "max_invalid": 1,
    "max_repeats": 0,
    "timeout_seconds": 1,
    "categories_timeout_seconds": 1,
}
_DEFAULT_VERIFICATION = {"1": Verdict.SATISFIED, "2": Verdict.DISSATISFIED}


class ScriptError(ValueError):
    """A script file that cannot be used; the message names the key."""


def load_script(source: str | Path) -> Script:
    """Load a script from a TOML file (a Path, or a str ending in .toml) or from TOML text."""
    if isinstance(source, Path) or ("\n" not in source and source.endswith(".toml")):
        origin, text = str(source), Path(source).read_text(encoding="utf-8")
    else:
        origin, text = "<text>", source
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(f"{origin}: {exc}") from exc
    return parse_script(data)


@cache
def default_script() -> Script:
    """Return the default script shipped in ivr/scripts/default.toml."""
    text = resources.files("ivr").joinpath("scripts/default.toml").read_text(encoding="utf-8")
    return load_script(text)


def parse_script(data: Mapping[str, Any]) -> Script:
    """Build a Script from parsed TOML; sections other than prompts have defaults."""
    _no_unknown(data, _TABLES, "")
    meta = _table(data, "script")
    _no_unknown(meta, {"name", "default_language"}, "script.")
    settings = _table(data, "settings")
    _no_unknown(settings, {"ask_categories", "ask_comment", *_INT_SETTINGS}, "settings.")
    keys = _parse_keys(_table(data, "keys"))
    grades = _digit_map(data, "grades", Grade, DEFAULT_GRADE_DIGITS, keys, complete=True)
    categories = _digit_map(data, "categories", Category, DEFAULT_CATEGORY_DIGITS, keys)
    verification = _digit_map(data, "verification", Verdict, _DEFAULT_VERIFICATION, keys, complete=True)
    prompts = _parse_prompts(data)
    default_language = _string(meta, "default_language", "script.", "zh-CN")
    if default_language not in prompts:
        raise ScriptError(f"prompts.{default_language} missing (script.default_language)")
    script = Script(
        name=_string(meta, "name", "script.", "custom"),
        default_language=default_language,
        prompts=prompts,
        grade_digits=grades,
        category_digits=categories,
        verification_digits=verification,
        keys=keys,
        ask_categories=_enum(settings, "ask_categories", AskWhen, AskWhen.BAD),
        ask_comment=_enum(settings, "ask_comment", AskWhen, AskWhen.BAD),
    )
    numbers: dict[str, Any] = {
        name: _int(settings, name, low) for name, low in _INT_SETTINGS.items() if name in settings
    }
    return dataclasses.replace(script, **numbers)


def _parse_keys(table: Mapping[str, Any]) -> Keys:
    _no_unknown(table, {"optout", "not_eligible", "repeat", "finish"}, "keys.")
    defaults = Keys()
    keys = Keys(**{name: _string(table, name, "keys.", getattr(defaults, name)) for name in table})
    seen: dict[str, str] = {}
    for name in ("optout", "not_eligible", "repeat", "finish"):
        key = getattr(keys, name)
        if key == "" and name != "finish":
            continue  # turned off
        if len(key) != 1 or key not in _KEYPAD:
            raise ScriptError(f"keys.{name} must be one keypad key (0-9, * or #), got {key!r}")
        if key in seen:
            raise ScriptError(f"keys.{name} {key!r} is already keys.{seen[key]}")
        seen[key] = name
    return keys


def _digit_map(
    data: Mapping[str, Any],
    section: str,
    kind: type[_E],
    default: Mapping[str, _E],
    keys: Keys,
    *,
    complete: bool = False,
) -> Mapping[str, _E]:
    if section not in data:
        return MappingProxyType(dict(default))
    table = _table(data, section)
    if not table:
        raise ScriptError(f"{section} is empty")
    reserved = {key: name for name, key in vars(keys).items() if key}
    result: dict[str, _E] = {}
    for digit in table:
        name = f"{section}.{digit}"
        if len(digit) != 1 or digit not in _KEYPAD:
            raise ScriptError(f"{name}: a key must be one keypad key (0-9, * or #)")
        if digit in reserved:
            raise ScriptError(f"{name}: {digit!r} is already keys.{reserved[digit]}")
        value = _enum(table, digit, kind, None, prefix=f"{section}.")
        if value in result.values():
            raise ScriptError(f"{name}: {value} has two keys")
        result[digit] = value
    if complete:
        for member in kind:
            if member not in result.values():
                raise ScriptError(f"{section}: {member} has no key")
    return MappingProxyType(result)


def _parse_prompts(data: Mapping[str, Any]) -> Mapping[str, Mapping[str, str]]:
    if "prompts" not in data:
        raise ScriptError("prompts missing")
    languages = _table(data, "prompts")
    prompts: dict[str, Mapping[str, str]] = {}
    for language in languages:
        prefix = f"prompts.{language}."
        table = _table(languages, language, "prompts.")
        _no_unknown(table, set(PROMPT_KEYS), prefix)
        texts: dict[str, str] = {}
        for key in PROMPT_KEYS:
            if key not in table:
                raise ScriptError(f"{prefix}{key} missing")
            text = _string(table, key, prefix, None)
            allowed = DATE_PLACEHOLDERS if key == "date" else ITEM_PLACEHOLDERS
            problem = placeholder_error(text, allowed)
            if problem is not None:
                raise ScriptError(f"{prefix}{key}: {problem}")
            texts[key] = text
        prompts[language] = MappingProxyType(texts)
    if not prompts:
        raise ScriptError("prompts has no language")
    return MappingProxyType(prompts)


def _table(data: Mapping[str, Any], name: str, prefix: str = "") -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ScriptError(f"{prefix}{name} must be a table")
    return value


def _no_unknown(table: Mapping[str, Any], known: set[str] | frozenset[str], prefix: str) -> None:
    for name in table:
        if name not in known:
            raise ScriptError(f"{prefix}{name} is not a known key")


def _string(table: Mapping[str, Any], name: str, prefix: str, default: str | None) -> str:
    value = table.get(name, default)
    if not isinstance(value, str):
        raise ScriptError(f"{prefix}{name} must be a string")
    if default is None and not value.strip():
        raise ScriptError(f"{prefix}{name} is empty")
    return value


def _int(table: Mapping[str, Any], name: str, low: int) -> int:
    value = table[name]
    if type(value) is not int or value < low:
        raise ScriptError(f"settings.{name} must be an integer of at least {low}")
    return value


def _enum(
    table: Mapping[str, Any],
    name: str,
    kind: type[_E],
    default: _E | None,
    prefix: str = "settings.",
) -> _E:
    value = table.get(name, default)
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise ScriptError(f"{prefix}{name} must be one of {known}, got {value!r}") from None
