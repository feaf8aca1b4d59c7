"""Charts drawn on the server as inline SVG: no script, no external asset, readable when printed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

ROW_HEIGHT = 24
LABEL_WIDTH = 170
BAR_WIDTH = 360
VALUE_WIDTH = 80


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
    height = ROW_HEIGHT * max(1, len(rows)) + 8
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg class="chart {escape(css_class)}" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not rows:
        parts.append('<text x="0" y="18" class="empty">–</text>')
    for index, (label, value) in enumerate(rows):
        y = index * ROW_HEIGHT + 4
        length = 0.0 if value is None or top <= 0 else max(0.0, min(1.0, value / top)) * BAR_WIDTH
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end" class="label">'
            f"{escape(_shorten(label))}</text>"
        )
        parts.append(f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{length:.1f}" height="16" class="bar"/>')
        parts.append(
            f'<text x="{LABEL_WIDTH + length + 4:.1f}" y="{y + 15}" class="value">'
            f"{escape(value_text(value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and value above went through escape()


def _shorten(label: str, limit: int = 14) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
