"""A model's latency on one device: median and p90 per batch size, and how kernel time splits by operator.

The profile keeps the median and p90 of the timed repeats (not every repeat), so the spread shown is the
p50–p90 range; the right panel is the distribution of kernel time over operator types (ONNX Runtime's
profiler), which says where the time goes."""

from __future__ import annotations

from collections import defaultdict

from matplotlib.figure import Figure

from sommelier_core.plots.canvas import new_figure
from sommelier_core.profiling.device_profile import DeviceProfile

TOP_OPERATORS = 8
"""Operator types shown by name in the kernel-time panel; the rest are summed as "other"."""


def kernel_time_by_op(profile: DeviceProfile) -> list[tuple[str, float]]:
    """Kernel time (ms) by operator type at the profile's first batch size, largest first, the tail as
    `other` (domain prefixes dropped: `com.microsoft.nchwc.Conv` counts as `Conv`)."""
    if not profile.operators:
        return []
    operators = profile.operators[0]
    totals: dict[str, float] = defaultdict(float)
    for node, us in zip(operators.graph.nodes, operators.node_us, strict=True):
        totals[node.op.rsplit(".", 1)[-1]] += us / 1000.0
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) > TOP_OPERATORS:
        ranked = [*ranked[: TOP_OPERATORS - 1], ("other", sum(ms for _, ms in ranked[TOP_OPERATORS - 1 :]))]
    return ranked


def latency_plot(profile: DeviceProfile) -> Figure:
    """Left: median latency per batch size with a whisker up to p90. Right: kernel time by operator type."""
    figure = new_figure(8.0, 3.4, margins={"left": 0.1, "right": 0.98, "bottom": 0.14, "top": 0.83, "wspace": 0.62})
    left, right = figure.subplots(1, 2)
    batches = [str(lat.batch_size) for lat in profile.latency]
    medians = [lat.median_ms for lat in profile.latency]
    spreads = [[0.0] * len(medians), [lat.p90_ms - lat.median_ms for lat in profile.latency]]
    left.bar(batches, medians, yerr=spreads, capsize=4, color="#4477aa")
    left.set_xlabel("batch size")
    left.set_ylabel("latency (ms): median, whisker to p90", fontsize=9)
    repeats = profile.latency[0].repeats if profile.latency else 0
    left.set_title(f"{profile.device}, {repeats} timed runs each", fontsize=9)
    by_op = kernel_time_by_op(profile)
    if by_op:
        right.barh([op for op, _ in by_op][::-1], [ms for _, ms in by_op][::-1], color="#cc6677")
        right.tick_params(axis="y", labelsize=8)
        right.set_xlabel(f"kernel time (ms), batch {profile.latency[0].batch_size}")
        right.set_title("where the time goes", fontsize=9)
    else:
        right.text(0.5, 0.5, "no operator profile", ha="center", va="center", transform=right.transAxes)
    figure.suptitle(f"{profile.model_id} on {profile.device}", fontsize=10)
    return figure
