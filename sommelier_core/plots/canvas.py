"""A figure on matplotlib's Agg canvas, rendered to PNG bytes or a data URI (no display, no pyplot state)."""

from __future__ import annotations

import base64
import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 90
"""Pixels per inch of the PNGs: sharp enough to read in a browser, small enough (tens of kB) for run metadata."""


def new_figure(width_in: float, height_in: float) -> Figure:
    """An empty figure of that size (inches) on its own Agg canvas, laid out to keep labels inside."""
    figure = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure, dpi: int = DPI) -> bytes:
    """The figure as a PNG file's bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def data_uri(image: bytes) -> str:
    """A `data:image/png;base64,…` (or `image/svg+xml`, for an SVG document) URI: an image a page shows with no
    file or server behind it."""
    kind = "svg+xml" if image.lstrip()[:5] in (b"<svg ", b"<?xml") else "png"
    return f"data:image/{kind};base64," + base64.b64encode(image).decode("ascii")


def markdown_image(image: bytes, alt: str) -> str:
    """Markdown showing the image (PNG or SVG) inline, as a data URI, with `alt` as its text."""
    return f"![{alt.replace(']', ')')}]({data_uri(image)})"
