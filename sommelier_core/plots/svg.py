"""Charts drawn straight to SVG (pygal), for the plots made for every model indexed.

Matplotlib lays out and rasterizes a small figure in about 0.1 s; pygal writes the same chart as SVG text in a
few milliseconds, which is what a per-model plot can afford when a run indexes thousands of models. The SVG is
self-contained (no script, no external font or stylesheet) and has an explicit size, so it shows as an image in
Dagster's markdown (a data URI), in MLflow's artifact view and in a browser alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pygal
from pygal.style import Style

SVG_MAGIC = b"<svg"
"""How an SVG written here starts (no XML declaration)."""
_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)
PALETTE = ("#4477aa", "#cc6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")
"""Colours in series order (Paul Tol's bright scheme: distinct for colour-blind readers)."""


def chart_style(colors: Sequence[str] = PALETTE) -> Style:
    """The look every per-model chart shares: white background, small sans-serif labels, `colors` in order."""
    return Style(
        background="white",
        plot_background="white",
        foreground="#333333",
        foreground_strong="#111111",
        foreground_subtle="#cccccc",
        colors=tuple(colors),
        font_family="DejaVu Sans, Helvetica, Arial, sans-serif",
        title_font_size=13,
        label_font_size=11,
        major_label_font_size=11,
        legend_font_size=11,
        value_font_size=10,
        no_data_font_size=14,
        guide_stroke_color="#dddddd",
        major_guide_stroke_color="#cccccc",
        guide_stroke_dasharray="none",
        major_guide_stroke_dasharray="none",
        opacity=0.9,
    )


def chart_options(width: int, height: int, title: str, colors: Sequence[str] = PALETTE, legend: bool = True) -> dict:
    """pygal options for a chart of `width` × `height` pixels: no script (tooltips need one, and an image runs
    none), an explicit size (an `<img>` of an SVG without one is shown at 300 × 150), no XML declaration (so
    charts nest in one another)."""
    return {
        "width": width,
        "height": height,
        "title": title,
        "style": chart_style(colors),
        "js": [],
        "explicit_size": True,
        "disable_xml_declaration": True,
        "show_legend": legend,
        "legend_at_bottom": True,
        "truncate_legend": -1,
        "truncate_label": -1,
        "print_values": False,
        "include_x_axis": True,
    }


def render(chart: pygal.graph.graph.Graph) -> bytes:
    """The chart's SVG document as bytes, without the script pygal writes into it (its configuration, for
    interactive tooltips: an image runs no script, and it is most of the file)."""
    return _SCRIPT.sub("", chart.render(is_unicode=True)).encode("utf-8")


def side_by_side(*charts: bytes) -> bytes:
    """One SVG holding `charts` left to right, top-aligned (each keeps its own size and styles)."""
    sizes = [_size(chart) for chart in charts]
    width, height = sum(w for w, _ in sizes), max(h for _, h in sizes)
    parts, x = [], 0
    for chart, (w, _) in zip(charts, sizes, strict=True):
        parts.append(chart.decode("utf-8").replace("<svg", f'<svg x="{x}" y="0"', 1))
        x += w
    body = "".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{body}</svg>'
    ).encode()


def _size(chart: bytes) -> tuple[int, int]:
    head = chart[: chart.index(b">")].decode("utf-8")
    width, height = (re.search(rf'\b{name}="([0-9.]+)"', head) for name in ("width", "height"))
    if width is None or height is None:
        raise ValueError("an SVG chart without an explicit width and height cannot be placed beside another")
    return round(float(width.group(1))), round(float(height.group(1)))
