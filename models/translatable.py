"""English texts that keep their template and values, so the console can show them translated.

The model and scheduler layers speak English: the CLI prints and the logs record `str()` of their
errors. An error built from a Translatable also carries the %-style template and its values, which
console.web.i18n looks up with gettext. Nothing here imports Flask or Babel.
"""

from __future__ import annotations

from typing import Any


class Translatable(str):
    """An English text built from a %-style template and named values (a list reads 'a, b')."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> Translatable:
        # Without values the template is the text as it stands (it may hold a '%', as data may).
        english = template % {key: _english(value) for key, value in params.items()} if params else template
        text = super().__new__(cls, english)
        text.template = template
        text.params = params
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        # Import rows cross to a worker process and back pickled: keep the template and values.
        return _rebuild, (self.template, self.params)


def _rebuild(template: str, params: dict[str, Any]) -> Translatable:
    return Translatable(template, **params)


def _english(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return value


class TranslatableError(ValueError):
    """An error whose message is a Translatable: `str()` is the English text, `message` keeps the rest."""

    def __init__(self, template: str, **params: Any) -> None:
        # A Translatable given as is (how pickle rebuilds the error from its args) is kept whole.
        self.message = template if isinstance(template, Translatable) and not params else (
            Translatable(template, **params)
        )
        super().__init__(self.message)
