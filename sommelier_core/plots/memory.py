"""Memory against batch size (paper Fig. 12a): what a runtime holds at once as the batch grows."""

from __future__ import annotations

from collections.abc import Sequence

import pygal

from sommelier_core.plots.svg import PALETTE, chart_options, render
from sommelier_core.profiling.memory import MemoryPoint

MIB = 1024.0 * 1024.0


def memory_by_batch_svg(model_id: str, points: Sequence[MemoryPoint]) -> bytes:
    """Weights plus peak activations (solid, with dots) and weights alone (dashed) against batch size, one pair
    of lines per input resolution profiled (the model's own shapes when it has no symbolic spatial size); MiB on
    the y axis, the batch sizes profiled evenly spaced on the x axis. An SVG document."""
    resolutions = sorted({p.resolution for p in points}, key=lambda r: (r is not None, r or 0))
    batch_sizes = sorted({p.batch_size for p in points})
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(resolutions)) for _ in range(2)]  # a colour per pair
    chart = pygal.Line(
        **chart_options(480, 360, f"{model_id}: memory by batch size (dashed: weights)", colors),
        x_title="batch size",
        y_title="memory (MiB)",
        dots_size=3,
    )
    chart.x_labels = [str(b) for b in batch_sizes]
    for resolution in resolutions:
        at = {p.batch_size: p for p in points if p.resolution == resolution}
        label = "own input size" if resolution is None else f"{resolution}×{resolution}"
        chart.add(label, [at[b].memory_bytes / MIB if b in at else None for b in batch_sizes])
        chart.add(
            f"weights, {label}",
            [at[b].weight_bytes / MIB if b in at else None for b in batch_sizes],
            show_dots=False,
            stroke_style={"width": 1, "dasharray": "6, 4"},
        )
    return render(chart)
