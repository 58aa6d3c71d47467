"""Inline SVG bar charts with labelled axes, ticks and every bin drawn (an empty bin is an empty slot)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping

from hadron_hf.report.stats import Bins

PALETTE = {"rows": "#4c78a8", "draft": "#9aa7c7", "final": "#4c78a8", "A": "#8c8c8c", "B": "#f58518",
           "AB": "#54a24b", "undecided": "#e45756", "fail-safe": "#b279a2", "no flaws": "#72b7b2"}
_W, _H = 520, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 20, 22, 48


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice_step(top: int, ticks: int = 4) -> int:
    raw = max(top / ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(step * power for step in (1, 2, 5, 10) if step * power >= raw))


def bar_chart(title: str, bins: Bins, y_title: str, note: str = "", colors: Mapping[str, str] = PALETTE) -> str:
    """A captioned SVG chart of ``bins``: grouped bars per series, y ticks, x labels and both axis titles.

    Args:
        title: the caption.
        bins: bin labels, counts per series and the x-axis title (with its unit).
        y_title: the y-axis title (with its unit), e.g. ``rows``.
        note: a short line under the chart (what is left out, how to read it).
        colors: fill per series name.

    Returns:
        A ``<figure>`` with the chart.
    """
    n = len(bins.labels)
    caption = f"<figcaption>{_e(title)}</figcaption>"
    foot = f'<div class="note">{_e(note)}</div>' if note else ""
    top = max((c for counts in bins.counts.values() for c in counts), default=0)
    if not n or not top:
        return (f'<figure class="chart">{caption}<svg viewBox="0 0 {_W} 60" role="img" aria-label="{_e(title)}">'
                f'<text x="{_W / 2}" y="34" text-anchor="middle">no data</text></svg>{foot}</figure>')
    step = _nice_step(top)
    y_max = step * math.ceil(top / step)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    base = _TOP + plot_h
    parts = []
    for tick in range(0, y_max + 1, step):
        y = base - plot_h * tick / y_max
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"></line>'
                     f'<text x="{_LEFT - 5}" y="{y + 4:.1f}" text-anchor="end">{tick:,}</text>')
    slot = plot_w / n
    series = list(bins.counts)
    bar_w = slot * 0.8 / len(series)
    ticks = bins.edges or bins.labels
    longest = max(len(label) for label in ticks)
    every = max(1, math.ceil(len(ticks) * (longest * 7 + 8) / plot_w))  # thin the x labels so they never overlap
    for i, label in enumerate(bins.labels):
        x0 = _LEFT + i * slot + slot * 0.1
        for k, name in enumerate(series):
            count = bins.counts[name][i]
            h = plot_h * count / y_max
            x = x0 + k * bar_w
            tip = f"{bins.x_title} {label}: {count:,} {y_title}" + (f" ({name})" if len(series) > 1 else "")
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{colors.get(name, "#4c78a8")}"><title>{_e(tip)}</title></rect>')
            if count and n * len(series) <= 16:
                parts.append(f'<text class="val" x="{x + bar_w / 2:.1f}" y="{base - h - 3:.1f}" '
                             f'text-anchor="middle">{count:,}</text>')
        if i % every == 0 and not bins.edges:
            parts.append(f'<text x="{_LEFT + (i + 0.5) * slot:.1f}" y="{base + 14}" '
                         f'text-anchor="middle">{_e(label)}</text>')
    for i, edge in enumerate(bins.edges or []):
        if i % every == 0:  # a continuous axis: label the bin boundaries, as a histogram does
            x = _LEFT + i * slot
            parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}"></line>'
                         f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle">{_e(edge)}</text>')
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{base}" y2="{base}"></line>'
                 f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{base}"></line>'
                 f'<text class="axt" x="{_LEFT + plot_w / 2}" y="{_H - 8}" text-anchor="middle">{_e(bins.x_title)}'
                 f'</text><text class="axt" transform="translate(14 {_TOP + plot_h / 2}) rotate(-90)" '
                 f'text-anchor="middle">{_e(y_title)}</text>')
    if len(series) > 1:
        x = _W - _RIGHT
        for name in reversed(series):
            x -= 10 + 7 * len(name)
            parts.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{colors.get(name, "#4c78a8")}"></rect>'
                         f'<text x="{x + 13}" y="13">{_e(name)}</text>')
            x -= 8
    return (f'<figure class="chart">{caption}<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(title)}">'
            f'{"".join(parts)}</svg>{foot}</figure>')
