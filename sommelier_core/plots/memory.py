"""Memory against batch size (paper Fig. 12a): what a runtime holds at once as the batch grows."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from sommelier_core.plots.canvas import new_figure
from sommelier_core.profiling.memory import MemoryPoint


def memory_by_batch_plot(model_id: str, points: Sequence[MemoryPoint]) -> Figure:
    """Weights plus peak activations (solid) and weights alone (dashed) against batch size, one line per input
    resolution profiled (the model's own shapes when it has no symbolic spatial size); MiB on the y axis."""
    figure = new_figure(5.0, 3.6, margins={"left": 0.14, "right": 0.97, "bottom": 0.13, "top": 0.91})
    axes = figure.add_subplot()
    mib = 1024.0 * 1024.0
    for resolution in sorted({p.resolution for p in points}, key=lambda r: (r is not None, r or 0)):
        line = sorted((p for p in points if p.resolution == resolution), key=lambda p: p.batch_size)
        label = "own input size" if resolution is None else f"{resolution}×{resolution}"
        drawn = axes.plot([p.batch_size for p in line], [p.memory_bytes / mib for p in line], marker="o", label=label)
        axes.plot(
            [p.batch_size for p in line],
            [p.weight_bytes / mib for p in line],
            linestyle="--",
            color=drawn[0].get_color(),
            linewidth=1,
        )
    batch_sizes = sorted({p.batch_size for p in points})
    if len(batch_sizes) > 1:
        axes.set_xscale("log", base=2)
        axes.set_xticks(batch_sizes, [str(b) for b in batch_sizes])  # the sizes profiled, not powers of two
        axes.minorticks_off()
    axes.set_xlabel("batch size")
    axes.set_ylabel("memory (MiB): weights + peak activations")
    axes.set_title(f"{model_id}: memory by batch size (dashed: weights)", fontsize=9)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return figure
