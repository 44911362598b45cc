"""Plots of what the indexes hold, for people who would rather look than read (paper Fig. 3, Fig. 12a).

The index's plots are matplotlib on its Agg canvas (no display, no global backend switch): those functions
return a `Figure` and `png_bytes` renders it, so the assets attach the same picture to Dagster and MLflow and
the CLI writes it to a file. The plots drawn for every model indexed are SVG documents written by pygal, which
takes milliseconds where matplotlib takes a tenth of a second (`svg`). Modules:

- `canvas`: a figure on the Agg canvas, PNG bytes, a data URI for markdown (of a PNG or an SVG).
- `svg`: pygal's options and style for the per-model charts; charts placed side by side.
- `heatmap`: the equivalence heat map, models grouped by compatibility (`equivalence_heatmap`).
- `pareto`: similarity against cost for one reference, with the Pareto front (`pareto_plot`, `pareto_points`).
- `memory`: memory against batch size (`memory_by_batch_svg`).
- `latency`: latency per batch size and where the time goes by operator (`latency_svg`).
"""

from sommelier_core.plots.canvas import data_uri, markdown_image, new_figure, png_bytes
from sommelier_core.plots.heatmap import compatibility_groups, equivalence_heatmap
from sommelier_core.plots.latency import latency_svg
from sommelier_core.plots.memory import memory_by_batch_svg
from sommelier_core.plots.pareto import COSTS, ParetoPoint, pareto_front, pareto_plot, pareto_points

__all__ = [
    "COSTS",
    "ParetoPoint",
    "compatibility_groups",
    "data_uri",
    "equivalence_heatmap",
    "latency_svg",
    "markdown_image",
    "memory_by_batch_svg",
    "new_figure",
    "pareto_front",
    "pareto_plot",
    "pareto_points",
    "png_bytes",
]
