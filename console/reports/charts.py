"""Charts of the report, rendered on the server as inline SVG (pygal), without any script."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pygal
from pygal.style import Style

from console.reports.labels import CATEGORY_LABELS
from models.metrics import DepartmentFigures

_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)
# Print-friendly: white background, dark text, fonts that have Chinese glyphs.
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#222222",
    foreground_strong="#000000",
    foreground_subtle="#888888",
    font_family='"Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif',
    colors=(
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ),
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=11,
    title_font_size=14,
    value_font_size=10,
)
_COMMON = {
    "style": STYLE,
    "js": [],
    "disable_xml_declaration": True,
    "explicit_size": False,
    "print_values": False,
    "no_data_text": "无数据 no data",
}


def _svg(chart: pygal.graph.graph.Graph) -> str:
    # pygal always adds a small configuration script for its tooltips: a printed report needs none.
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def trend_chart(quarters: Sequence[str], rates: dict[str, list[float | None]], names: dict[str, str]) -> str:
    """Return a line chart of each department's satisfaction rate (%) over the quarters."""
    values = [r for series in rates.values() for r in series if r is not None]
    # Rates sit close to 100 %: start the axis at the decade below the lowest rate.
    floor = max(0, int(min(values, default=0.0) * 10) * 10 - 10)
    chart = pygal.Line(
        title="满意率趋势 Satisfaction rate by quarter (%)",
        width=900,
        height=420,
        legend_at_bottom=True,
        legend_at_bottom_columns=4,
        truncate_legend=24,
        show_minor_x_labels=True,
        allow_interruptions=True,
        range=(floor, 100),
        # pygal cannot place fixed y labels on a chart without a series; without them it says no data.
        y_labels=list(range(floor, 101, 10 if 100 - floor > 20 else 5)) if rates else None,
        **_COMMON,
    )
    chart.x_labels = list(quarters)
    for code, series in sorted(rates.items()):
        chart.add(names.get(code, code), [None if r is None else round(r * 100, 1) for r in series])
    return _svg(chart)


def category_chart(figures: Sequence[DepartmentFigures]) -> str:
    """Return a bar chart of bad reviews by complaint category."""
    totals = {key: sum(f.categories.get(key, 0) for f in figures) for key in CATEGORY_LABELS}
    chart = pygal.Bar(
        title="差评问题类别 Bad reviews by category",
        width=900,
        height=360,
        show_legend=False,
        print_values=True,
        **{k: v for k, v in _COMMON.items() if k != "print_values"},
    )
    chart.x_labels = [CATEGORY_LABELS[key] for key in totals]
    chart.add("差评 bad reviews", list(totals.values()))
    return _svg(chart)


def ranking_chart(figures: Sequence[DepartmentFigures]) -> str:
    """Return a horizontal bar chart of the ranked departments' satisfaction index."""
    ranked = sorted((f for f in figures if f.rank is not None), key=lambda f: (f.rank, f.department_code))
    chart = pygal.HorizontalBar(
        title="满意度指数排名 Ranking by satisfaction index",
        width=900,
        height=max(220, 60 + 28 * len(ranked)),
        show_legend=False,
        print_values=True,
        range=(0, 100),
        **{k: v for k, v in _COMMON.items() if k != "print_values"},
    )
    # pygal draws the first label at the bottom: reverse so rank 1 is on top.
    chart.x_labels = [f"{f.rank}. {f.department_name}" for f in reversed(ranked)]
    chart.add("指数 index", [round(f.satisfaction_index or 0.0, 1) for f in reversed(ranked)])
    return _svg(chart)
