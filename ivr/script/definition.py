"""What a survey script is: prompts per language, digit maps, keys and settings."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from models.domain import Category, Grade

_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
# Placeholders a prompt may use; the "date" prompt is the date format itself.
ITEM_PLACEHOLDERS = frozenset({"org", "date", "department", "matter", "max_seconds"})
DATE_PLACEHOLDERS = frozenset({"year", "month", "day", "month_name"})
_SAMPLE: dict[str, str | int] = {
    "org": "org", "date": "date", "department": "department", "matter": "matter",
    "max_seconds": 60, "year": 2024, "month": 1, "day": 1, "month_name": "January",
}  # fmt: skip
# Every language of a script must define each of these prompts.
PROMPT_KEYS = (
    "date",  # format of {date}: {year} {month} {day} {month_name}
    "greeting",  # names the item, mentions the opt-out and not-eligible keys
    "rating",  # the grade menu, with the repeat key
    "categories",  # complaint categories, several digits then the finish key
    "comment",  # invitation to record a voice comment
    "thanks",  # end of a voice survey
    "invalid",  # an invalid key was pressed
    "no_input",  # nothing was pressed before the timeout
    "give_up",  # too many invalid inputs: end of the call
    "optout",  # confirmation that the citizen will not be called again
    "not_eligible",  # the citizen did not handle this item
    "verification_greeting",  # verification visit: names the item and the case
    "verification",  # the verification menu: satisfied or not
    "sms_invite",  # outbound survey text: item, reply digits, opt-out line
    "sms_categories",  # asks a bad-grade SMS reply for its categories
    "sms_clarify",  # a reply that could not be read, before the question again
    "sms_thanks",  # end of an SMS survey
    "sms_optout",  # confirmation of an SMS opt-out
    "sms_not_eligible",  # reply to "did not handle this item"
    "sms_verification",  # outbound verification text
)


class Flow(StrEnum):
    """Which conversation the engine runs."""

    SURVEY = "survey"  # rating, categories for a bad grade, optional comment
    VERIFICATION = "verification"  # after a rectification: satisfied with how it was handled?


class Verdict(StrEnum):
    """Answer to the verification question."""

    SATISFIED = "satisfied"  # satisfied with how the complaint was handled
    DISSATISFIED = "dissatisfied"  # not satisfied


class AskWhen(StrEnum):
    """For which grades an optional question is asked."""

    BAD = "bad"  # only after a bad review (dissatisfied, very dissatisfied)
    ALWAYS = "always"  # after every grade
    NEVER = "never"  # never

    def applies_to(self, grade: Grade) -> bool:
        """Whether the question is asked after this grade."""
        return self is AskWhen.ALWAYS or (self is AskWhen.BAD and grade.is_bad)


@dataclass(frozen=True)
class Keys:
    """Keys that mean the same at every menu; an empty string turns a key off."""

    optout: str = "0"
    not_eligible: str = "8"
    repeat: str = "9"
    finish: str = "#"


@dataclass(frozen=True)
class ItemContext:
    """The service item a survey is about, and the language to speak."""

    org: str
    department: str
    matter: str
    completed_on: date
    language: str = "zh-CN"


@dataclass(frozen=True)
class Script:
    """A survey script: pure data, loaded from TOML by `load_script`.

    `max_invalid` is the number of consecutive invalid or empty inputs that ends the
    conversation: with the default 2, the first gets "that was not valid" and the
    question again, the second ends the call politely keeping what was answered. The
    repeat key is neither invalid nor an answer; after `max_repeats` repeats in one
    conversation it counts as invalid, so no input sequence loops forever.
    """

    name: str
    default_language: str
    prompts: Mapping[str, Mapping[str, str]]  # language -> prompt key -> text
    grade_digits: Mapping[str, Grade]
    category_digits: Mapping[str, Category]
    verification_digits: Mapping[str, Verdict]
    keys: Keys = Keys()
    ask_categories: AskWhen = AskWhen.BAD
    ask_comment: AskWhen = AskWhen.BAD
    comment_max_seconds: int = 60
    max_invalid: int = 2
    max_repeats: int = 3
    timeout_seconds: int = 8
    categories_timeout_seconds: int = 10

    def resolve_language(self, tag: str) -> str:
        """Return the script language for a tag: exact, then same primary subtag, else default."""
        if tag in self.prompts:
            return tag
        primary = tag.split("-")[0].lower()
        for language in self.prompts:
            if language.split("-")[0].lower() == primary:
                return language
        return self.default_language

    def render(self, key: str, ctx: ItemContext) -> str:
        """Return prompt `key` in the context's language with the item filled in."""
        prompts = self.prompts[self.resolve_language(ctx.language)]
        day = ctx.completed_on
        when = prompts["date"].format(
            year=day.year, month=day.month, day=day.day, month_name=_MONTH_NAMES[day.month - 1]
        )
        return prompts[key].format(
            org=ctx.org,
            date=when,
            department=ctx.department,
            matter=ctx.matter,
            max_seconds=self.comment_max_seconds,
        )


def placeholder_error(text: str, allowed: frozenset[str]) -> str | None:
    """Return why `text` is not a valid prompt template, or None when it is."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        return str(exc)
    for name in fields:
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            return f"unknown placeholder {{{name}}} (known: {known})"
    try:
        text.format(**{name: _SAMPLE[name] for name in allowed})
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None
