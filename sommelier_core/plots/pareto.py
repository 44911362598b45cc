"""Similarity against cost for one reference (paper §5.4): each candidate's bound and its FLOPs, memory and
latency, with the Pareto front — the candidates no other beats on both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
from matplotlib.figure import Figure

from sommelier_core.plots.canvas import new_figure

COSTS: dict[str, str] = {"flops": "FLOPs", "memory_bytes": "memory (bytes)", "latency_ms": "latency (ms)"}
"""The resource index's cost columns a Pareto plot can put on its x axis, with their axis labels."""


@dataclass(frozen=True)
class ParetoPoint:
    """One model as a Pareto plot places it: its bound on the difference to the reference, and its cost."""

    model_id: str
    bound: float
    cost: float


def pareto_front(points: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """The points no other point dominates (as low or lower on both bound and cost, strictly lower on one),
    cheapest first."""
    front: list[ParetoPoint] = []
    best_bound = float("inf")
    for point in sorted(points, key=lambda p: (p.cost, p.bound, p.model_id)):
        if point.bound < best_bound:
            front.append(point)
            best_bound = point.bound
    return front


def pareto_points(
    semantic: pl.DataFrame,
    resource: pl.DataFrame,
    reference_id: str,
    cost: str,
    device: str = "cpu",
    batch_size: int | None = None,
) -> list[ParetoPoint]:
    """The reference (bound 0) and its candidates in the semantic index (their upper bound), at their `cost`
    in the resource index on `device` at `batch_size` (default: the smallest indexed). Models without that cost
    (not profiled there) are left out."""
    rows = resource.filter(pl.col("device") == device)
    if rows.is_empty():
        return []
    batch = batch_size if batch_size is not None else int(rows["batch_size"].min())
    costs = dict(
        rows.filter(pl.col("batch_size") == batch)
        .drop_nulls(cost)
        .group_by("model_id")
        .agg(pl.col(cost).first())
        .iter_rows()
    )
    bounds = semantic.filter(pl.col("reference_id") == reference_id).select("candidate_id", "upper")
    points = [ParetoPoint(reference_id, 0.0, float(costs[reference_id]))] if reference_id in costs else []
    points += [ParetoPoint(m, float(u), float(costs[m])) for m, u in bounds.iter_rows() if m in costs]
    return points


def pareto_plot(reference_id: str, panels: Mapping[str, Sequence[ParetoPoint]], title: str = "") -> Figure:
    """One panel per cost (keys of `COSTS`, or any label): candidates as dots, the Pareto front as a step line,
    the reference as a star. A panel with no points says so."""
    figure = new_figure(4.2 * max(1, len(panels)), 4.0)
    for i, (cost, points) in enumerate(panels.items(), 1):
        axes = figure.add_subplot(1, max(1, len(panels)), i)
        axes.set_xlabel(COSTS.get(cost, cost))
        axes.set_ylabel("upper bound on the difference" if i == 1 else "")
        if not points:
            axes.text(0.5, 0.5, "not profiled", ha="center", va="center", transform=axes.transAxes)
            continue
        others = [p for p in points if p.model_id != reference_id]
        axes.scatter([p.cost for p in others], [p.bound for p in others], s=18, color="#4477aa", label="candidate")
        front = pareto_front(points)
        axes.step(
            [p.cost for p in front], [p.bound for p in front], where="post", color="#cc6677", label="Pareto front"
        )
        for p in front:
            axes.annotate(p.model_id, (p.cost, p.bound), fontsize=6, xytext=(3, 3), textcoords="offset points")
        own = [p for p in points if p.model_id == reference_id]
        if own:
            axes.scatter([own[0].cost], [0.0], marker="*", s=120, color="#228833", label="reference", zorder=3)
        if min(p.cost for p in points) > 0 and max(p.cost for p in points) / min(p.cost for p in points) > 50:
            axes.set_xscale("log")
        if i == 1:
            axes.legend(fontsize=7, loc="upper right")
    figure.suptitle(title or f"Candidates for {reference_id}: bound against cost")
    return figure
