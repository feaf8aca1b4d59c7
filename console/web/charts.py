"""Charts drawn on the server as inline SVG: no script, no external asset, readable when printed.

Each row's label sits above its bar, so a long department or category name gets the chart's whole
width, and the chart is narrow enough (320 px) to be drawn at full size on a phone.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

ROW_HEIGHT = 38
BAR_WIDTH = 250
VALUE_WIDTH = 70
WIDTH = BAR_WIDTH + VALUE_WIDTH
# Estimated advance of a character at the charts' 12px font: CJK is square, Latin about 0.6 em.
WIDE_CHAR = 12.0
NARROW_CHAR = 7.2


def bar_chart(
    rows: Sequence[tuple[str, float | None]],
    *,
    title: str,
    max_value: float | None = None,
    value_text: Callable[[float | None], str] = lambda v: "–" if v is None else f"{v:g}",
    css_class: str = "",
) -> Markup:
    """Return a horizontal bar chart of (label, value) rows; a None value draws no bar."""
    values = [value for _, value in rows if value is not None]
    top = max_value if max_value is not None else max(values, default=0) or 1
    height = ROW_HEIGHT * max(1, len(rows)) + 4
    parts = [
        f'<svg class="chart {escape(css_class)}" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not rows:
        parts.append('<text x="0" y="18" class="empty">–</text>')
    for index, (label, value) in enumerate(rows):
        y = index * ROW_HEIGHT
        length = 0.0 if value is None or top <= 0 else max(0.0, min(1.0, value / top)) * BAR_WIDTH
        shown = shorten(label, WIDTH)
        tooltip = f"<title>{escape(label)}</title>" if shown != label else ""
        parts.append(f'<text x="0" y="{y + 14}" class="label">{tooltip}{escape(shown)}</text>')
        parts.append(f'<rect x="0" y="{y + 19}" width="{length:.1f}" height="14" class="bar"/>')
        parts.append(
            f'<text x="{length + 4:.1f}" y="{y + 31}" class="value">{escape(value_text(value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and value above went through escape()


def text_width(text: str) -> float:
    """Estimate the width in px of a text drawn at the charts' font size."""
    return sum(WIDE_CHAR if unicodedata.east_asian_width(ch) in "WF" else NARROW_CHAR for ch in text)


def shorten(label: str, room: float) -> str:
    """Return the label, or its longest start that fits `room` px followed by an ellipsis."""
    if text_width(label) <= room:
        return label
    kept = label
    while kept and text_width(kept) + NARROW_CHAR > room:
        kept = kept[:-1]
    return kept.rstrip() + "…"
