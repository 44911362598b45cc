"""The equivalence heat map (paper Fig. 3): every indexed pair, models grouped by compatibility."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from sommelier_core.plots.canvas import new_figure

MAX_LABELLED = 40
"""Above this many models the axes carry no names (they would overlap); groups stay marked by lines."""


def compatibility_groups(pairs: Iterable[tuple[str, str]], models: Sequence[str] = ()) -> list[list[str]]:
    """Models joined by any indexed pair, as groups (connected components), largest first, names sorted.

    The index only holds pairs of I/O-compatible models, so a group is a set of models that can stand in for
    each other; a model in `models` with no pair is a group of its own."""
    parent: dict[str, str] = {m: m for m in models}

    def root(m: str) -> str:
        parent.setdefault(m, m)
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for m in list(parent):
        groups.setdefault(root(m), []).append(m)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def equivalence_heatmap(frame: pl.DataFrame, value: str = "upper", models: Sequence[str] = ()) -> Figure:
    """Reference (rows) × candidate (columns), coloured by `value` (the upper bound, or `empirical`: the measured
    difference) from a table with `reference_id`, `candidate_id` and `value` columns (the semantic index's).
    Models are ordered by compatibility group; pairs the index does not hold (incompatible) stay blank."""
    rows = frame.select("reference_id", "candidate_id", value).drop_nulls()
    groups = compatibility_groups(zip(rows["reference_id"], rows["candidate_id"], strict=True), models)
    order = [m for g in groups for m in g]
    position = {m: i for i, m in enumerate(order)}
    grid = np.full((len(order), len(order)), np.nan)
    for reference, candidate, v in rows.iter_rows():
        grid[position[reference], position[candidate]] = v
    np.fill_diagonal(grid, 0.0)
    side = min(12.0, 3.0 + 0.28 * len(order))
    figure = new_figure(side + 1.5, side)
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(grid), cmap="viridis_r", vmin=0.0, vmax=max(1e-9, np.nanmax(grid)))
    axes.set_facecolor("#eeeeee")
    label = {"upper": "upper bound on the difference", "empirical": "measured difference"}.get(value, value)
    figure.colorbar(image, ax=axes, label=label, shrink=0.8)
    edge = -0.5
    for group in groups[:-1]:
        edge += len(group)
        axes.axhline(edge, color="white", linewidth=1.5)
        axes.axvline(edge, color="white", linewidth=1.5)
    if len(order) <= MAX_LABELLED:
        axes.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
        axes.set_yticks(range(len(order)), order, fontsize=7)
    else:
        axes.set_xticks([])
        axes.set_yticks([])
    axes.set_xlabel("candidate")
    axes.set_ylabel("reference")
    axes.set_title(f"Equivalence: {len(order)} models in {len(groups)} compatibility groups")
    return figure
