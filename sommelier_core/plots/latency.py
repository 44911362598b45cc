"""A model's latency on one device: median and p90 per batch size, and how kernel time splits by operator.

The profile keeps the median and p90 of the timed repeats (not every repeat), so the spread shown is the
p50–p90 range; the right panel is the distribution of kernel time over operator types (ONNX Runtime's
profiler), which says where the time goes."""

from __future__ import annotations

from collections import defaultdict

import pygal

from sommelier_core.plots.svg import PALETTE, chart_options, render, side_by_side
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


def latency_svg(profile: DeviceProfile) -> bytes:
    """Left: median latency per batch size with a whisker up to p90. Right: kernel time by operator type.
    An SVG document."""
    repeats = profile.latency[0].repeats if profile.latency else 0
    left = pygal.Bar(
        **chart_options(400, 340, f"{profile.model_id} on {profile.device}, {repeats} timed runs", legend=False),
        x_title="batch size",
        y_title="latency (ms): median, whisker to p90",
        range=(0.0, 1.1 * max((lat.p90_ms for lat in profile.latency), default=1.0)),
    )
    left.x_labels = [str(lat.batch_size) for lat in profile.latency]
    left.add(
        "median",
        [{"value": lat.median_ms, "ci": {"low": lat.median_ms, "high": lat.p90_ms}} for lat in profile.latency],
    )
    by_op = kernel_time_by_op(profile)
    first = profile.latency[0].batch_size if profile.latency else 1
    right = pygal.HorizontalBar(
        **chart_options(400, 340, "where the time goes", (PALETTE[1],), legend=False),
        x_title=f"kernel time (ms), batch {first}",
        no_data_text="no operator profile",
        max_scale=6,
    )
    right.x_labels = [op for op, _ in by_op][::-1]  # pygal draws the first at the bottom: the largest goes on top
    right.add("kernel time", [ms for _, ms in by_op][::-1])
    return side_by_side(render(left), render(right))
