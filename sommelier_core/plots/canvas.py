"""A figure on matplotlib's Agg canvas, rendered to PNG bytes or a data URI (no display, no pyplot state)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 90
"""Pixels per inch of the PNGs: sharp enough to read in a browser, small enough (tens of kB) for run metadata."""


def new_figure(width_in: float, height_in: float, margins: Mapping[str, float] | None = None) -> Figure:
    """An empty figure of that size (inches) on its own Agg canvas, laid out to keep labels inside; or, given
    `margins` (`subplots_adjust`'s fractions: left, right, bottom, top, wspace), laid out by them. Fixed margins
    halve the time to render a small figure (no layout solved): per-model plots, drawn for every model indexed,
    use them."""
    figure = Figure(figsize=(width_in, height_in), layout=None if margins else "constrained")
    if margins:
        figure.subplots_adjust(**margins)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure, dpi: int = DPI) -> bytes:
    """The figure as a PNG file's bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A `data:image/png;base64,…` URI: an image a page shows with no file or server behind it."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown showing the PNG inline (as a data URI), with `alt` as its text."""
    return f"![{alt.replace(']', ')')}]({data_uri(png)})"
